// quorate init: a starter quorate.json, an admin token and the cluster secret.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { configSchema, isLoopback, majorityOf, parseConfig } from '../config/index.js';
import { formatClusterSecret, loadClusterSecret, newClusterSecret } from '../transport/index.js';
import { UsageError, bool, int, str } from './args.js';
import { EXIT, keyValues, type Verb } from './command.js';

export function newAdminToken(): string {
  return `quorate-admin-${randomBytes(16).toString('hex')}`;
}

/** Writes the token file (mode 0600) and <dataDir>/tokens.json, which the server reads for roles. */
export function writeAdminToken(dataDir: string, tokenFile: string, token: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(dirname(tokenFile), { recursive: true, mode: 0o700 });
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  const tokens = join(dataDir, 'tokens.json');
  writeFileSync(tokens, `${JSON.stringify([{ token, role: 'admin', name: 'admin' }], null, 2)}\n`, { mode: 0o600 });
  chmodSync(tokens, 0o600);
}

/** Writes the cluster secret file (hex, mode 0600), creating its directory (0700). */
export function writeClusterSecret(path: string, secret: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, formatClusterSecret(secret), { mode: 0o600 });
  chmodSync(path, 0o600);
}

function defaultAdvertiseHost(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function port(v: number | undefined, def: number, flag: string): number {
  const p = v ?? def;
  if (!(p >= 1 && p <= 65535)) throw new UsageError(`--${flag} must be 1..65535, got ${p}`, 'init');
  return p;
}

export const initCommand: Verb = {
  name: 'init',
  usage: '[--dir D] [--node-name N] [--api-port P] [--peer-port P] [--peers URL,URL] [--tls-cert F --tls-key F --tls-ca F] [--secret-file F] [--force]',
  description: 'Writes D/quorate.json (validated like `quorate agent` does, so the node starts as written), a random admin token in <dataDir>/admin.token (mode 0600), <dataDir>/tokens.json and the cluster secret peers authenticate each other with in <dataDir>/cluster.secret (mode 0600). Refuses to overwrite any of them without --force. With --peers on the network and the default --tls auto, the nodes secure peer traffic with the automatic cluster CA (derived from the cluster secret; each node makes its key and certificate at its first start) and bind 0.0.0.0; --tls-cert/--tls-key/--tls-ca use your own PKI instead. With no peers (or loopback ones) everything peer-facing binds and advertises 127.0.0.1 (a cluster on one machine, plain TCP). Every node of a cluster needs the same cluster secret and admin token: on the other nodes pass --secret-file with a copy of the first node\'s cluster.secret, and copy its tokens.json.',
  flags: [
    { name: 'dir', type: 'string', value: 'D', help: 'directory for quorate.json (default .)' },
    { name: 'node-name', type: 'string', value: 'N', help: 'this node\'s name (default: the host name)' },
    { name: 'api-port', type: 'int', value: 'P', help: 'HTTP API port (default 7101)' },
    { name: 'peer-port', type: 'int', value: 'P', help: 'peer (Raft) port (default 5201)' },
    { name: 'peers', type: 'string', value: 'URL,URL', help: 'the other nodes\' peer URLs, e.g. https://10.0.1.11:5201' },
    { name: 'role', type: 'string', value: 'ROLE', help: 'voter (default), observer or dr' },
    { name: 'ha-id', type: 'string', value: 'ID', help: 'cluster id shared by every node (default quorate)' },
    { name: 'bind', type: 'string', value: 'HOST', help: 'address to listen on (default 127.0.0.1; 0.0.0.0 with --tls-cert)' },
    { name: 'api-bind', type: 'string', value: 'HOST', help: 'address the HTTP API listens on (default: --bind)' },
    { name: 'advertise-host', type: 'string', value: 'HOST', help: 'address other nodes and clients use (default 127.0.0.1; with --tls-cert the first non-loopback IPv4)' },
    { name: 'tls', type: 'string', value: 'auto|off', help: 'peer TLS without files (default auto: mutual TLS 1.3 with certificates from the cluster CA when a peer is on the network, plain TCP on a loopback-only cluster; off: plain TCP, loopback only)' },
    { name: 'tls-cert', type: 'string', value: 'F', help: 'this node\'s peer certificate (PEM; with --tls-key and --tls-ca): mutual TLS between peers' },
    { name: 'tls-key', type: 'string', value: 'F', help: 'its private key (PEM)' },
    { name: 'tls-ca', type: 'string', value: 'F', help: 'the CA that issued every node\'s certificate (PEM)' },
    { name: 'secret-file', type: 'string', value: 'F', help: 'copy the cluster secret from F (another member\'s cluster.secret) instead of creating one' },
    { name: 'force', type: 'boolean', help: 'overwrite an existing quorate.json, admin token and cluster secret' },
  ],
  examples: [
    'quorate init --node-name node1',
    'quorate init --node-name node1 --peers https://10.0.1.11:5201,https://10.0.1.12:5201 --tls-cert node1.crt --tls-key node1.key --tls-ca ca.crt',
    'quorate init --dir /etc/quorate --data-dir /var/lib/quorate --node-name node2 --secret-file ./cluster.secret',
  ],
  remote: false,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`"quorate init" takes no positional arguments, got ${JSON.stringify(ctx.args.positionals[0])}`, 'init');
    const dir = resolve(ctx.io.cwd, str(ctx.args, 'dir') ?? '.');
    const cfgPath = join(dir, 'quorate.json');
    const dataDirFlag = str(ctx.args, 'data-dir');
    const dataDirRel = dataDirFlag !== undefined ? relativeOrAbsolute(dir, resolve(ctx.io.cwd, dataDirFlag)) : './data';
    const apiPort = port(int(ctx.args, 'api-port'), 7101, 'api-port');
    const peerPort = port(int(ctx.args, 'peer-port'), 5201, 'peer-port');
    const tlsMode = str(ctx.args, 'tls') ?? 'auto';
    if (tlsMode !== 'auto' && tlsMode !== 'off') throw new UsageError(`--tls must be auto or off, got ${JSON.stringify(tlsMode)}`, 'init');
    const certFile = str(ctx.args, 'tls-cert');
    const keyFile = str(ctx.args, 'tls-key');
    const caFile = str(ctx.args, 'tls-ca');
    const given = [certFile, keyFile, caFile].filter((f) => f !== undefined).length;
    if (given !== 0 && given !== 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together: pass all three, or none for a loopback-only cluster', 'init');
    const tlsFiles = certFile !== undefined && keyFile !== undefined && caFile !== undefined
      ? { certFile: resolve(ctx.io.cwd, certFile), keyFile: resolve(ctx.io.cwd, keyFile), caFile: resolve(ctx.io.cwd, caFile) }
      : undefined;
    const tls = tlsFiles ?? tlsMode;
    const secretFrom = str(ctx.args, 'secret-file');
    const peers = (str(ctx.args, 'peers') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    // Peers on the network need TLS: files, or "auto" (the cluster CA, derived from the cluster secret at the node's
    // first start). Otherwise (no peers, or loopback ones) everything peer-facing stays on loopback, so the file starts as written.
    const onNetwork = tlsFiles !== undefined || (tlsMode === 'auto' && peers.some((p) => !isLoopback(new URL(p.includes('://') ? p : `tcp://${p}`).hostname.replace(/^\[|\]$/g, ''))));
    const bind = str(ctx.args, 'bind') ?? (onNetwork ? '0.0.0.0' : '127.0.0.1');
    const apiBind = str(ctx.args, 'api-bind') ?? bind;
    const host = str(ctx.args, 'advertise-host') ?? (onNetwork ? defaultAdvertiseHost() : '127.0.0.1');
    const role = str(ctx.args, 'role') ?? 'voter';
    const nodeName = str(ctx.args, 'node-name') ?? (hostname().split('.')[0] || 'node1');
    const h = host.includes(':') ? `[${host}]` : host;
    const file = {
      node: {
        nodeName, dataDir: dataDirRel, apiAddress: `${apiBind}:${apiPort}`, peerAddress: `${bind}:${peerPort}`,
        advertiseApiUrl: `http://${h}:${apiPort}`, advertisePeerUrl: `${tls === 'off' ? 'http' : 'https'}://${h}:${peerPort}`, role,
      },
      cluster: { haId: str(ctx.args, 'ha-id') ?? 'quorate', peerEndpoints: peers },
      database: { writeQuorum: majorityOf(peers.length + (role === 'dr' ? 0 : 1)) },
      security: { tls },
    };
    // Validate exactly as the agent will (ignoring this shell's QUORATE_* overrides), then write the full shape with defaults.
    const cfg = parseConfig(file, {}, { baseDir: dir, source: cfgPath });
    const full = configSchema.parse(file);
    const secretPath = cfg.security.clusterSecretFile;
    let secret: Uint8Array;
    try {
      secret = secretFrom !== undefined ? loadClusterSecret(resolve(ctx.io.cwd, secretFrom)) : newClusterSecret();
    } catch (err) {
      ctx.io.err(`Error: --secret-file: ${(err as Error).message}`);
      return EXIT.failed;
    }
    if (!bool(ctx.args, 'force')) {
      for (const p of [cfgPath, cfg.security.adminTokenFile, secretPath]) {
        if (existsSync(p)) {
          ctx.io.err(`Error: ${p} already exists\nHint: pass --force to overwrite it (a new admin token invalidates the old one; a new cluster secret locks this node out of its cluster until every member has it), or --dir to write elsewhere.`);
          return EXIT.failed;
        }
      }
    }
    mkdirSync(dir, { recursive: true });
    writeFileSync(cfgPath, `${JSON.stringify(full, null, 2)}\n`);
    const token = newAdminToken();
    writeAdminToken(cfg.node.dataDir, cfg.security.adminTokenFile, token);
    writeClusterSecret(secretPath, secret);
    const result = {
      config: cfgPath, dataDir: cfg.node.dataDir, adminTokenFile: cfg.security.adminTokenFile, tokensFile: join(cfg.node.dataDir, 'tokens.json'),
      clusterSecretFile: secretPath,
    };
    const next = secretFrom !== undefined
      ? '(the cluster secret was copied from --secret-file)'
      : `(other nodes of this cluster need the same cluster secret: copy ${secretPath} to them, mode 0600, and pass it to their \`quorate init --secret-file\`)`;
    ctx.print(result, () => `${keyValues([
      ['config', cfgPath], ['data dir', cfg.node.dataDir], ['admin token', `${cfg.security.adminTokenFile} (mode 0600)`], ['roles', result.tokensFile],
      ['cluster secret', `${secretPath} (mode 0600)`],
    ])}\n\nNext: quorate agent --config ${relative(ctx.io.cwd, cfgPath) || cfgPath}\n${next}${tls === 'auto' && onNetwork
      ? '\n(peer TLS: the automatic cluster CA, derived from the cluster secret; the node makes its key and certificate in <dataDir>/tls/ at its first start; clients of an HTTPS API trust `quorate ca export`)'
      : onNetwork ? '' : '\n(peers on loopback only: plain TCP on this machine; for a cluster across machines pass --peers with their addresses (security.tls "auto": the cluster CA) or --tls-cert/--tls-key/--tls-ca)'}`);
    return EXIT.ok;
  },
};

function relativeOrAbsolute(from: string, to: string): string {
  const r = relative(from, to);
  return r === '' ? '.' : r.startsWith('..') ? to : `./${r}`;
}
