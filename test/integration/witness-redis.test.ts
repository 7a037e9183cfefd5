// The witness's Lua scripts (src/coord/witness.ts) against a private
// redis-server with appendonly yes / appendfsync always: every transition of
// one table of cases gives the same answer and the same record as the pure
// model (src/coord/witness-record.ts) that the simulator checks, evaluated at
// the Redis TIME the script saw. Then the persistence refusal, and a restart
// of Redis (same data, new run_id) and one without its data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisWitness, WitnessPersistenceError } from '../../src/coord/witness.js';
import { transition, type WitnessOp, type WitnessRecord } from '../../src/coord/witness-record.js';
import { TestRedis } from '../support/redis-server.js';
import { sleep } from './harness.js';

async function withRedis(fn: (redis: TestRedis, client: Redis, w: RedisWitness) => Promise<void>, persist = true): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-witness-'));
  const redis = await TestRedis.start(persist ? { persistDir: dir } : { workDir: dir });
  const client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1, lazyConnect: true });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await fn(redis, client, new RedisWitness(client, 'q:', redis.address));
  } finally {
    client.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('each witness script answers exactly as the pure model, case by case', async () => {
  await withRedis(async (_redis, client, w) => {
    await w.checkPersistence();
    const stamp = await w.stamp();
    let model: WitnessRecord | undefined;
    const cases: [WitnessOp, string][] = [
      [{ op: 'acquire', me: 1, floor: 0, ttl: 5000 }, 'missing'],
      [{ op: 'create', me: 1, voters: [2, 1], floor: 0 }, 'ok'],
      [{ op: 'create', me: 2, voters: [1, 2], floor: 0 }, 'exists'],
      [{ op: 'acquire', me: 3, floor: 0, ttl: 5000 }, 'not_in_sync'],
      [{ op: 'acquire', me: 1, floor: 0, ttl: 5000 }, 'ok'],
      [{ op: 'acquire', me: 2, floor: 0, ttl: 5000 }, 'held'],
      [{ op: 'renew', me: 2, epoch: 1, ttl: 5000 }, 'not_leader'],
      [{ op: 'renew', me: 1, epoch: 0, ttl: 5000 }, 'not_leader'],
      [{ op: 'renew', me: 1, epoch: 1, ttl: 5000 }, 'ok'],
      [{ op: 'shrink', me: 1, epoch: 1, from: [1, 2], to: [2] }, 'invalid'],
      [{ op: 'shrink', me: 1, epoch: 1, from: [1, 3], to: [1] }, 'set_changed'],
      [{ op: 'shrink', me: 1, epoch: 1, from: [1, 2], to: [1] }, 'ok'],
      // A retry after a lost answer finds its own result.
      [{ op: 'shrink', me: 1, epoch: 1, from: [1, 2], to: [1] }, 'ok'],
      [{ op: 'shrink', me: 2, epoch: 1, from: [1, 2], to: [1] }, 'not_leader'],
      [{ op: 'grow', me: 1, epoch: 1, from: [1], to: [1] }, 'ok'],
      [{ op: 'grow', me: 1, epoch: 1, from: [1, 2], to: [1, 2, 3] }, 'set_changed'],
      [{ op: 'release', me: 1, epoch: 1 }, 'ok'],
      // Out of the set: 2 may not take the free lease.
      [{ op: 'acquire', me: 2, floor: 7, ttl: 5000 }, 'not_in_sync'],
      [{ op: 'acquire', me: 1, floor: 7, ttl: 5000 }, 'ok'],
      [{ op: 'grow', me: 1, epoch: 8, from: [1], to: [1, 2] }, 'ok'],
      [{ op: 'acquire', me: 2, floor: 0, ttl: 5000 }, 'held'],
      // A short lease runs out in Redis's own time.
      [{ op: 'renew', me: 1, epoch: 8, ttl: 30 }, 'ok'],
    ];
    const run = async (op: WitnessOp, want: string) => {
      const got = await w.run(op);
      const expect = transition(model, op, got.now, stamp);
      const code = got.ok ? 'ok' : got.refused;
      assert.equal(code, want, `${JSON.stringify(op)} answered ${code}`);
      assert.equal(expect.ok ? 'ok' : expect.refused, code, `the model agrees on ${JSON.stringify(op)}`);
      assert.deepEqual(got.record, expect.record, `the record after ${JSON.stringify(op)}`);
      model = expect.record;
      assert.deepEqual(await w.read(), model, 'the stored record is the answered one');
    };
    for (const [op, want] of cases) await run(op, want);
    await sleep(80);
    await run({ op: 'renew', me: 1, epoch: 8, ttl: 5000 }, 'expired');
    await run({ op: 'shrink', me: 1, epoch: 8, from: [1, 2], to: [1] }, 'expired');
    await run({ op: 'acquire', me: 2, floor: 3, ttl: 5000 }, 'ok');
    assert.equal(model?.epoch, 9);
    assert.equal(model?.leader, 2);
    // Another stamp (another Redis wrote the record): everything but confirm is refused.
    await client.call('HSET', w.key, 'stamp', `${stamp}x`);
    const got = await w.run({ op: 'renew', me: 2, epoch: 9, ttl: 5000 });
    assert.equal(got.ok ? 'ok' : got.refused, 'untrusted');
    // Confirm re-stamps it and deposes every leader: nobody may take the lease until the recorded lease would have
    // ended, nor for its ttl (an old leader cut off from the witness may act until its own deadline); the model agrees.
    model = (await w.read())!;
    const leaseEnd = model.expires;
    await run({ op: 'confirm', me: 2, floor: 0, ttl: 60 }, 'ok');
    assert.equal(model?.expires, leaseEnd, 'the running lease keeps the others off until its end');
    await run({ op: 'renew', me: 2, epoch: 9, ttl: 5000 }, 'not_leader');
    await run({ op: 'acquire', me: 2, floor: 0, ttl: 5000 }, 'held');
    await run({ op: 'acquire', me: 1, floor: 0, ttl: 5000 }, 'held');
  });
});

test('a Redis without appendonly yes / appendfsync always is refused with the two lines to add', async () => {
  await withRedis(async (_redis, client, w) => {
    await assert.rejects(w.checkPersistence(), (e: unknown) => {
      assert.ok(e instanceof WitnessPersistenceError);
      assert.match(e.message, /appendonly yes\n {2}appendfsync always/);
      assert.match(e.message, /appendonly no/);
      return true;
    });
    await client.call('CONFIG', 'SET', 'appendonly', 'yes');
    await assert.rejects(w.checkPersistence(), /appendfsync everysec/);
    await client.call('CONFIG', 'SET', 'appendfsync', 'always');
    await w.checkPersistence();
  }, false);
});

test('a restarted Redis keeps the record but not the trust; one restarted empty has no record; confirm restores both', async () => {
  await withRedis(async (redis, client, w) => {
    const s1 = await w.stamp();
    assert.ok((await w.run({ op: 'create', me: 1, voters: [1, 2], floor: 0 })).ok);
    assert.ok((await w.run({ op: 'acquire', me: 1, floor: 0, ttl: 1500 })).ok);
    await redis.kill();
    await redis.restart();
    await client.ping().catch(() => undefined);
    let s2 = '';
    for (let i = 0; i < 100 && s2 === ''; i++) s2 = await w.stamp().catch(async () => { await sleep(50); return ''; });
    assert.notEqual(s2, s1, 'a restart changes run_id');
    const r = await w.run({ op: 'renew', me: 1, epoch: 1, ttl: 1500 });
    assert.equal(r.ok ? 'ok' : r.refused, 'untrusted');
    assert.equal(r.record?.epoch, 1, 'appendfsync always kept the record');
    const acq = await w.run({ op: 'acquire', me: 2, floor: 0, ttl: 60_000 });
    assert.equal(acq.ok ? 'ok' : acq.refused, 'untrusted');
    // The operator confirms on node 1: re-stamped, epoch at least its term.
    assert.ok((await w.run({ op: 'confirm', me: 1, floor: 4, ttl: 50 })).ok);
    const quiet = await w.run({ op: 'acquire', me: 1, floor: 0, ttl: 60_000 });
    assert.equal(quiet.ok ? 'ok' : quiet.refused, 'held', 'no one leads in the quiet period after a confirm');
    // The quiet period is the rest of the recorded lease (1.5 s from the acquire) or the confirm's ttl if longer.
    let again = quiet;
    for (let i = 0; i < 100 && !again.ok; i++) {
      await sleep(50);
      again = await w.run({ op: 'acquire', me: 1, floor: 0, ttl: 60_000 });
    }
    assert.ok(again.ok);
    assert.equal(again.record.epoch, 5);
    assert.deepEqual(again.record.insync, [1, 2]);
    // Now without its data: the record is gone; only confirm creates it, with the confirming node alone in the set.
    await redis.kill();
    rmSync(join(redis.persistDir!, 'appendonlydir'), { recursive: true, force: true });
    await redis.restart();
    let s3 = '';
    for (let i = 0; i < 100 && s3 === ''; i++) s3 = await w.stamp().catch(async () => { await sleep(50); return ''; });
    const lost = await w.run({ op: 'acquire', me: 1, floor: 5, ttl: 60_000 });
    assert.equal(lost.ok ? 'ok' : lost.refused, 'missing');
    assert.ok((await w.run({ op: 'confirm', me: 2, floor: 5, ttl: 50 })).ok);
    await sleep(80);
    const b = await w.run({ op: 'acquire', me: 1, floor: 5, ttl: 60_000 });
    assert.equal(b.ok ? 'ok' : b.refused, 'not_in_sync');
    const c = await w.run({ op: 'acquire', me: 2, floor: 5, ttl: 60_000 });
    assert.ok(c.ok);
    assert.equal(c.record.epoch, 6, 'the epoch never goes back below a term a node has seen');
  });
});
