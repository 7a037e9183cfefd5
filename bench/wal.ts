// `node dist/bench/wal.js`: the WAL's group-commit hot path alone, on the real
// file system (fsync on): batches of entries saved back to back, one awaited
// save at a time, as the replica does. Reports batches/s and how much of the
// wall time the event loop was busy (event-loop utilization) or blocked
// (event-loop delay seen by a 1 ms timer): with the write and fdatasync off
// the loop, the loop stays free for the network while the disk works.
// Env: WAL_BENCH_SECONDS (default 5), WAL_BENCH_BATCH (entries per save,
// default 64), WAL_BENCH_VALUE (bytes per entry, default 300),
// WAL_BENCH_DIR (parent of the temporary data dir, default the OS tmpdir).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Entry } from '../src/raft/types.js';
import { WalStorage } from '../src/storage/wal.js';

const SECONDS = Number(process.env['WAL_BENCH_SECONDS'] ?? 5);
const BATCH = Number(process.env['WAL_BENCH_BATCH'] ?? 64);
const VALUE = Number(process.env['WAL_BENCH_VALUE'] ?? 300);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(process.env['WAL_BENCH_DIR'] ?? tmpdir(), 'quorate-walbench-'));
  try {
    const { storage } = await WalStorage.open(dir);
    const data = new Uint8Array(VALUE).fill(0x61);
    let index = storage.lastIndex;
    // A 1 ms timer stands for the network: each late firing is time the loop could not serve it.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    let batches = 0;
    while (performance.now() - t0 < SECONDS * 1000) {
      const entries: Entry[] = [];
      for (let i = 0; i < BATCH; i++) entries.push({ index: ++index, term: 1, type: 'normal', data });
      await storage.save({ term: 1, vote: 1, commit: index - BATCH }, entries, true);
      batches++;
    }
    const wall = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    delay.disable();
    clearInterval(timer);
    await storage.close();
    const report = {
      benchmark: 'wal',
      seconds: SECONDS,
      entriesPerBatch: BATCH,
      valueBytes: VALUE,
      batchesPerSecond: Math.round((batches / wall) * 1000),
      entriesPerSecond: Math.round(((batches * BATCH) / wall) * 1000),
      msPerBatch: Number((wall / batches).toFixed(3)),
      eventLoopUtilization: Number(elu.utilization.toFixed(3)),
      oneMsTimerFiringsPerSecond: Math.round((ticks / wall) * 1000),
      eventLoopDelayMs: { p50: Number((delay.percentile(50) / 1e6).toFixed(2)), p99: Number((delay.percentile(99) / 1e6).toFixed(2)), max: Number((delay.max / 1e6).toFixed(2)) },
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
