// A node started with a join token (`quorate agent --join-token T` or
// QUORATE_JOIN_TOKEN) waits to be enrolled before it runs: it serves only
// its health (role "joining"), GET /v1/cluster/join-info (what the leader
// checks: version, feature level, haId, old data) and POST
// /v1/cluster/join-offer (the leader says where its peer port is). On an
// offer it runs the join exchange with the leader's peer port (join.ts: the
// token never crosses the wire, the cluster secret arrives sealed), moves
// its old data aside to a dated backup dir, writes the cluster secret and
// bootstrap.json, and returns: the agent then starts the node as usual.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile, chmod } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { dialJoin } from '../transport/join-dialer.js';
import { needsClusterCa, writeCaEpochHint } from './tls-auto.js';
import { isJoinToken, joinTokenId } from '../transport/join.js';
import { formatClusterSecret } from '../transport/security.js';
import { MIN_COMPATIBLE_VERSION, PROTOCOL_VERSION } from '../transport/handshake.js';
import { featureLevelFromEnv } from './features.js';
import { normalizePeerUrl, parseBootstrap, writeBootstrap, type Bootstrap, type BootstrapMember } from './members.js';
import { VERSION } from './status.js';
import type { JoinInfo } from './enroll.js';

/** What a data dir holds of a cluster: moved aside on enrollment. */
const DATA_ENTRIES = ['bootstrap.json', 'raft', 'ha-state.json', 'removed'];

function existingBootstrap(dataDir: string): Bootstrap | undefined {
  const p = join(dataDir, 'bootstrap.json');
  if (!existsSync(p)) return undefined;
  try {
    return parseBootstrap(readFileSync(p, 'utf8'), p);
  } catch {
    return { haId: '(unreadable bootstrap.json)', members: [] };
  }
}

/** True when this data dir was already enrolled with this token (a restart with the same QUORATE_JOIN_TOKEN starts normally). */
export function enrolledWith(dataDir: string, token: string): boolean {
  return existingBootstrap(dataDir)?.enrolledWithToken === joinTokenId(token);
}

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[:.]/g, '-');
}

/** Moves the data dir's cluster data to <dataDir>.backup-<time>; returns that dir, or null when there was nothing. */
async function backupData(config: QuorateConfig): Promise<string | null> {
  const dir = config.node.dataDir;
  const present = DATA_ENTRIES.filter((e) => existsSync(join(dir, e)));
  const secret = config.security.clusterSecretFile;
  if (present.length === 0 && !existsSync(secret)) return null;
  const backup = join(dirname(dir), `${basename(dir)}.backup-${stamp()}`);
  await mkdir(backup, { recursive: true, mode: 0o700 });
  for (const e of present) await rename(join(dir, e), join(backup, e));
  if (existsSync(secret)) await writeFile(join(backup, 'cluster.secret.old'), readFileSync(secret), { mode: 0o600 });
  return backup;
}

