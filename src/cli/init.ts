// quorate init: a starter quorate.json and an admin token.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { configSchema, majorityOf, parseConfig } from '../config/index.js';
import { UsageError, bool, int, str } from './args.js';
import { EXIT, keyValues, type Command } from './command.js';

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

export const initCommand: Command = {
  name: 'init',
  summary: 'write a starter quorate.json and an admin token',
  usage: '[--dir D] [--node-name N] [--api-port P] [--peer-port P] [--peers URL,URL] [--force]',
  description: 'Writes D/quorate.json (validated like `quorate agent` does), a random admin token in <dataDir>/admin.token (mode 0600) and <dataDir>/tokens.json. Refuses to overwrite either without --force. Every node of a cluster needs the same admin token in its tokens.json: copy the data dir files to the other nodes, or pass --token to reuse one.',
  flags: [
    { name: 'dir', type: 'string', value: 'D', help: 'directory for quorate.json (default .)' },
    { name: 'node-name', type: 'string', value: 'N', help: 'this node\'s name (default: the host name)' },
    { name: 'api-port', type: 'int', value: 'P', help: 'HTTP API port (default 7101)' },
    { name: 'peer-port', type: 'int', value: 'P', help: 'peer (Raft) port (default 5201)' },
    { name: 'peers', type: 'string', value: 'URL,URL', help: 'the other nodes\' peer URLs, e.g. https://10.0.1.11:5201' },
    { name: 'role', type: 'string', value: 'ROLE', help: 'voter (default), observer or dr' },
    { name: 'ha-id', type: 'string', value: 'ID', help: 'cluster id shared by every node (default quorate)' },
    { name: 'bind', type: 'string', value: 'HOST', help: 'address to listen on (default 0.0.0.0)' },
    { name: 'advertise-host', type: 'string', value: 'HOST', help: 'address other nodes and clients use (default: first non-loopback IPv4)' },
    { name: 'tls', type: 'string', value: 'auto|off', help: 'peer TLS (default auto; off only for loopback clusters)' },
    { name: 'force', type: 'boolean', help: 'overwrite an existing quorate.json and admin token' },
  ],
  examples: [
    'quorate init --node-name node1 --peers https://10.0.1.11:5201,https://10.0.1.12:5201',
    'quorate init --dir /etc/quorate --data-dir /var/lib/quorate --node-name node2',
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
    const tls = str(ctx.args, 'tls') ?? 'auto';
    if (tls !== 'auto' && tls !== 'off') throw new UsageError(`--tls must be auto or off, got ${JSON.stringify(tls)}`, 'init');
    const bind = str(ctx.args, 'bind') ?? (tls === 'off' ? '127.0.0.1' : '0.0.0.0');
    const host = str(ctx.args, 'advertise-host') ?? (tls === 'off' ? '127.0.0.1' : defaultAdvertiseHost());
    const peers = (str(ctx.args, 'peers') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    const role = str(ctx.args, 'role') ?? 'voter';
    const nodeName = str(ctx.args, 'node-name') ?? (hostname().split('.')[0] || 'node1');
    const h = host.includes(':') ? `[${host}]` : host;
    const file = {
      node: {
        nodeName, dataDir: dataDirRel, apiAddress: `${bind}:${apiPort}`, peerAddress: `${bind}:${peerPort}`,
        advertiseApiUrl: `http://${h}:${apiPort}`, advertisePeerUrl: `${tls === 'off' ? 'http' : 'https'}://${h}:${peerPort}`, role,
      },
      cluster: { haId: str(ctx.args, 'ha-id') ?? 'quorate', peerEndpoints: peers },
      database: { writeQuorum: majorityOf(peers.length + (role === 'dr' ? 0 : 1)) },
      security: { tls },
    };
    // Validate exactly as the agent will (ignoring this shell's QUORATE_* overrides), then write the full shape with defaults.
    const cfg = parseConfig(file, {}, { baseDir: dir, source: cfgPath });
    const full = configSchema.parse(file);
    if (!bool(ctx.args, 'force')) {
      for (const p of [cfgPath, cfg.security.adminTokenFile]) {
        if (existsSync(p)) {
          ctx.io.err(`Error: ${p} already exists\nHint: pass --force to overwrite it (a new admin token invalidates the old one), or --dir to write elsewhere.`);
          return EXIT.failed;
        }
      }
    }
    mkdirSync(dir, { recursive: true });
    writeFileSync(cfgPath, `${JSON.stringify(full, null, 2)}\n`);
    const token = newAdminToken();
    writeAdminToken(cfg.node.dataDir, cfg.security.adminTokenFile, token);
    const result = { config: cfgPath, dataDir: cfg.node.dataDir, adminTokenFile: cfg.security.adminTokenFile, tokensFile: join(cfg.node.dataDir, 'tokens.json') };
    ctx.print(result, () => `${keyValues([
      ['config', cfgPath], ['data dir', cfg.node.dataDir], ['admin token', `${cfg.security.adminTokenFile} (mode 0600)`], ['roles', result.tokensFile],
    ])}\n\nNext: quorate agent --config ${relative(ctx.io.cwd, cfgPath) || cfgPath}${tls === 'auto' ? '\n(the cluster CA and node certificates are created by the first node at start: security.tls "auto")' : ''}`);
    return EXIT.ok;
  },
};

function relativeOrAbsolute(from: string, to: string): string {
  const r = relative(from, to);
  return r === '' ? '.' : r.startsWith('..') ? to : `./${r}`;
}
