// `quorate ca rotate` with real node processes: three nodes on loopback with
// the cluster CA forced on (apiTls "auto": peers run mutual TLS 1.3 from the
// CA too) and 20-second periods, so period re-issues also happen meanwhile.
// - A member still at feature level 3: ca rotate is refused (409 naming the
//   level); after it restarts on this release the rotation goes through.
// - Two rotations under continuous writes: no write fails; every member
//   re-issues from the new epoch; the leader ends the grace.
// - A member down across a rotation: the grace stays open naming it, a second
//   rotation is refused meanwhile; restarted, it reconnects with its old
//   certificate (trusted in the grace), catches up, re-issues, and the grace ends.
// - Per-period handshake keys: none while a member is at level 3; at level 4
//   every new connection (the restarted member's too) proves a period key, and
//   ha-state.json's Token names the current period's key, changing each period.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { QuorateClient } from '../../src/api/client.js';
import { periodKeyRef } from '../../src/transport/handshake.js';
import { CLUSTER_SECRET, MAIN, TOKEN, TestCluster, sleep, waitFor } from './harness.js';

const run = promisify(execFile);

interface CaView { epoch: number; graceEpoch: number | null; pending: { epoch: number; waitingFor: string[] } | null; nodeCertificate: { issuedFromEpoch: number } }

