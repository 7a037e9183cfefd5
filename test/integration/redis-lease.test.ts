// The Redis leader lease (src/coord/redis-lease.ts) against a real, private
// redis-server: kill -9 and SIGSTOP of a holder (child processes), Redis
// killed and restarted empty, a lease taken over behind a leader's back.
// TTLs are short (2 s) so each case takes a few seconds; the bounds asserted
// are generous, the measured times are printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { parseRedisConnectionString, RedisLease, RedisLink } from '../../src/coord/index.js';
import { LeaderServices, type LeadershipState } from '../../src/node/leadership.js';
import { TestRedis } from '../support/redis-server.js';
import { captureLogger } from '../support/log.js';
import { LeaseProc } from './lease-proc.js';
import { sleep, waitFor } from './harness.js';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TTL_MS = 2000;
const RENEW_MS = 500;

function inProcess(redis: string, name: string, o: { ttlMs?: number; minToken?: () => Promise<number> } = {}) {
  const logger = captureLogger('info');
  const link = new RedisLink(parseRedisConnectionString(redis), logger, { commandTimeoutMs: 300, name });
  const lease = new RedisLease({ link, logger, keyPrefix: 'quorate:', nodeName: name, apiUrl: `http://${name}.invalid:7101`, ttlMs: o.ttlMs ?? TTL_MS, renewMs: RENEW_MS, ...(o.minToken ? { minToken: o.minToken } : {}) });
  const changes: (LeadershipState & { at: number })[] = [];
  lease.onChange((s) => changes.push({ ...s, at: performance.now() }));
  lease.start();
  return { lease, link, logger, changes, close: async () => { await lease.stop(); await link.close(); } };
}

test('a kill -9 leader is replaced after the lease TTL, with a strictly higher fencing token', async () => {
  const redis = await TestRedis.start();
  const a = new LeaseProc('a', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS });
  let b: LeaseProc | undefined;
  try {
    await a.waitLeading();
    b = new LeaseProc('b', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS });
    await b.waitWatching();
    await sleep(3 * RENEW_MS);
    assert.equal(b.leading, false, 'the standby does not take a lease that is held and renewed');
    assert.equal(a.leading, true);
    const killedAt = Date.now();
    a.signal('SIGKILL');
    await b.waitLeading(TTL_MS + 10_000);
    const takeoverMs = b.firstAt((e) => e.event === 'state' && e.leading === true)! - killedAt;
    console.log(`# lease takeover after kill -9: ${takeoverMs} ms (TTL ${TTL_MS} ms)`);
    assert.ok(takeoverMs >= TTL_MS - 300, `the standby waited for the lease to expire (${takeoverMs} ms)`);
    assert.ok(b.term > a.term, `fencing token ${b.term} > ${a.term}`);
  } finally {
    await a.stop();
    await b?.stop();
    await redis.stop();
  }
});

test('a leader paused past its TTL has stepped down when it resumes: no action of it after the new leader took over', async () => {
  const redis = await TestRedis.start();
  const a = new LeaseProc('a', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS });
  let b: LeaseProc | undefined;
  try {
    await a.waitLeading();
    b = new LeaseProc('b', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS });
    await b.waitWatching();
    await sleep(RENEW_MS);
    a.signal('SIGSTOP');
    await b.waitLeading(TTL_MS + 10_000);
    const bFirstWrite = await (async () => { await waitFor('b acts as leader', () => b!.firstAt((e) => e.event === 'write') !== undefined); return b.firstAt((e) => e.event === 'write')!; })();
    const resumedAt = Date.now();
    a.signal('SIGCONT');
    await waitFor('a reports it stepped down', () => a.events.some((e) => e.event === 'state' && e.leading === false), 10_000);
    await sleep(3 * RENEW_MS);
    const late = a.events.filter((e) => e.event === 'write' && e.at >= bFirstWrite);
    assert.deepEqual(late, [], `the paused leader acted after the new leader's first action (at ${bFirstWrite}, resumed ${resumedAt})`);
    assert.equal(a.leading, false);
    assert.ok(b.leading && b.term > a.events.find((e) => e.event === 'state' && e.leading === true)!.term, 'the new leader holds a higher fencing token');
    assert.match(a.stderr, /stepped down as leader \(fencing token \d+\): no renewal of the leader lease succeeded in time/);
  } finally {
    await a.stop();
    await b?.stop();
    await redis.stop();
  }
});

