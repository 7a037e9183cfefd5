// Membership verbs: join-token create, enroll, remove (SPEC §5; docs/cli.md).
import { QuorateClient } from '../api/client.js';
import { UsageError, bool, duration, str } from './args.js';
import { EXIT, keyValues, type Verb, type Context } from './command.js';

const joinTokenCreate: Verb = {
  name: 'join-token create',
  usage: '[--ttl 10m]',
  description:
    'Calls POST /v1/cluster/join-tokens (forwarded to the leader). Give the token to the joining node only, as QUORATE_JOIN_TOKEN (or --join-token) of its `quorate agent`; ' +
    'the token never crosses the network: the joiner proves it in the peer handshake and receives the cluster secret encrypted under a key derived from it. ' +
    "Tokens are kept in the leader's memory only: after a leader change, create a new one.",
  flags: [{ name: 'ttl', type: 'duration', value: 'DURATION', help: 'how long the token is valid (1s..24h, default 10m)' }],
  examples: ['quorate join-token create', 'quorate join-token create --ttl 30m --json'],
  remote: true,
  async run(ctx) {
    const ttlMs = duration(ctx.args, 'ttl');
    if (ttlMs !== undefined && (ttlMs < 1000 || ttlMs > 24 * 3600_000)) throw new UsageError('--ttl must be between 1s and 24h', 'join-token create');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/join-tokens', { body: ttlMs !== undefined ? { ttlMs } : {}, write: true })).body;
    ctx.print(r, () => `${String(r['token'])}\n\nvalid until ${String(r['expiresAt'])}, for one enrollment. Start the new node with:\n  QUORATE_JOIN_TOKEN=${String(r['token'])} quorate agent --config quorate.json\nthen run \`quorate enroll <its API URL> --role voter|observer|dr\`.`);
    return EXIT.ok;
  },
};

/** The status role a promoted member shows. */
function promoted(role: string, target: string): boolean {
  if (target === 'voter') return role === 'standby' || role === 'primary' || role === 'candidate';
  return role === target;
}