describe('quorate ca rotate', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('refused at feature level 3; under writes, two rotations with no failed write; a member down across one reconnects and ends the grace', async () => {
    const t0 = Date.now();
    const DOWN = 2;
    c = await TestCluster.start({
      nodes: 3, extraConfig: () => ({ security: { tls: 'auto', apiTls: 'auto', caRotationSeconds: 20 } }),
      env: (i) => (i === DOWN ? { QUORATE_TEST_FEATURE_LEVEL: '3' } : undefined),
    });
    const cl = c;
    const https = cl.nodes.map((n) => n.url.replace(/^http:/, 'https:'));
    const up = new Set([0, 1, 2]);
    await waitFor('every node wrote its certificate', () => cl.nodes.every((n) => existsSync(join(n.dir, 'tls', 'ca.crt'))), 30_000);
    // The roots the nodes trust now (certificates move to new epochs and periods during the test: read them afresh).
    const ca = (): Buffer[] => [...up].map((i) => readFileSync(join(cl.nodes[i]!.dir, 'tls', 'ca.crt')));
    const client = (urls = [...up].map((i) => https[i]!)): QuorateClient => new QuorateClient({ urls, token: TOKEN, ca: ca(), timeoutMs: 10_000 });
    const caOf = async (i: number): Promise<CaView> => (await client([https[i]!]).request<CaView>('GET', '/v1/ca')).body;
    const leaderIndex = async (): Promise<number | undefined> => {
      for (const i of up) {
        const r = await new QuorateClient({ urls: [https[i]!], ca: ca(), timeoutMs: 2000 }).health('leader').catch(() => undefined);
        if (r?.ok === true) return i;
      }
      return undefined;
    };
    await waitFor('a leader over HTTPS', async () => (await leaderIndex()) !== undefined, 30_000);
    // A 503 (no leader known yet, e.g. right after a start) is retried, as the client library does; any other answer counts.
    const rotate = async () => {
      for (let tries = 0; ; tries++) {
        const r = await client().request<Record<string, unknown>>('POST', '/v1/cluster/ca/rotate', { body: {}, write: true, raw: true });
        if (r.status !== 503 || tries >= 100) return r;
        await sleep(200);
      }
    };

    // Mixed feature levels: refused, naming the level; nothing changes.
    await waitFor('the cluster computes feature level 3', async () => (await client().request<{ featureLevel: number }>('GET', '/v1/cluster/status')).body.featureLevel === 3, 30_000);
    const mixed = await rotate();
    assert.equal(mixed.status, 409, JSON.stringify(mixed.body));
    assert.equal(mixed.body['error'], 'feature_unavailable');
    assert.match(String(mixed.body['message']), /ca rotate needs cluster feature level 4 \(this cluster is at 3/);
    assert.equal((await caOf(0)).epoch, 0);

    const connectedLines = (i: number, from = 0): string[] => cl.log(i).slice(from).split('\n').filter((l) => l.includes('"event":"peer_connected"') && l.includes('"direction":"in"'));
    for (const i of [0, 1, 2]) assert.ok(connectedLines(i).every((l) => !l.includes('"keyPeriod"')), `node${i + 1}: no period keys while a member is at level 3`);

    // The member is upgraded (restarted on this release): level 4.
    const beforeUpgrade = [0, 1, 2].map((i) => cl.log(i).length);
    cl.kill(DOWN, 'SIGTERM');
    await cl.waitExit(DOWN);
    cl.startNode(DOWN);
    await waitFor('the cluster computes feature level 4', async () => (await client().request<{ featureLevel: number }>('GET', '/v1/cluster/status').catch(() => undefined))?.body.featureLevel === 4, 45_000);

    // Writes run all along; a write that fails (after the client's own retries) is counted.
    let writing = true;
    // Bounded: if an assertion below fails, the writer must not keep the test process alive (it did, for the 10 min test timeout).
    const writerDeadline = Date.now() + 240_000;
    let writes = 0;
    let failed = 0;
    const errors: string[] = [];
    // One client while the members up and the roots they trust stay the same: a client per write left its
    // keep-alive connections open, and after about 1000 writes the leader refused new ones (its 1024-connection limit).
    let writerClient: { key: string; client: QuorateClient } | undefined;
    const writerClientNow = (): QuorateClient => {
      const key = `${[...up].join(',')}|${ca().map((b) => b.toString('base64')).join(',')}`;
      if (writerClient?.key !== key) writerClient = { key, client: client() };
      return writerClient.client;
    };
    const writer = (async () => {
      while (writing && Date.now() < writerDeadline) {
        try {
          await writerClientNow().kvPut(`rot/${writes}`, String(writes));
          writes++;
          // Paced (about 150 writes/s): on one connection the writer would otherwise run flat out for the whole
          // test and starve the test files beside it on a 2-core machine.
          await sleep(5);
        } catch (e) {
          failed++;
          errors.push((e as Error).message);
          await sleep(100);
        }
      }
    })();
    // Under writes: ha-state.json Token: the current period's handshake key reference, and a new one each period.
    const secret = new Uint8Array(Buffer.from(CLUSTER_SECRET, 'hex'));
    const tokenOf = (i: number): string => (JSON.parse(readFileSync(join(cl.nodes[i]!.dir, 'ha-state.json'), 'utf8')) as { Token: string }).Token;
    const expected = (): string[] => [-1, 0].map((d) => periodKeyRef(secret, 'it', Math.floor(Date.now() / 20_000) + d));
    await waitFor('Token names the current period key', () => expected().includes(tokenOf(0)), 30_000);
    const firstToken = tokenOf(0);
    await waitFor('Token changes at the next period', () => tokenOf(0) !== firstToken && expected().includes(tokenOf(0)), 30_000);
    const graceEnded = async (epoch: number): Promise<boolean> => {
      for (const i of up) {
        const v = await caOf(i).catch(() => undefined);
        if (v === undefined || v.epoch !== epoch || v.graceEpoch !== null || v.nodeCertificate.issuedFromEpoch !== epoch) return false;
      }
      return true;
    };

    // Rotation 1, through the CLI.
    const writesBefore = writes;
    const beforeRotation = [0, 1, 2].map((i) => cl.log(i).length);
    const cli = await run(process.execPath, [MAIN, 'ca', 'rotate', '--json', '--url', https[0]!, '--ca', join(cl.nodes[0]!.dir, 'tls', 'ca.crt')], { env: { ...process.env, QUORATE_TOKEN: TOKEN } });
    assert.equal((JSON.parse(cli.stdout) as { epoch: number }).epoch, 1);
    await waitFor('every member re-issued from epoch 1 and the grace ended', () => graceEnded(1), 60_000);
    const rotation1Ms = Date.now() - t0;
    // The members reconnected make-before-break: no outage seen (counted; a loaded machine may still time one out).
    const during1 = [0, 1, 2].map((i) => cl.log(i).slice(beforeRotation[i]));
    const count = (re: RegExp): number => during1.reduce((n, t) => n + (t.match(re) ?? []).length, 0);
    // (A replacement the acceptor took before the dialer saw its answer is logged as peer_connected.)
    const rotation1 = {
      reconnects: count(/"event":"peer_reconnected"/g) + count(/"event":"peer_connected"[^\n]*"direction":"out"/g), disconnects: count(/"event":"peer_disconnected"/g),
      leaderResets: count(/"event":"leader_connection_reset"/g),
    };
    assert.ok(rotation1.reconnects >= 6, `every member replaced its connection to each peer (${JSON.stringify(rotation1)})`);
    for (const i of [0, 1, 2]) assert.match(cl.log(i), /"reason":"ca_rotated"/, `node${i + 1} re-issued for the rotation`);
    assert.match(cl.log(0) + cl.log(1) + cl.log(2), /"event":"ca_rotation_complete"/);

    // Rotation 2 with a member down: the grace stays open naming it; a third rotation is refused meanwhile.
    const leader = (await leaderIndex())!;
    const victim = leader === DOWN ? 1 : DOWN;
    const victimName = `node${victim + 1}`;
    cl.kill(victim, 'SIGKILL');
    await cl.waitExit(victim);
    up.delete(victim);
    const r2 = await rotate();
    assert.equal(r2.status, 200, JSON.stringify(r2.body));
    assert.equal(r2.body['epoch'], 2);
    await waitFor('the leader waits for the member that is down', async () => {
      const v = await caOf((await leaderIndex()) ?? 0).catch(() => undefined);
      return v?.pending?.epoch === 2 && v.pending.waitingFor.length === 1 && v.pending.waitingFor[0] === victimName;
    }, 30_000);
    const refused = await rotate();
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body['error'], 'ca_rotation_refused');
    assert.match(String(refused.body['message']), new RegExp(`waiting for ${victimName} to show a certificate of epoch 2`));
    await client().kvPut('rot/while-down', 'yes');

    // It comes back with its epoch-1 certificate: trusted in the grace; it catches up, re-issues, and the grace ends.
    const logFrom = [0, 1, 2].map((i) => cl.log(i).length);
    cl.startNode(victim);
    up.add(victim);
    const noisy = (i: number): string => cl.log(i).slice(logFrom[i]).split('\n').filter((l) => /"level":"(warn|error|fatal)"|"level":[456]0/.test(l)).slice(-15).join('\n');
    await waitFor('the member that was down caught up', async () => (await client([https[victim]!]).request<{ value?: string }>('GET', '/v1/kv/rot/while-down', { query: { consistency: 'stale' }, raw: true }).catch(() => undefined))?.body.value === 'yes', 60_000)
      .catch((e: unknown) => {
        for (const i of [0, 1, 2]) console.log(`# node${i + 1} since the restart:\n${noisy(i).replace(/^/gm, '#   ')}`);
        throw e;
      });
    await waitFor('every member re-issued from epoch 2 and the grace ended', () => graceEnded(2), 60_000);
    assert.match(cl.log(victim).slice(logFrom[victim]), /"reason":"ca_rotated"/, 'the restarted member re-issued from epoch 2 by itself');
    for (const i of [0, 1, 2]) {
      if (i === victim) continue;
      const fromVictim = connectedLines(i, logFrom[i]).filter((l) => l.includes(`"name":"${victimName}"`));
      // Its first dials after the start may use the secret itself (it has not heard the members' levels yet; both forms
      // are accepted); once it has, and it redials after re-issuing, it proves the current period's key.
      assert.ok(/"keyPeriod":\d+/.test(fromVictim.at(-1) ?? ''), `node${i + 1}: the member that was down proved a period key (${fromVictim.length} connections: ${fromVictim.join(' | ')})`);
    }
    const periods = new Set([0, 1, 2].flatMap((i) => connectedLines(i, beforeUpgrade[i]).map((l) => /"keyPeriod":(\d+)/.exec(l)?.[1]).filter((p) => p !== undefined)));
    for (const i of [0, 1, 2]) {
      // (A peer_tls_rejected "socket hang up" is a dial given up mid-handshake, e.g. by a node stopping: not a refusal.)
      assert.doesNotMatch(cl.log(i).slice(logFrom[i]), /"code":"certificate_required"|"event":"peer_tls_rejected"[^\n]*certificate/, `node${i + 1} refused no member's certificate after the restart`);
    }

    writing = false;
    await writer;
    console.log(`# ca-rotate: ${JSON.stringify({ writes, writesDuringRotations: writes - writesBefore, failed, rotation1Ms, totalMs: Date.now() - t0, handshakeKeyPeriods: [...periods], rotation1 })}`);
    assert.equal(failed, 0, `no write failed across the rotations: ${errors.slice(0, 3).join(' | ')}`);
    assert.ok(writes - writesBefore > 0);

    // Both rotations are in the audit log.
    const audited = async (): Promise<string[]> => (await client().request<{ records: { action: string; result: string }[] }>('GET', '/v1/audit')).body.records
      .filter((r) => r.action === 'POST /v1/cluster/ca/rotate' && r.result !== 'no_leader').map((r) => r.result); // (503s were retried)
    await waitFor('the four ca rotate calls are audited', async () => (await audited()).length === 4);
    assert.deepEqual(await audited(), ['feature_unavailable', 'ok', 'ok', 'ca_rotation_refused']);
  });
});
