// quorate-test: serial (network namespaces with fixed names and addresses; see scripts/run-tests.mjs)
// Three data nodes in witness mode (cluster.coordination "redis" with
// database.mode "local-sync"; src/coord/WITNESS.md), each in its own network
// namespace, and a private redis-server (appendonly yes, appendfsync always)
// in another. Redis becomes unreachable from the leader only (a blackhole
// route to it inside the leader's namespace; the nodes still reach each
// other): the leader must step down before its lease can expire in Redis,
// another node takes the lease at a higher epoch, and every write
// acknowledged to a client writing through a third node is still there.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NsClient, NsCluster, PREFIX, SUBNET, SWITCH, createNetwork, netnsUnavailable, nodeNs, removeLeftovers } from './netns.js';
import { TOKEN } from './harness.js';
import { REDIS_SERVER } from '../support/redis-server.js';

const skip = netnsUnavailable() ?? (existsSync(REDIS_SERVER) ? undefined : `${REDIS_SERVER} is not installed`);
if (skip) console.log(`# witness netns tests skipped: ${skip}`);

const REDIS_NS = `${PREFIX}-rd`;
const REDIS_IP = `${SUBNET}.60`;
const KEY = 'wn:witness';
const TTL_S = 3;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let cluster: NsCluster | undefined;
let client: NsClient | undefined;
let redis: ChildProcess | undefined;
let redisDir = '';

/** The witness record, read with redis-cli inside Redis's namespace. */
function record(): Record<string, string> {
  const out = execFileSync('ip', ['netns', 'exec', REDIS_NS, 'redis-cli', '-h', REDIS_IP, '-p', '6379', '--no-raw', 'HGETALL', KEY], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const vals = out.split('\n').map((l) => l.replace(/^\s*\d+\)\s*/, '').replace(/^"|"$/g, '')).filter((l) => l !== '');
  const r: Record<string, string> = {};
  for (let i = 0; i + 1 < vals.length; i += 2) r[vals[i]!] = vals[i + 1]!;
  return r;
}

async function leaderIndex(c: NsCluster, cl: NsClient, among: number[]): Promise<number> {
  for (const i of among) {
    const r = await cl.http(c.nodes[i]!.url, 'GET', '/system/health/leader');
    if (r.status === 200 && r.body['leader'] === c.nodes[i]!.name) return i;
  }
  return -1;
}

/** The `time` (this host's clock, the one Redis TIME reads too) of the first log line of `event` at or after `from` (epoch ms). */
function eventTime(c: NsCluster, i: number, event: string, from: number): number | undefined {
  for (const line of c.log(i).split('\n')) {
    if (!line.includes(`"event":"${event}"`)) continue;
    const raw = (JSON.parse(line) as { time: number | string }).time;
    const t = typeof raw === 'number' ? raw : Date.parse(raw);
    if (t >= from) return t;
  }
  return undefined;
}