async function followProgress(ctx: Context, nodeName: string, target: string, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  const emit = (ev: Record<string, unknown>, human: string): void => ctx.io.out(ctx.json ? JSON.stringify(ev) : human);
  let last = '';
  while (Date.now() < deadline) {
    let s = await ctx.client().clusterStatus();
    const leaderUrl = typeof s['leaderApiUrl'] === 'string' ? s['leaderApiUrl'] : undefined;
    if (leaderUrl !== undefined && s.role !== 'primary') {
      try {
        s = await new QuorateClient({ urls: [leaderUrl], ...(ctx.token() !== undefined ? { token: ctx.token()! } : {}) }).clusterStatus();
      } catch { /* the node we asked will do */ }
    }
    const p = (s.peers ?? []).find((x) => x.nodeName === nodeName);
    const role = String(p?.role ?? 'joining');
    const match = Number(p?.matchIndex ?? 0);
    const commit = Number(s.commitIndex ?? 0);
    const line = `${role} ${match}/${commit}`;
    if (line !== last) {
      last = line;
      emit({ event: 'progress', nodeName, role, matchIndex: match, commitIndex: commit }, `${nodeName}: ${role}, log ${match}/${commit}`);
    }
    if (promoted(role, target)) {
      emit({ event: 'promoted', nodeName, role }, `${nodeName} is caught up and now ${role}`);
      return true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

const enroll: Verb = {
  name: 'enroll',
  usage: 'URL [--peer-url P] [--role voter|observer|dr] [--force] [--wait 2m]',
  description:
    'URL is the API URL of a node started with `quorate agent --join-token T`. Calls POST /v1/cluster/enroll (forwarded to the leader), which checks the node ' +
    '(reachable, compatible version, not holding another cluster\'s data unless --force), has it join through its peer port with the token, then shows its catch-up ' +
    'until it is promoted (--json: one JSON event per line). A dr node stays a non-voting learner. Its old data, if any, is moved to a dated backup dir, printed here.',
  flags: [
    { name: 'peer-url', type: 'string', value: 'P', help: "the node's advertisePeerUrl (default: asked from the node itself)" },
    { name: 'role', type: 'string', value: 'ROLE', help: 'voter, observer or dr (default: the node.role the node reports; must match it)' },
    { name: 'force', type: 'boolean', help: "enroll even if the node holds another cluster's data (it is backed up first)" },
    { name: 'wait', type: 'duration', value: 'DURATION', help: 'how long to follow catch-up before giving up (default 2m; 0 = do not wait)' },
  ],
  examples: ['quorate enroll http://10.0.1.13:7101 --role voter', 'quorate enroll http://10.0.1.14:7101 --role dr --json'],
  remote: true,
  async run(ctx) {
    const url = ctx.args.positionals[0];
    if (url === undefined || ctx.args.positionals.length > 1) throw new UsageError('give exactly one URL: the joining node\'s API URL', 'enroll');
    if (!/^https?:\/\/[^\s/]+:\d{1,5}\/?$/.test(url)) throw new UsageError(`URL must be an http(s) URL with a port, got ${JSON.stringify(url)}`, 'enroll');
    let role = str(ctx.args, 'role');
    if (role !== undefined && role !== 'voter' && role !== 'observer' && role !== 'dr') throw new UsageError(`--role must be voter, observer or dr, got ${JSON.stringify(role)}`, 'enroll');
    let peerUrl = str(ctx.args, 'peer-url');
    if (peerUrl === undefined || role === undefined) {
      const info = await fetch(`${url.replace(/\/+$/, '')}/v1/cluster/join-info`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.json() as Promise<Record<string, unknown>>).catch(() => undefined);
      if (typeof info?.['peerUrl'] !== 'string') throw new Error(`cannot ask ${url} for its peer address and role: is it running with \`quorate agent --join-token T\`? Pass --peer-url and --role to skip this`);
      peerUrl ??= info['peerUrl'];
      role ??= String(info['role'] ?? 'voter');
    }
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/enroll', {
      body: { apiUrl: url, peerUrl, role, force: bool(ctx.args, 'force') }, write: true, extraMs: 30_000,
    })).body;
    const warnings = Array.isArray(r['warnings']) ? (r['warnings'] as string[]) : [];
    if (ctx.json) ctx.io.out(JSON.stringify({ event: 'enrolled', ...r }));
    else {
      ctx.io.out(keyValues([
        ['enrolled', `${String(r['nodeName'])} (id ${String(r['nodeId'])}) as a learner; becomes ${role} once caught up to index ${String(r['catchUpTo'])}`],
        ['old data', r['backupDir'] ? `moved to ${String(r['backupDir'])} on that node` : 'none (fresh data dir)'],
      ]));
    }
    for (const w of warnings) ctx.io.err(`Warning: ${w}`);
    const waitMs = duration(ctx.args, 'wait') ?? 120_000;
    if (waitMs === 0) return EXIT.ok;
    if (await followProgress(ctx, String(r['nodeName']), role, waitMs)) return EXIT.ok;
    ctx.io.err(`Error: ${String(r['nodeName'])} was enrolled but is not promoted yet after ${Math.round(waitMs / 1000)} s; it keeps catching up: follow it with \`quorate peers\``);
    return EXIT.failed;
  },
};

const remove: Verb = {
  name: 'remove',
  usage: 'NAME',
  description:
    'Calls POST /v1/cluster/remove (forwarded to the leader). Removing the leader hands leadership over first. Refused (HTTP 409 removal_unsafe, with the arithmetic) when the voters left ' +
    'that are reachable would be fewer than the new configuration\'s write quorum. The removed node stops serving data (503 removed) and shows role removed.',
  flags: [],
  examples: ['quorate remove node3', 'quorate remove node1 --json'],
  remote: true,
  async run(ctx) {
    const name = ctx.args.positionals[0];
    if (name === undefined || ctx.args.positionals.length > 1) throw new UsageError('give exactly one node name (see `quorate peers`)', 'remove');
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/cluster/remove', { body: { nodeName: name }, write: true, extraMs: 10_000 })).body;
    ctx.print(r, () => String(r['message']));
    return EXIT.ok;
  },
};

export const memberCommands: readonly Verb[] = [joinTokenCreate, enroll, remove];
