// A cluster grows online from 1 to 3 to 5 voters by enroll while clients
// write and read, then shrinks to 3 by removing the leader and a follower:
// every acknowledged write is on every remaining node, their checksums agree,
// and the clients' history is linearizable (test/sim/linearizability.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { QuorateHttpError } from '../../src/api/client.js';
import { checkHistory, type HistoryEntry, type KvOp, type KvOutput } from '../sim/linearizability.js';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

interface PeerView { nodeName: string; role: string }


async function peers(url: string): Promise<PeerView[]> {
  const r = await http(url, 'GET', '/v1/cluster/status', { token: TOKEN });
  return (r.body['peers'] as PeerView[] | undefined) ?? [];
}

describe('membership: grow 1 -> 3 -> 5 voters and shrink to 3 online', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('every acknowledged write survives on every remaining node; checksums agree; the history is linearizable', async (t) => {
    const started = Date.now();
    c = await TestCluster.start({ nodes: 1 });
    await c.waitLeader();
    let urls = [c.nodes[0]!.url];
    const now = () => performance.now();

    // Clients: unique-key writes (acked list) and a linearizability history over three registers.
    const acked: string[] = [];
    const history: HistoryEntry[] = [];
    let stop = false;
    const writer = async (): Promise<void> => {
      for (let n = 0; !stop; n++) {
        try {
          await c!.client({ urls }).kvPut(`w/${n}`, `v${n}`);
          acked.push(`w/${n}`);
        } catch { /* not acknowledged: not counted */ await sleep(20); }
        await sleep(5);
      }
    };
    const register = async (id: number): Promise<void> => {
      for (let n = 0; !stop; n++) {
        const key = `r/${n % 3}`;
        const op: KvOp = n % 2 === 0 ? { kind: 'write', key, value: `c${id}-${n}` } : { kind: 'read', key };
        const invokeAt = now();
        let output: KvOutput | undefined;
        try {
          const client = c!.client({ urls });
          if (op.kind === 'write') {
            await client.kvPut(key, op.value);
            output = { kind: 'ok' };
          } else {
            const r = await client.kvGet(key);
            output = { kind: 'read', value: r ? r.value : null };
          }
          history.push({ client: id, op, output, invokeAt, returnAt: now() });
        } catch (e) {
          // A definite HTTP error or a failed read changed nothing; anything else is indeterminate.
          if (!(e instanceof QuorateHttpError) && op.kind !== 'read') history.push({ client: id, op, output: undefined, invokeAt, returnAt: undefined });
          await sleep(20);
        }
      }
    };
    const clients = [writer(), register(1), register(2)];

    // Grow: node2..node5, one enroll at a time, each promoted before the next.
    for (const name of ['node2', 'node3', 'node4', 'node5']) {
      const leader = c.nodes[await c.waitLeader()]!.url;
      const tok = await http(leader, 'POST', '/v1/cluster/join-tokens', { token: TOKEN, body: {} });
      assert.equal(tok.status, 200, JSON.stringify(tok.body));
      const j = await c.addJoiner(name, { QUORATE_JOIN_TOKEN: tok.body['token'] as string });
      const info = await http(c.nodes[j]!.url, 'GET', '/v1/cluster/join-info');
      const r = await http(leader, 'POST', '/v1/cluster/enroll', { token: TOKEN, body: { apiUrl: c.nodes[j]!.url, peerUrl: info.body['peerUrl'], role: 'voter' }, timeoutMs: 60_000 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await waitFor(`${name} is promoted to voter`, async () => (await peers(leader)).some((p) => p.nodeName === name && (p.role === 'standby' || p.role === 'primary')), 20_000);
      urls = c.nodes.map((n) => n.url);
      if (name === 'node3') t.diagnostic(`3 voters after ${Date.now() - started} ms`);
    }
    const five = await peers(c.nodes[0]!.url);
    assert.equal(five.filter((p) => p.role === 'standby' || p.role === 'primary').length, 5, JSON.stringify(five));
    t.diagnostic(`5 voters after ${Date.now() - started} ms, ${acked.length} writes acknowledged so far`);

    // Shrink: remove the leader (sent to a follower: it hands over first), then a follower.
    const leader = await c.waitLeader();
    const follower0 = [0, 1, 2, 3, 4].find((i) => i !== leader)!;
    const rm1 = await http(c.nodes[follower0]!.url, 'POST', '/v1/cluster/remove', { token: TOKEN, body: { nodeName: c.nodes[leader]!.name }, timeoutMs: 60_000 });
    assert.equal(rm1.status, 200, JSON.stringify(rm1.body));
    urls = c.nodes.filter((_, i) => i !== leader).map((n) => n.url);
    const leader2 = await c.waitLeader(10_000, [leader]);
    const victim = [0, 1, 2, 3, 4].find((i) => i !== leader && i !== leader2)!;
    const rm2 = await http(c.nodes[leader2]!.url, 'POST', '/v1/cluster/remove', { token: TOKEN, body: { nodeName: c.nodes[victim]!.name }, timeoutMs: 60_000 });
    assert.equal(rm2.status, 200, JSON.stringify(rm2.body));
    const rest = [0, 1, 2, 3, 4].filter((i) => i !== leader && i !== victim);
    urls = rest.map((i) => c!.nodes[i]!.url);
    await sleep(500);
    stop = true;
    await Promise.all(clients);
    for (const i of [leader, victim]) {
      await waitFor(`${c.nodes[i]!.name} answers removed`, async () => (await http(c!.nodes[i]!.url, 'GET', '/system/health/ping')).body['role'] === 'removed', 15_000);
    }
    const three = await peers(c.nodes[rest[0]!]!.url);
    assert.deepEqual(three.map((p) => p.nodeName).sort(), rest.map((i) => c!.nodes[i]!.name).sort());

    // Every acknowledged write on every remaining node; equal applied index and checksum.
    assert.ok(acked.length > 50, `only ${acked.length} writes were acknowledged`);
    const client = c.client({ urls });
    await client.kvPut('after-shrink', 'x');
    for (const i of rest) {
      const cl = c.client({ urls: [c.nodes[i]!.url] });
      await waitFor(`${c.nodes[i]!.name} holds all ${acked.length} acknowledged writes`, async () => {
        if ((await cl.kvGet('after-shrink', { consistency: 'stale' }).catch(() => undefined)) === undefined) return false;
        const keys = new Set((await cl.kvList('w/', 100_000, { consistency: 'stale' })).items.map((x) => x.key));
        return acked.every((k) => keys.has(k));
      }, 10_000);
    }
    await waitFor('the remaining nodes reach the same applied index and checksum', async () => {
      const d = await Promise.all(rest.map(async (i) => (await http(c!.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN })).body));
      return d.every((x) => x['appliedIndex'] === d[0]!['appliedIndex'] && x['checksum'] === d[0]!['checksum'] && typeof x['checksum'] === 'string');
    }, 10_000);

    const result = checkHistory(history);
    t.diagnostic(`${acked.length} acknowledged writes; history ${history.length} ops; checker: ${result.result}; wall ${Date.now() - started} ms`);
    assert.equal(result.result, 'linearizable', JSON.stringify(result).slice(0, 2000));
  });
});
