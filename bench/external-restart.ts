// `npm run bench:external-restart`: restart-to-ready of an external-shared
// node with a large log, before and after compaction. Two real nodes, a
// private PostgreSQL and redis-server; automatic compaction off
// (cluster.snapshotEntries at its maximum); BENCH_ENTRIES KV writes
// (default 20000, BENCH_VALUE_BYTES each, default 200) through the leader;
// the standby is killed and restarted (it replays the whole log: "before");
// then POST /v1/cluster/snapshot on the leader stores a snapshot and deletes
// the log behind it, and the standby is restarted again (snapshot + tail:
// "after"). BENCH_ROUNDS restarts of each (default 3). Prints one JSON report.
import { startExternalCluster } from '../test/integration/external-cluster.js';
import { http, sleep, TOKEN } from '../test/integration/harness.js';

const ENTRIES = Number(process.env['BENCH_ENTRIES'] ?? 20_000);
const VALUE_BYTES = Number(process.env['BENCH_VALUE_BYTES'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);

function summary(xs: number[]): { samples: number[]; min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { samples: xs.map(Math.round), min: Math.round(s[0] ?? 0), median: Math.round(s[Math.floor(s.length / 2)] ?? 0), max: Math.round(s.at(-1) ?? 0) };
}

async function main(): Promise<void> {
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 1, cluster: { snapshotEntries: 100_000_000, snapshotTrailingEntries: 1000 } });
  const { c, db } = x;
  try {
    const l = await c.waitLeader(30_000);
    const s = 1 - l;
    await c.waitReady(s, 30_000);
    const value = 'x'.repeat(VALUE_BYTES);
    const tw = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < ENTRIES) {
        const i = next++;
        for (;;) {
          const r = await http(c.nodes[l]!.url, 'PUT', `/v1/kv/k/${i % 5000}`, { token: TOKEN, body: { value } }).catch(() => undefined);
          if (r?.status === 200) break;
          await sleep(20);
        }
      }
    }));
    const writeMs = performance.now() - tw;
    const logRows = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log'))[0]!.n);
    const logBytes = async () => Number((await db.query<{ n: string | null }>('SELECT sum(length(payload)) AS n FROM quorate_log'))[0]!.n ?? 0);
    const snapshotLoadMs: number[] = [];
    const restart = async (): Promise<number> => {
      c.kill(s, 'SIGKILL');
      await c.waitExit(s);
      const t0 = performance.now();
      c.startNode(s);
      await c.waitReady(s, 120_000);
      const ms = performance.now() - t0;
      const loaded = [...c.log(s).matchAll(/loaded the snapshot at index \d+ from PostgreSQL \((\d+) bytes, (\d+) ms\)/g)].at(-1);
      if (loaded) snapshotLoadMs.push(Number(loaded[2]));
      return ms;
    };
    const before = { logRows: await logRows(), logBytes: await logBytes(), restartToReadyMs: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) before.restartToReadyMs.push(await restart());
    const ts = performance.now();
    const snap = await http(c.nodes[l]!.url, 'POST', '/v1/cluster/snapshot', { token: TOKEN, body: {} });
    if (snap.status !== 200) throw new Error(`snapshot: ${JSON.stringify(snap.body)}`);
    const snapshotMs = performance.now() - ts;
    const row = (await db.query<{ idx: string; bytes: string; chunks: number }>('SELECT idx, bytes, chunks FROM quorate_snapshot'))[0]!;
    const after = { logRows: await logRows(), logBytes: await logBytes(), snapshotIndex: Number(row.idx), snapshotBytes: Number(row.bytes), snapshotChunks: row.chunks, restartToReadyMs: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) after.restartToReadyMs.push(await restart());
    console.log(JSON.stringify({
      bench: 'external-restart', entries: ENTRIES, valueBytes: VALUE_BYTES, writeMs: Math.round(writeMs), writesPerSecond: Math.round(ENTRIES / (writeMs / 1000)),
      before: { ...before, restartToReadyMs: summary(before.restartToReadyMs) },
      snapshotWriteMs: Math.round(snapshotMs),
      after: { ...after, restartToReadyMs: summary(after.restartToReadyMs), snapshotLoadMs: summary(snapshotLoadMs) },
    }, null, 2));
  } finally {
    await x.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