test('Redis killed: "Leader election failed: Redis unreachable at host:port", the leader steps down before its lease could expire; Redis back empty: a leader again, token not lower', async () => {
  const redis = await TestRedis.start({ password: 'pw-never-logged-7f3a' });
  const a = inProcess(`${redis.address},password=pw-never-logged-7f3a,ssl=false`, 'a');
  // Leader-only work on the lease, through the same seam as on Raft.
  const events: string[] = [];
  const services = new LeaderServices(a.lease, a.logger);
  services.add({ name: 'job', start: (t) => events.push(`start ${t}`), stop: () => events.push('stop') });
  try {
    await waitFor('a leads', () => a.lease.current().leading, 10_000);
    const firstToken = a.lease.current().term;
    assert.deepEqual(events, [`start ${firstToken}`], 'leader services start with the fencing token');
    await sleep(RENEW_MS * 2);
    const killedAt = performance.now();
    await redis.kill();
    await waitFor('a steps down', () => a.changes.some((c) => !c.leading && c.at >= killedAt), TTL_MS + 10_000);
    const downMs = a.changes.find((c) => !c.leading && c.at >= killedAt)!.at - killedAt;
    console.log(`# step-down after Redis was killed: ${Math.round(downMs)} ms (step-down deadline ${a.lease.stepDownAfter} ms after the last renewal was sent, TTL ${TTL_MS} ms)`);
    assert.ok(downMs < TTL_MS, `stepped down ${Math.round(downMs)} ms after the kill, before a lease renewed just before it could expire (${TTL_MS} ms)`);
    const msgs = a.logger.lines.map((l) => String(l.msg));
    assert.ok(msgs.some((m) => m.startsWith(`Leader election failed: Redis unreachable at ${redis.address} (`)), msgs.join('\n'));
    assert.equal(a.link.connected, false);
    assert.match(a.link.problem ?? '', new RegExp(`^Redis unreachable at ${redis.address}`));
    await redis.restart();
    await waitFor('a leads again', () => a.lease.current().leading, 15_000);
    assert.ok(a.lease.current().term > firstToken, `token ${a.lease.current().term} > ${firstToken} although Redis lost its counter`);
    assert.deepEqual(events, [`start ${firstToken}`, 'stop', `start ${a.lease.current().term}`], 'stopped at the step-down, restarted with the new token');
    assert.ok(a.logger.lines.some((l) => l['event'] === 'redis_reachable'));
    assert.ok(!JSON.stringify(a.logger.lines).includes('pw-never-logged-7f3a'), 'the password is never logged');
  } finally {
    services.close();
    await a.close();
    await redis.stop();
  }
});

test('a leader that finds its lease held by another logs "Split-brain warning" and steps down; the token floor from minToken is honoured', async () => {
  const redis = await TestRedis.start();
  const a = inProcess(redis.address, 'a', { minToken: async () => 100 });
  const raw = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
  try {
    await waitFor('a leads', () => a.lease.current().leading, 10_000);
    assert.equal(a.lease.current().term, 101, 'the first token is above the floor');
    await raw.connect();
    await raw.set('quorate:leader', JSON.stringify({ owner: 'x', nodeName: 'intruder', apiUrl: 'http://x', term: 140 }), 'PX', 60_000);
    await waitFor('a steps down', () => !a.lease.current().leading, 5000);
    const m = a.logger.lines.find((l) => l['event'] === 'split_brain');
    assert.match(String(m?.msg), /^Split-brain warning: intruder holds the leader lease with fencing token 140 while a believed it led with fencing token 101/);
    assert.equal(a.lease.warning?.startsWith('intruder holds the leader lease'), true);
    assert.deepEqual(a.lease.holder(), { nodeName: 'intruder', term: 140, apiUrl: 'http://x', owner: 'x', acquiredAtMs: 0 });
  } finally {
    raw.disconnect();
    await a.close();
    await redis.stop();
  }
});

test('a leader that stops cleanly releases the lease: a standby takes over at once, not after the TTL', async () => {
  const redis = await TestRedis.start();
  const a = inProcess(redis.address, 'a', { ttlMs: 10_000 });
  const b = inProcess(redis.address, 'b', { ttlMs: 10_000 });
  try {
    await waitFor('one leads', () => a.lease.current().leading || b.lease.current().leading, 10_000);
    const [leader, standby] = a.lease.current().leading ? [a, b] : [b, a];
    const t0 = performance.now();
    await leader.lease.stop();
    await waitFor('the standby leads', () => standby.lease.current().leading, 8000);
    console.log(`# takeover after a clean stop: ${Math.round(performance.now() - t0)} ms (TTL 10000 ms)`);
    assert.ok(leader.logger.lines.some((l) => l['event'] === 'lease_released'));
  } finally {
    await a.close();
    await b.close();
    await redis.stop();
  }
});

// libfaketime from the Debian package (installed on the CI machine kind: faketime).
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'].find((p) => existsSync(p));

test('a wall-clock jump of an hour on the leader (faketime) changes nothing: it keeps the lease, no standby takes over', async () => {
  assert.ok(LIBFAKETIME !== undefined, 'libfaketime is installed (apt-get install faketime)');
  const dir = mkdtempSync(join(tmpdir(), 'quorate-faketime-'));
  const clockFile = join(dir, 'offset');
  writeFileSync(clockFile, '+0\n');
  const redis = await TestRedis.start();
  // The wall clock follows the file, re-read at each call; the monotonic clock stays real, as with an NTP step.
  const env = { LD_PRELOAD: LIBFAKETIME!, FAKETIME_TIMESTAMP_FILE: clockFile, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const a = new LeaseProc('a', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS, env });
  let b: LeaseProc | undefined;
  try {
    await a.waitLeading();
    b = new LeaseProc('b', { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS });
    await b.waitWatching();
    await sleep(RENEW_MS);
    writeFileSync(clockFile, '+1h\n');
    await sleep(2 * TTL_MS);
    writeFileSync(clockFile, '-1h\n');
    await sleep(2 * TTL_MS);
    const writes = a.events.filter((e) => e.event === 'write').map((e) => e.at);
    assert.ok(writes.some((t) => t > Date.now() + 50 * 60_000), "the leader's wall clock did jump forward an hour");
    assert.ok(writes.some((t) => t < Date.now() - 50 * 60_000), 'and back an hour behind');
    assert.deepEqual(a.events.filter((e) => e.event === 'state').map((e) => e.leading), [true], 'the leader never stepped down');
    assert.equal(b.events.some((e) => e.event === 'state' && e.leading === true), false, 'the standby never took over');
    assert.doesNotMatch(a.stderr, /stepped down/);
  } finally {
    await a.stop();
    await b?.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
