// quorate demo: a local N-node cluster in one command (child processes on loopback).
import { AGENT_NODE_FLAGS, agentEnv } from '../node/runtime-env.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { majorityOf, parseConfig } from '../config/index.js';
import { UsageError, bool, int, str } from './args.js';
import { EXIT, type Verb, type Context } from './command.js';
import { loadClusterSecret, newClusterSecret } from '../transport/index.js';
import { newAdminToken, writeAdminToken, writeClusterSecret } from './init.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const RESTART_DELAY_MS = 1000;
const RESTART_BURST = 5;
const RESTART_WINDOW_MS = 60_000;

interface DemoNode { name: string; role: 'voter' | 'observer' | 'dr'; dir: string; config: string; log: string; apiPort: number; peerPort: number; url: string }

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => res(true)));
  });
}

async function readyOn(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/system/health/ready`, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return r.status === 200;
  } catch {
    return false;
  }
}

export const demoCommand: Verb = {
  name: 'demo',
  usage: '[--nodes 3] [--observers 0] [--dr 0] [--dir ./.quorate-demo] [--base-port 7101] [--fresh] [--witness redis [--redis HOST:PORT]]',
  description: '--nodes voters, then --observers observers (vote, never lead) and --dr DR nodes (receive every write, do not vote), numbered on: `--nodes 3 --observers 1` starts node1..node3 (voters) and node4 (node.role observer). Node K gets API port base+K-1 and peer port 5201+K-1 (with a non-default --base-port: base+100+K-1), data in DIR/nodeK, log in DIR/nodeK/node.log, one shared admin token and one shared cluster secret (DIR/nodeK/cluster.secret, mode 0600). Peer TLS is off (loopback only). Running it again reuses DIR\'s data (a restart); --fresh wipes it first. A node that exits (a crash, kill -9, a drill\'s crash fault) is started again after 1 s, as systemd Restart=always would (at most 5 times a minute); drills are enabled (drills.enabled), so `quorate drill` runs against it. Ctrl-C stops every node.',
  flags: [
    { name: 'nodes', type: 'int', value: 'N', help: 'number of voters, 1..9 (default 3)' },
    { name: 'observers', type: 'int', value: 'N', help: 'observers besides them, 0..4 (default 0)' },
    { name: 'dr', type: 'int', value: 'N', help: 'DR nodes besides them, 0..4 (default 0)' },
    { name: 'dir', type: 'string', value: 'DIR', help: 'where configs, data and logs go (default ./.quorate-demo)' },
    { name: 'base-port', type: 'int', value: 'P', help: 'API port of node1 (default 7101)' },
    { name: 'fresh', type: 'boolean', help: 'wipe DIR first instead of reusing its data' },
    { name: 'witness', type: 'string', value: 'redis', help: 'two data nodes and a Redis witness (cluster.coordination "redis"; docs/operations.md "Two nodes and a Redis witness")' },
    { name: 'redis', type: 'string', value: 'HOST:PORT', help: 'the Redis the witness uses (default 127.0.0.1:6379; it must run appendonly yes, appendfsync always); nothing else is started' },
  ],
  examples: ['quorate demo', 'quorate demo --nodes 5 --base-port 8101', 'quorate demo --nodes 5 --observers 1 --dr 1', 'quorate demo --fresh', 'quorate demo --nodes 2 --witness redis'],
  remote: false,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`"quorate demo" takes no positional arguments, got ${JSON.stringify(ctx.args.positionals[0])}`, 'demo');
    const voters = int(ctx.args, 'nodes') ?? 3;
    if (voters < 1 || voters > 9) throw new UsageError(`--nodes must be 1..9, got ${voters}`, 'demo');
    const observers = int(ctx.args, 'observers') ?? 0;
    if (observers < 0 || observers > 4) throw new UsageError(`--observers must be 0..4, got ${observers}`, 'demo');
    const drs = int(ctx.args, 'dr') ?? 0;
    if (drs < 0 || drs > 4) throw new UsageError(`--dr must be 0..4, got ${drs}`, 'demo');
    const witness = str(ctx.args, 'witness');
    if (witness !== undefined && witness !== 'redis') throw new UsageError(`--witness must be "redis", got ${JSON.stringify(witness)}`, 'demo');
    if (witness !== undefined && (observers > 0 || drs > 0 || voters < 2)) throw new UsageError('--witness redis runs two or more data nodes (--nodes 2) and no observers or DR nodes', 'demo');
    const redisAddr = str(ctx.args, 'redis') ?? '127.0.0.1:6379';
    const count = voters + observers + drs;
    const roleOf = (k: number): DemoNode['role'] => (k <= voters ? 'voter' : k <= voters + observers ? 'observer' : 'dr');
    const basePort = int(ctx.args, 'base-port') ?? 7101;
    const peerBase = basePort === 7101 ? 5201 : basePort + 100;
    if (basePort < 1024 || Math.max(basePort, peerBase) + count - 1 > 65535) throw new UsageError(`--base-port must leave room for ${count} ports in 1024..65535, got ${basePort}`, 'demo');
    const dir = resolve(ctx.io.cwd, str(ctx.args, 'dir') ?? '.quorate-demo');
    const metaPath = join(dir, 'demo.json');

    if (bool(ctx.args, 'fresh') && existsSync(dir)) {
      if (!existsSync(metaPath) && readdirSync(dir).length > 0) {
        ctx.io.err(`Error: ${dir} is not empty and holds no demo.json: not wiping it\nHint: pass a --dir made by \`quorate demo\` (or an empty one).`);
        return EXIT.failed;
      }
      rmSync(dir, { recursive: true, force: true });
    }
    if (existsSync(metaPath)) {
      const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { nodes?: number; basePort?: number; observers?: number; dr?: number; witness?: string };
      if (meta.nodes !== voters || meta.basePort !== basePort || (meta.observers ?? 0) !== observers || (meta.dr ?? 0) !== drs || meta.witness !== witness) {
        const flags = `--nodes ${String(meta.nodes)}${(meta.observers ?? 0) > 0 ? ` --observers ${String(meta.observers)}` : ''}${(meta.dr ?? 0) > 0 ? ` --dr ${String(meta.dr)}` : ''}${meta.witness !== undefined ? ` --witness ${meta.witness}` : ''} --base-port ${String(meta.basePort)}`;
        ctx.io.err(`Error: ${dir} holds another demo (${flags})\nHint: rerun with ${flags} to restart it, or add --fresh to wipe it.`);
        return EXIT.failed;
      }
    }

    const nodes: DemoNode[] = [];
    for (let k = 1; k <= count; k++) {
      const nd = join(dir, `node${k}`);
      nodes.push({ name: `node${k}`, role: roleOf(k), dir: nd, config: join(nd, 'quorate.json'), log: join(nd, 'node.log'), apiPort: basePort + k - 1, peerPort: peerBase + k - 1, url: `http://127.0.0.1:${basePort + k - 1}` });
    }
    for (const n of nodes) {
      for (const p of [n.apiPort, n.peerPort]) {
        if (!(await portFree(p))) {
          ctx.io.err(`Error: port ${p} is busy (needed by ${n.name})\nHint: stop what uses it (another demo?), or pass --base-port ${basePort + 1000} to use other ports.`);
          return EXIT.failed;
        }
      }
    }

    // Configs and one shared token (kept across restarts).
    mkdirSync(dir, { recursive: true });
    const tokenPath = join(dir, 'node1', 'admin.token');
    const token = existsSync(tokenPath) ? readFileSync(tokenPath, 'utf8').trim() : newAdminToken();
    // One cluster secret for every node (peers authenticate each other with it), kept across restarts.
    const secretPath = join(dir, 'node1', 'cluster.secret');
    const secret = existsSync(secretPath) ? loadClusterSecret(secretPath) : newClusterSecret();
    for (const n of nodes) {
      mkdirSync(n.dir, { recursive: true });
      const file = {
        node: { nodeName: n.name, dataDir: '.', apiAddress: `127.0.0.1:${n.apiPort}`, peerAddress: `127.0.0.1:${n.peerPort}`,
          advertiseApiUrl: n.url, advertisePeerUrl: `http://127.0.0.1:${n.peerPort}`, role: n.role },
        cluster: { haId: 'quorate-demo', peerEndpoints: nodes.filter((o) => o !== n).map((o) => `http://127.0.0.1:${o.peerPort}`),
          ...(witness ? { coordination: 'redis', leaderLockTtlSeconds: 5, leaderRenewalIntervalSeconds: 1 } : {}) },
        // Observers vote (docs/concepts.md "Roles"); DR nodes do not. With a witness, commits follow the in-sync set.
        database: { ...(witness ? {} : { writeQuorum: majorityOf(voters + observers) }), backup: { dir: './backups' } },
        ...(witness ? { redis: { enabled: true, connectionString: redisAddr, keyPrefix: `quorate-demo-${basePort}:` } } : {}),
        security: { tls: 'off' },
        // A playground: `quorate drill` may fault its nodes (they are restarted after a crash, below).
        drills: { enabled: true },
      };
      parseConfig(file, {}, { baseDir: n.dir, source: n.config }); // a bug here must not start nodes
      writeFileSync(n.config, `${JSON.stringify(file, null, 2)}\n`);
      writeAdminToken(n.dir, join(n.dir, 'admin.token'), token);
      writeClusterSecret(join(n.dir, 'cluster.secret'), secret);
    }
    writeFileSync(metaPath, `${JSON.stringify({ nodes: voters, observers, dr: drs, basePort, ...(witness ? { witness } : {}) }, null, 2)}\n`);

    return runCluster(ctx, nodes, token);
  },
};

