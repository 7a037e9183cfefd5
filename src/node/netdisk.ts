// The network and disk view of one node (GET /v1/cluster/netdisk; the
// dashboard's "Network and disk"): every sampleMs it measures the round trip
// of an HTTP request to every other member's /system/health/ping (a real
// request on a kept-alive connection: network round trip plus that node's
// handling of a trivial request), and takes the fsync latency histogram's
// growth since the previous sample (quorate_fsync_latency_seconds, from the
// node's own metrics) and the data dir's free space. The newest samples are
// kept in memory, so the dashboard can draw fsync latency beside the leader
// changes of the cluster history.
import type { NodeStatus } from '../api/ports.js';
import type { NetDiskView, RttSample, FsyncSample } from '../api/ports-ops.js';
import { statfsSync } from 'node:fs';
import { peerGet } from './peer-get.js';

const KEEP = 120;
const PING_TIMEOUT_MS = 2000;
const FSYNC = 'quorate_fsync_latency_seconds';

interface Hist { readonly buckets: [number, number][]; readonly sum: number; readonly count: number }

/** The fsync histogram in Prometheus text (cumulative buckets by upper bound, seconds), or undefined. */
export function parseHistogram(text: string, name: string): Hist | undefined {
  const buckets: [number, number][] = [];
  let sum: number | undefined;
  let count: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\S+?)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const v = Number(m[3]);
    if (m[1] === `${name}_bucket`) {
      const le = /le="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (le !== undefined) buckets.push([le === '+Inf' ? Infinity : Number(le), v]);
    } else if (m[1] === `${name}_sum`) sum = v;
    else if (m[1] === `${name}_count`) count = v;
  }
  if (sum === undefined || count === undefined || buckets.length === 0) return undefined;
  return { buckets: buckets.sort((a, b) => a[0] - b[0]), sum, count };
}

/** One interval's fsyncs: count, mean, and the bucket bound the 99th percentile lies under (null: above the largest finite bucket). */
export function fsyncDelta(prev: Hist, cur: Hist, at: string): FsyncSample {
  const count = cur.count - prev.count;
  const sum = cur.sum - prev.sum;
  let p99: number | null = null;
  if (count > 0) {
    const want = 0.99 * count;
    for (let i = 0; i < cur.buckets.length; i++) {
      const [le, c] = cur.buckets[i]!;
      const before = prev.buckets[i]?.[1] ?? 0;
      if (c - before >= want) { p99 = Number.isFinite(le) ? le * 1000 : null; break; }
    }
  }
  return { at, count, meanMs: count > 0 ? Math.round((sum / count) * 1e6) / 1000 : null, p99UpperMs: p99 };
}

export interface NetDiskSources {
  readonly nodeName: string;
  readonly dataDir: string;
  status(): NodeStatus;
  /** One metric alone in the text exposition format ('' when not registered): the sampler reads FSYNC. */
  metricText(name: string): Promise<string>;
  /** Leadership changes this node saw (./leader-watch.ts). */
  leaderChanges?(): NetDiskView['leaderChanges'];
  /** Each round of round trips, once measured (quorate_peer_round_trip_seconds). */
  onRtt?(samples: readonly RttSample[]): void;
}

/** When the first sample is taken after start. */
const FIRST_SAMPLE_MS = 1000;

export class NetDiskSampler {
  readonly #s: NetDiskSources;
  readonly #sampleMs: number;
  #timer: NodeJS.Timeout | undefined;
  #first: NodeJS.Timeout | undefined;
  #prev: Hist | undefined;
  readonly #fsync: FsyncSample[] = [];
  #rtt: RttSample[] = [];
  #running = false;

  constructor(s: NetDiskSources, sampleMs = 5000) {
    this.#s = s;
    this.#sampleMs = sampleMs;
  }

  start(): void {
    if (this.#timer) return;
    // The first sample (the fsync baseline, and the first round trips) a moment after start, not on
    // the path to serving: it loads Node's fetch, CPU a starting node has better uses for. It renders
    // the fsync histogram alone: rendering every metric loaded prom-client's process metrics (92 files
    // with @opentelemetry/api) one second after start, in the middle of a restarted node's catch-up.
    this.#first = setTimeout(() => void this.sample(), Math.min(FIRST_SAMPLE_MS, this.#sampleMs));
    this.#first.unref();
    this.#timer = setInterval(() => void this.sample(), this.#sampleMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#first) clearTimeout(this.#first);
    if (this.#timer) clearInterval(this.#timer);
    this.#first = undefined;
    this.#timer = undefined;
  }

  async sample(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const at = new Date().toISOString();
      const h = parseHistogram(await this.#s.metricText(FSYNC), FSYNC);
      if (h !== undefined) {
        if (this.#prev !== undefined) {
          this.#fsync.push(fsyncDelta(this.#prev, h, at));
          if (this.#fsync.length > KEEP) this.#fsync.shift();
        }
        this.#prev = h;
      }
      const peers = this.#s.status().peers.filter((p) => !p.self);
      this.#rtt = await Promise.all(peers.map(async (p): Promise<RttSample> => {
        if (p.apiUrl === undefined) return { nodeName: p.nodeName, ms: null, at, error: 'no API URL recorded' };
        const t0 = performance.now();
        try {
          await peerGet(`${p.apiUrl.replace(/\/+$/, '')}/system/health/ping`, PING_TIMEOUT_MS);
          return { nodeName: p.nodeName, ms: Math.round((performance.now() - t0) * 100) / 100, at };
        } catch (e) {
          return { nodeName: p.nodeName, ms: null, at, error: (e as Error).name === 'TimeoutError' ? `no answer within ${PING_TIMEOUT_MS} ms` : (e as Error).message };
        }
      }));
      this.#s.onRtt?.(this.#rtt);
    } finally {
      this.#running = false;
    }
  }

  view(): NetDiskView {
    let disk: NetDiskView['disk'] = null;
    try {
      const fs = statfsSync(this.#s.dataDir);
      const size = fs.blocks * fs.bsize;
      disk = { freeBytes: fs.bavail * fs.bsize, sizeBytes: size, freePercent: size > 0 ? Math.round((1000 * fs.bavail) / fs.blocks) / 10 : 0 };
    } catch { /* the storage health in status says what is wrong */ }
    return { nodeName: this.#s.nodeName, sampleMs: this.#sampleMs, rtt: this.#rtt, fsync: [...this.#fsync], disk, leaderChanges: this.#s.leaderChanges?.() ?? [] };
  }
}
