// Replicated SQL with real processes: concurrent executes and queries from
// clients on every node while the leader is killed with -9; acknowledged
// increments of a counter table are all present, register operations on a
// SQL table are linearizable (the project's checker), the content checksums
// agree on every node; a node restarted after the log was compacted past it
// gets the database by snapshot and agrees too.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { QuorateHttpError, type QuorateClient } from '../../src/api/client.js';
import { checkHistory, type HistoryEntry, type KvOp, type KvOutput } from '../sim/linearizability.js';
import { spawnSync } from 'node:child_process';
import { FAILED_REQUEST, MAIN, TOKEN, TestCluster, http, sleep, snapshotNow } from './harness.js';

interface ExecBody { results: { rowsAffected: number }[] }
interface QueryBody { columns: string[]; rows: unknown[][] }

const execute = async (c: QuorateClient, statements: unknown[][], key?: string): Promise<ExecBody> =>
  (await c.request<ExecBody>('POST', '/v1/db/execute', { body: { statements }, write: true, ...(key !== undefined ? { idempotencyKey: key } : {}) })).body;
const query = async (c: QuorateClient, sql: string, params: unknown[] = [], consistency = 'linearizable'): Promise<QueryBody> =>
  (await c.request<QueryBody>('POST', '/v1/db/query', { body: { sql, params, consistency } })).body;

async function converge(c: TestCluster, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dumps = await Promise.all(c.nodes.map((n) => http(n.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined)));
    const views = dumps.map((d) => (d?.status === 200 ? `${d.body['appliedIndex']}/${d.body['checksum']}/${d.body['sqlChecksum']}` : 'down'));
    const sums = new Set(views);
    if (sums.size === 1 && !sums.has('down') && !sums.has('undefined')) return [...sums][0]!;
    if (Date.now() > deadline) {
      const each = c.nodes.map((n, i) => `${n.name}: ${views[i] === 'down' ? `down (${dumps[i] === undefined ? 'no answer' : `${dumps[i]!.status} ${JSON.stringify(dumps[i]!.body).slice(0, 300)}`})` : views[i]}`);
      throw new Error(`nodes did not converge:\n${each.join('\n')}\nthe nodes' last log lines (but failed requests):\n${c.logTails(15, FAILED_REQUEST)}`);
    }
    await sleep(100);
  }
}

/** A definite refusal (nothing applied) or an unknown outcome. */
const definite = (e: unknown): boolean => e instanceof QuorateHttpError && e.status >= 400 && e.status < 500;

