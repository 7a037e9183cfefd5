// Keeps the memory held by dead Buffers small (issue 10: a 1 GiB upload may
// grow a node's RSS by less than 64 MiB).
//
// Buffers live outside V8's heap. V8 frees a dead Buffer's memory only at a
// garbage collection, and it starts a full collection for memory outside its
// heap only once that memory has grown by about 64 MiB since the last one
// (V8's external allocation soft limit). A file upload or a snapshot stream
// makes a Buffer of up to 1 MiB per chunk, and most die within milliseconds
// (socket reads, frames, chunks written to the staging file): left to V8,
// each node would carry up to 64 MiB of dead chunks. The code that streams
// large Buffers says so (noteLargeBuffers: a chunk applied to the files
// machine, a snapshot chunk sent or received); every CHECK_MS, if any were
// reported since the last collection, the governor collects once the memory
// outside the heap has grown by `growthBytes` since its lowest point after
// that collection (on the leader of an upload, each chunk leaves about 4 MiB
// of dead Buffers: the request body's pieces and one frame per follower).
// Ordinary KV traffic makes small Buffers (several MiB a second under load),
// which V8's own schedule handles well: it reports none, so it never
// triggers a collection here (an earlier version that watched the memory
// alone collected every second or so under KV load, for a visible cost in
// throughput).
//
// A forced collection pauses the event loop (a full mark-compact, about
// 5-20 ms with a small heap): at most one per CHECK_MS, so heartbeats (every
// 100 ms by default) still go out. The collections are counted in /metrics
// (quorate_gc_forced_total, quorate_gc_forced_seconds_total).
//
// What is freed goes back to the system only where the allocator returns it:
// glibc keeps freed heap memory unless large blocks are mmapped. The service
// unit and `quorate demo` set MALLOC_MMAP_THRESHOLD_ for that
// (src/node/runtime-env.ts).
import v8 from 'node:v8';
import vm from 'node:vm';

const CHECK_MS = 20;

export interface GovernorStats {
  forced: number;
  forcedSeconds: number;
}

/** Process-wide (the governor is one per process, like the heap it watches). */
export const governorStats: GovernorStats = { forced: 0, forcedSeconds: 0 };

let running: (() => void) | undefined;
/** Bytes of large Buffers reported since the last forced collection. */
let largeBytes = 0;

/** A stream of large Buffers went through (chunks of an upload or a snapshot): they may be collected early. */
export function noteLargeBuffers(bytes: number): void {
  largeBytes += bytes;
}

function exposeGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    // The flag makes `gc` available to contexts created after it is set.
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts the governor (once per process; later calls return the same stop).
 * Returns a function that stops it; undefined if the runtime gives no way to
 * collect (then V8's own schedule applies).
 */
export function startMemoryGovernor(growthBytes = 8 * 1024 * 1024): (() => void) | undefined {
  if (running !== undefined) return running;
  const gc = exposeGc();
  if (gc === undefined) return undefined;
  let low = v8.getHeapStatistics().external_memory;
  const timer = setInterval(() => {
    const ext = v8.getHeapStatistics().external_memory;
    if (ext < low) {
      low = ext;
      return;
    }
    if (largeBytes === 0 || ext - low < growthBytes) return;
    largeBytes = 0;
    const t0 = performance.now();
    gc();
    governorStats.forced++;
    governorStats.forcedSeconds += (performance.now() - t0) / 1000;
    low = v8.getHeapStatistics().external_memory;
  }, CHECK_MS);
  timer.unref();
  running = () => {
    clearInterval(timer);
    running = undefined;
  };
  return running;
}