function summary(nodes: readonly DemoNode[]): string {
  const n = (r: DemoNode['role']) => nodes.filter((x) => x.role === r).length;
  const part = (k: number, one: string, many: string) => (k === 0 ? [] : [`${k} ${k === 1 ? one : many}`]);
  return [...part(n('voter'), 'voter', 'voters'), ...part(n('observer'), 'observer', 'observers'), ...part(n('dr'), 'DR node', 'DR nodes')].join(', ');
}

async function runCluster(ctx: Context, nodes: DemoNode[], token: string): Promise<number> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const children = new Map<DemoNode, ChildProcess>();
  let stopping = false;
  const exited = new Map<DemoNode, string>();
  let allExited: (() => void) | undefined;
  // Ctrl-C (or SIGTERM) at any time, also while the nodes start, stops them:
  // the handlers are in place before the first node is spawned.
  let signalled = false;
  let onStopSignal: (() => void) | undefined;
  const onSignal = (): void => {
    signalled = true;
    onStopSignal?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const unhook = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  // Like systemd's Restart=always (docs/quorate.service): a node that exits while the demo runs
  // (a crash, kill -9, a drill's crash fault) is started again after RESTART_DELAY_MS, unless it
  // exited RESTART_BURST times within RESTART_WINDOW_MS (then it stays down, as StartLimitBurst).
  const exits = new Map<DemoNode, number[]>();
  let restartsPending = 0;
  const startNode = (n: DemoNode): void => {
    const fd = openSync(n.log, 'a');
    const child = spawn(process.execPath, [...AGENT_NODE_FLAGS, main, 'agent', '--config', n.config], { stdio: ['ignore', fd, fd], env: agentEnv(ctx.io.env) });
    closeSync(fd);
    children.set(n, child);
    child.on('exit', (code, signal) => {
      const how = signal !== null ? `signal ${signal}` : `code ${String(code)}`;
      exited.set(n, how);
      if (!stopping) {
        const now = Date.now();
        const recent = [...(exits.get(n) ?? []), now].filter((t) => now - t < RESTART_WINDOW_MS);
        exits.set(n, recent);
        if (recent.length < RESTART_BURST) {
          ctx.io.err(`\n${n.name} exited (${how}); restarting it in ${RESTART_DELAY_MS / 1000} s (see ${n.log})`);
          restartsPending++;
          setTimeout(() => {
            restartsPending--;
            if (stopping) return;
            exited.delete(n);
            startNode(n);
          }, RESTART_DELAY_MS);
        } else {
          ctx.io.err(`\n${n.name} exited (${how}) ${recent.length} times within ${RESTART_WINDOW_MS / 1000} s; not restarting it again (see ${n.log})`);
        }
      }
      if (exited.size === nodes.length && restartsPending === 0) allExited?.();
    });
  };
  for (const n of nodes) startNode(n);

  const stop = async (): Promise<void> => {
    stopping = true;
    const alive = [...children.entries()].filter(([n]) => !exited.has(n));
    for (const [, c] of alive) c.kill('SIGTERM');
    const killer = setTimeout(() => { for (const [, c] of alive) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, STOP_GRACE_MS);
    await Promise.all(alive.map(([n, c]) => (exited.has(n) ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r())))));
    clearTimeout(killer);
  };

  // Wait until one node is ready.
  process.stderr.write(`starting ${nodes.length} node${nodes.length === 1 ? '' : 's'} `);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let ready = false;
  while (!ready && !signalled && Date.now() < deadline && exited.size < nodes.length) {
    for (const n of nodes) if (!exited.has(n) && (await readyOn(n.url))) { ready = true; break; }
    if (!ready) { process.stderr.write('.'); await new Promise((r) => setTimeout(r, 500)); }
  }
  process.stderr.write('\n');
  if (signalled) {
    ctx.io.err('stopping the demo cluster...');
    await stop();
    unhook();
    ctx.io.err('stopped.');
    return EXIT.ok;
  }
  if (!ready) {
    const why = exited.size === nodes.length ? 'every node exited' : `no node answered ${nodes[0]!.url}/system/health/ready with 200 within ${READY_TIMEOUT_MS / 1000} s`;
    ctx.io.err(`Error: the demo cluster did not become ready: ${why}\nHint: read the logs:\n${nodes.map((n) => `  ${n.log}`).join('\n')}`);
    await stop();
    unhook();
    return EXIT.failed;
  }

  const urls = nodes.map((n) => n.url).join(',');
  const info = { nodes: nodes.map((n) => ({ name: n.name, role: n.role, url: n.url, peerPort: n.peerPort, dataDir: n.dir, log: n.log })), token, dashboard: `${nodes[0]!.url}/ui/` };
  ctx.print(info, () => [
    `quorate demo: ${nodes.length}-node cluster ready (${summary(nodes)})`,
    '',
    ...nodes.map((n) => `  ${n.name}  ${n.role.padEnd(8)}  ${n.url}  (data ${n.dir}, log ${n.log})`),
    ...(nodes.some((n) => n.role !== 'voter') ? ['', 'Observers and DR nodes start as voters; the leader applies their roles within seconds (`quorate status` shows them).'] : []),
    '',
    `Admin token: ${token}`,
    `Dashboard:   ${nodes[0]!.url}/ui/  (any node serves it; log in with the admin token)`,
    '',
    'Try:',
    `  quorate status --url ${urls} --token ${token}`,
    `  quorate kv put hello world --url ${urls} --token ${token}`,
    `  curl -s ${nodes[0]!.url}/system/health/ping`,
    `  curl -s -H 'Authorization: Bearer ${token}' ${nodes[0]!.url}/system/health/cluster`,
    `  curl -s -X PUT -H 'Authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"value":"world"}' ${nodes[0]!.url}/v1/kv/hello`,
    '',
    'Press Ctrl-C to stop.',
  ].join('\n'));

  const bySignal = await new Promise<boolean>((resolveStop) => {
    onStopSignal = () => resolveStop(true);
    allExited = () => resolveStop(false);
    if (signalled) resolveStop(true);
    else if (exited.size === nodes.length && restartsPending === 0) resolveStop(false);
  });
  unhook();
  if (!bySignal) {
    ctx.io.err(`Error: every demo node has exited\nHint: read the logs:\n${nodes.map((n) => `  ${n.log}`).join('\n')}`);
    return EXIT.failed;
  }
  ctx.io.err('stopping the demo cluster...');
  await stop();
  ctx.io.err('stopped.');
  return EXIT.ok;
}