describe('replicated SQL (real processes)', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('kill -9 of the leader under concurrent executes and queries from every node: acknowledged increments all present, the history linearizable, checksums equal; a node restarted after compaction gets the database by snapshot', async (t) => {
    c = await TestCluster.start({ nodes: 3, cluster: { snapshotEntries: 300, snapshotTrailingEntries: 20 } });
    const cl = c;
    await cl.waitLeader(60_000);
    const admin = cl.client({ timeoutMs: 10_000 });
    await execute(admin, [
      ['CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)'],
      ['INSERT INTO counter VALUES (1, 0)'],
      ['CREATE TABLE incs (id TEXT PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP, r INTEGER DEFAULT (random()))'],
      ['CREATE TABLE reg (k TEXT PRIMARY KEY, v TEXT)'],
      ["INSERT INTO reg (k) VALUES ('k0'), ('k1'), ('k2')"],
    ]);

    const history: HistoryEntry[] = [];
    const acked: string[] = [];
    let unknownIncs = 0;
    let stop = false;
    const t0 = performance.now();
    const now = (): number => performance.now() - t0;
    const keys = ['k0', 'k1', 'k2'];
    const worker = async (w: number): Promise<void> => {
      // Each client prefers another node: executes and linearizable reads are forwarded to the leader.
      const urls = cl.nodes.map((_, i) => cl.nodes[(i + w) % cl.nodes.length]!.url);
      const client = cl.client({ urls, timeoutMs: 4000 });
      const seen = new Map<string, string | null>();
      for (let n = 0; !stop; n++) {
        const key = keys[(w + n) % keys.length]!;
        const kind = n % 4;
        if (kind === 0) {
          const id = `w${w}-${n}`;
          try {
            await execute(client, [['UPDATE counter SET n = n + 1 WHERE id = 1'], ['INSERT INTO incs (id) VALUES (?)', id]]);
            acked.push(id);
          } catch (e) {
            if (!definite(e)) unknownIncs++;
          }
          continue;
        }
        let op: KvOp;
        const value = `w${w}-${n}`;
        if (kind === 1) op = { kind: 'write', key, value };
        else if (kind === 2) op = { kind: 'read', key };
        else op = { kind: 'cas', key, expected: seen.get(key) ?? null, value };
        const invokeAt = now();
        let output: KvOutput | undefined;
        try {
          if (op.kind === 'write') {
            await execute(client, [['UPDATE reg SET v = ? WHERE k = ?', value, key]]);
            output = { kind: 'ok' };
          } else if (op.kind === 'read') {
            const r = await query(client, 'SELECT v FROM reg WHERE k = ?', [key]);
            const v = (r.rows[0]?.[0] ?? null) as string | null;
            seen.set(key, v);
            output = { kind: 'read', value: v };
          } else {
            const r = await execute(client, [['UPDATE reg SET v = ? WHERE k = ? AND v IS ?', value, key, op.expected]]);
            output = { kind: r.results[0]!.rowsAffected === 1 ? 'ok' : 'fail' };
          }
        } catch (e) {
          if (definite(e)) throw e;
          output = undefined;
        }
        history.push({ client: w, op, output, invokeAt, returnAt: output === undefined ? undefined : now() });
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    await sleep(3000);
    const first = await cl.waitLeader();
    cl.kill(first);
    const killedAt = now();
    await cl.waitLeader(15_000, [first]);
    const failoverMs = now() - killedAt;
    await sleep(3000);
    stop = true;
    await Promise.all(workers);
    await cl.waitExit(first);

    // The killed node comes back and catches up; every node holds the same database.
    cl.startNode(first);
    await cl.waitReady(first, 30_000);
    await converge(cl);
    const counts = await Promise.all(cl.nodes.map(async (n) => query(cl.client({ urls: [n.url] }), 'SELECT (SELECT n FROM counter), (SELECT count(*) FROM incs)', [], 'stale')));
    for (const r of counts) assert.deepEqual(r.rows, counts[0]!.rows, 'every node holds the same counter');
    const [n, rows] = counts[0]!.rows[0] as [number, number];
    assert.equal(n, rows, 'each increment of the counter has its row (one transaction)');
    assert.ok(n >= acked.length && n <= acked.length + unknownIncs, `counter ${n}: ${acked.length} acknowledged, ${unknownIncs} unknown`);
    const present = new Set((await query(admin, 'SELECT id FROM incs')).rows.map((r) => r[0]));
    const lost = acked.filter((id) => !present.has(id));
    assert.deepEqual(lost, [], 'no acknowledged increment is lost');
    const check = checkHistory(history);
    assert.equal(check.result, 'linearizable', JSON.stringify(check).slice(0, 2000));
    t.diagnostic(`ops ${history.length}, increments acknowledged ${acked.length} (unknown ${unknownIncs}), failover ${Math.round(failoverMs)} ms`);

    // A follower misses writes while the leader snapshots and compacts past it: it gets the database by snapshot.
    const leader = await cl.waitLeader();
    const lagger = (leader + 1) % 3;
    cl.kill(lagger);
    await cl.waitExit(lagger);
    const rest = cl.client({ urls: cl.nodes.map((x) => x.url).filter((_, i) => i !== lagger), timeoutMs: 10_000 });
    await Promise.all(Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 60; i++) await execute(rest, [['INSERT INTO incs (id) VALUES (?)', `late-${w}-${i}`]]);
    }));
    // An automatic snapshot may be under way (409 snapshot_in_progress says to try again shortly).
    const snap = await snapshotNow(cl.nodes[leader]!.url, TOKEN);
    assert.equal(snap.status, 200, JSON.stringify(snap.body));
    cl.startNode(lagger);
    await cl.waitReady(lagger, 30_000);
    const agreed = await converge(cl);
    assert.match(cl.log(lagger), /installed snapshot/);
    const late = await query(cl.client({ urls: [cl.nodes[lagger]!.url] }), "SELECT count(*) FROM incs WHERE id LIKE 'late-%'", [], 'stale');
    assert.deepEqual(late.rows, [[240]]);
    t.diagnostic(`converged at ${agreed}`);

    // The CLI: a write with RETURNING, then a query as a table and as JSON (through a follower: forwarded).
    const cli = (...args: string[]): { status: number | null; out: string; err: string } => {
      const r = spawnSync(process.execPath, [MAIN, 'sql', ...args, '--url', cl.nodes[lagger]!.url, '--token', TOKEN], { encoding: 'utf8', timeout: 60_000 });
      return { status: r.status, out: r.stdout, err: r.stderr };
    };
    const ins = cli('--execute', 'INSERT INTO incs (id) VALUES (?) RETURNING id', '--params', '["cli-1"]');
    assert.equal(ins.status, 0, ins.err);
    assert.match(ins.out, /rowsAffected/);
    const tableOut = cli("SELECT id FROM incs WHERE id = 'cli-1'");
    assert.equal(tableOut.status, 0, tableOut.err);
    assert.match(tableOut.out, /cli-1\n\(1 row\)/);
    const json = JSON.parse(cli('SELECT count(*) AS n FROM incs', '--json').out) as QueryBody;
    assert.deepEqual(json.columns, ['n']);
    const refused = cli('--execute', "SELECT datetime('now', 'localtime')");
    assert.equal(refused.status, 1);
    assert.match(refused.err, /localtime/);
  });
});