export async function awaitEnrollment(config: QuorateConfig, logger: Logger, token: string): Promise<void> {
  if (!isJoinToken(token)) throw new Error('the join token is malformed: it is "qjt-" followed by 64 hex digits, as `quorate join-token create` prints it');
  const log = logger.child({ node: config.node.nodeName });
  await mkdir(config.node.dataDir, { recursive: true });
  const featureLevel = featureLevelFromEnv();
  const old = existingBootstrap(config.node.dataDir);
  const info: JoinInfo = {
    nodeName: config.node.nodeName, haId: config.cluster.haId, version: VERSION, featureLevel,
    protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION,
    apiUrl: config.node.advertiseApiUrl, peerUrl: config.node.advertisePeerUrl, role: config.node.role,
    data: old === undefined ? null : { haId: old.haId, entries: DATA_ENTRIES.filter((e) => existsSync(join(config.node.dataDir, e))) },
  };
  const api = config.node.apiAddress;
  const sep = api.lastIndexOf(':');
  let busy = false;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => { done = r; });
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
    res.end(text);
  };
  const readBody = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    let n = 0;
    const parts: Buffer[] = [];
    for await (const c of req) {
      n += (c as Buffer).length;
      if (n > 16 * 1024) throw new Error('body too large');
      parts.push(c as Buffer);
    }
    const v: unknown = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}');
    if (typeof v !== 'object' || v === null) throw new Error('body must be a JSON object');
    return v as Record<string, unknown>;
  };
  const waiting = `${config.node.nodeName} waits to be enrolled: run \`quorate enroll ${config.node.advertiseApiUrl} --peer-url ${config.node.advertisePeerUrl} --role voter|observer|dr\` against the cluster`;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    void (async () => {
      try {
        if (req.method === 'GET' && path.startsWith('/system/health/')) {
          return send(res, 503, { status: 'unhealthy', nodeName: config.node.nodeName, role: 'joining', leader: null, reasons: [waiting] });
        }
        if (req.method === 'GET' && path === '/v1/cluster/join-info') return send(res, 200, info);
        if (req.method === 'POST' && path === '/v1/cluster/join-offer') {
          if (busy) return send(res, 409, { error: 'conf_change_in_progress', message: 'a join is already under way on this node' });
          busy = true;
          try {
            const body = await readBody(req);
            const leader = body['leaderPeerUrl'];
            if (typeof leader !== 'string' || body['haId'] !== config.cluster.haId) throw new Error(`the offer is not for cluster ${JSON.stringify(config.cluster.haId)}`);
            if (info.data !== null && body['force'] !== true) throw new Error(`this data dir holds data of cluster ${JSON.stringify(info.data.haId)}; enroll with --force to back it up and replace it`);
            const u = new URL(`tcp://${normalizePeerUrl(leader)}`);
            // "auto": the joiner has no certificate yet; off loopback it dials TLS 1.3 without one (the leader takes that for
            // the join exchange only, which the join token authenticates both ways) and makes its own at its first start.
            const tls = config.security.tls !== 'auto' ? config.security.tls : needsClusterCa(config, { members: [{ peerUrl: leader }] }) ? 'join-anonymous' as const : 'off' as const;
            log.info({ event: 'join_started', leader }, `joining cluster ${config.cluster.haId} through the leader's peer address ${leader}`);
            const r = await dialJoin({
              host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port), tls, token,
              claims: { haId: config.cluster.haId, nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, peerUrl: normalizePeerUrl(config.node.advertisePeerUrl), featureLevel, incarnation: '' },
            });
            const backupDir = await backupData(config);
            // Its first certificate comes from the cluster CA's current epoch (`quorate ca rotate`), before its log is replayed.
            if (r.answer.caEpoch !== undefined) await writeCaEpochHint(config.node.dataDir, r.answer.caEpoch);
            await writeFile(config.security.clusterSecretFile, formatClusterSecret(r.clusterSecret), { mode: 0o600 });
            await chmod(config.security.clusterSecretFile, 0o600);
            const members = JSON.parse(r.answer.bootstrap) as BootstrapMember[];
            const peers = JSON.parse(r.answer.peers) as BootstrapMember[];
            await writeBootstrap(config.node.dataDir, {
              haId: r.answer.haId, members, self: { id: r.answer.nodeId, peerUrl: normalizePeerUrl(config.node.advertisePeerUrl) }, peers, enrolledWithToken: joinTokenId(token),
              ...(r.answer.generation !== undefined ? { generation: r.answer.generation } : {}),
            });
            log.info({ event: 'joined', nodeId: r.answer.nodeId, backupDir }, `joined cluster ${r.answer.haId} as node id ${r.answer.nodeId}${backupDir ? `; the old data was moved to ${backupDir}` : ''}; starting`);
            send(res, 200, { nodeId: r.answer.nodeId, backupDir });
            done();
          } catch (e) {
            busy = false;
            log.warn({ event: 'join_failed', err: (e as Error).message }, `join failed: ${(e as Error).message}`);
            send(res, 409, { error: 'enroll_refused', message: (e as Error).message });
          }
          return;
        }
        send(res, 503, { error: 'no_leader', message: waiting });
      } catch (e) {
        send(res, 400, { error: 'invalid_request', message: (e as Error).message });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(api.slice(sep + 1)), api.slice(0, sep).replace(/^\[|\]$/g, ''), () => resolve());
  });
  log.info({ event: 'awaiting_enrollment', apiUrl: config.node.advertiseApiUrl }, waiting);
  await finished;
  await new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
}
