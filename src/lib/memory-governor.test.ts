import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { governorStats, noteLargeBuffers, startMemoryGovernor } from './memory-governor.js';

const MiB = 1024 * 1024;
const external = (): number => v8.getHeapStatistics().external_memory;

test('the memory governor frees dead chunk Buffers once they grow past its bound, and leaves other allocations to V8', async () => {
  const stop = startMemoryGovernor(8 * MiB);
  assert.ok(stop !== undefined, 'this runtime lets the governor collect');
  try {
    await sleep(120);
    const before = governorStats.forced;
    // Ordinary traffic: many small Buffers, far below the bound in all.
    let keep = 0;
    for (let i = 0; i < 2000; i++) keep += Buffer.alloc(512)[0]!;
    await sleep(200);
    assert.equal(governorStats.forced, before, 'no collection for 1 MiB of small Buffers');
    // Growth nobody reported as a stream of large Buffers (KV traffic under load) is left to V8's schedule.
    const unreported: Buffer[] = [];
    for (let i = 0; i < 24; i++) unreported.push(Buffer.alloc(MiB));
    await sleep(200);
    assert.equal(governorStats.forced, before, 'no collection for Buffers not reported as a large stream');
    unreported.length = 0;

    // A stream of 1 MiB chunks that die at once, as an upload's: 40 MiB in all.
    const base = external();
    for (let i = 0; i < 40; i++) {
      keep += Buffer.alloc(MiB, 1)[7]!;
      noteLargeBuffers(MiB);
      if (i % 8 === 7) await sleep(60);
    }
    await sleep(200);
    assert.ok(governorStats.forced > before, 'the governor collected');
    assert.ok(external() - base < 16 * MiB, `dead chunks freed: ${((external() - base) / MiB).toFixed(1)} MiB still held above the start`);
    assert.ok(governorStats.forcedSeconds > 0);
    assert.ok(keep > 0);
  } finally {
    stop();
  }
});