before(async () => {
  if (skip) return;
  createNetwork(3);
  // Redis's namespace on the same switch.
  ip('netns', 'add', REDIS_NS);
  ip('-n', SWITCH, 'link', 'add', 'p9', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', REDIS_NS);
  ip('-n', SWITCH, 'link', 'set', 'p9', 'master', 'br0', 'up');
  ip('-n', REDIS_NS, 'addr', 'add', `${REDIS_IP}/24`, 'dev', 'eth0');
  ip('-n', REDIS_NS, 'link', 'set', 'eth0', 'up');
  ip('-n', REDIS_NS, 'link', 'set', 'lo', 'up');
  redisDir = mkdtempSync(join(tmpdir(), `${PREFIX}-redis-`));
  redis = spawn('ip', ['netns', 'exec', REDIS_NS, REDIS_SERVER, '--port', '6379', '--bind', REDIS_IP, '--save', '', '--protected-mode', 'no',
    '--appendonly', 'yes', '--appendfsync', 'always', '--dir', redisDir], { stdio: 'ignore' });
  await waitFor('redis-server in its namespace', () => { try { record(); return true; } catch { return false; } }, 10_000);
  cluster = new NsCluster({ virtualIp: '', vipInterface: '', coordination: 'redis', leaderLockTtlSeconds: TTL_S, leaderRenewalIntervalSeconds: 1 }, 3,
    { redis: { enabled: true, connectionString: `${REDIS_IP}:6379`, keyPrefix: 'wn:' }, database: { mode: 'local-sync' } });
  for (let i = 0; i < 3; i++) cluster.start(i);
  client = new NsClient(`${PREFIX}-cl`);
});

after(async () => {
  client?.close();
  await cluster?.stop();
  redis?.kill('SIGTERM');
  if (!skip) removeLeftovers();
  cluster?.cleanup();
  if (redisDir !== '') rmSync(redisDir, { recursive: true, force: true });
});

test('Redis unreachable from the leader only: it steps down before its lease expires, another node takes over, no acknowledged write is lost', { skip }, async () => {
  const c = cluster!;
  const cl = client!;
  let leader = -1;
  await waitFor('a leader appointed through the witness', async () => (leader = await leaderIndex(c, cl, [0, 1, 2])) >= 0, 20_000)
    .catch((e: unknown) => { throw new Error(`${(e as Error).message}\n${[0, 1, 2].map((i) => `--- node${i + 1}:\n${c.log(i).slice(-1500)}`).join('\n')}`); });
  await waitFor('all three in the in-sync set', () => record()['insync'] === '1,2,3', 30_000)
    .catch((e: unknown) => { throw new Error(`${(e as Error).message}: ${JSON.stringify(record())}\n${c.log(leader).slice(-2000)}`); });
  const via = (leader + 1) % 3; // the writer goes through a node that keeps Redis (it forwards to the leader)
  await cl.call({ op: 'write-start', url: c.nodes[via]!.url, prefix: 'wn', token: TOKEN });
  await waitFor('writes flow', async () => ((await cl.call({ op: 'write-status' }))['acked'] as number) > 20, 30_000);
  const before = record();
  const cutAt = Date.now();
  ip('-n', nodeNs(leader), 'route', 'add', 'blackhole', `${REDIS_IP}/32`);
  // Nobody can take the lease before it expires: what the record says now is the old leader's last lease.
  await new Promise((r) => setTimeout(r, 300));
  const held = record();
  assert.equal(held['leader'], String(leader + 1), JSON.stringify(held));
  assert.equal(held['epoch'], before['epoch']);
  const expires = Number(held['expires']);
  const others = [0, 1, 2].filter((i) => i !== leader);
  let next = -1;
  await waitFor('another node leads', async () => (next = await leaderIndex(c, cl, others)) >= 0, 30_000);
  const lostAt = eventTime(c, leader, 'witness_lease_lost', cutAt);
  assert.ok(lostAt !== undefined, `the isolated leader logged no witness_lease_lost:\n${c.log(leader).slice(-3000)}`);
  console.log(`# the isolated leader stepped down ${lostAt - cutAt} ms after the cut, ${expires - lostAt} ms before its lease expired in Redis; node${next + 1} leads`);
  assert.ok(lostAt < expires, `stepped down at ${lostAt}, after the lease's end ${expires} in Redis`);
  const after_ = record();
  assert.ok(Number(after_['epoch']) > Number(held['epoch']), JSON.stringify(after_));
  assert.equal(after_['leader'], String(next + 1));
  // Writes go on through the new leader (the old one follows: all three stay in the commit set).
  const ackedAtSwitch = (await cl.call({ op: 'write-status' }))['acked'] as number;
  await waitFor('writes resume', async () => ((await cl.call({ op: 'write-status' }))['acked'] as number) > ackedAtSwitch + 10, 30_000);
  const w = await cl.call({ op: 'write-stop' });
  const acked = w['acked'] as string[];
  console.log(`# ${acked.length} writes acknowledged, ${(w['unknown'] as string[]).length} with an unknown outcome, gaps ${JSON.stringify(w['gaps'])}`);
  for (const key of acked) {
    const r = await cl.http(c.nodes[next]!.url, 'GET', `/v1/kv/${key}`);
    assert.equal(r.status, 200, `acknowledged ${key} lost: ${JSON.stringify(r.body)}`);
    assert.equal(r.body['value'], key.split('/')[1]);
  }
  ip('-n', nodeNs(leader), 'route', 'del', 'blackhole', `${REDIS_IP}/32`);
  assert.ok(readFileSync(c.nodes[leader]!.logPath, 'utf8').includes('stepped down as leader'));
});
