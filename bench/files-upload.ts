// One replicated file streamed to the leader (PUT /v1/files, chunked through
// the log): time, throughput, and each node's RSS growth while it is uploaded
// (sampled every 100 ms). Used by `npm run bench` (bench/cluster.ts) and
// `npm run bench:files` (bench/files.ts).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { TOKEN, type TestCluster } from '../test/integration/harness.js';
import { rssMb } from './proc.js';

const round = (x: number): number => Math.round(x * 10) / 10;

/** nodejs_heap_size_total_bytes and nodejs_external_memory_bytes (MiB) from a node's /metrics; undefined when it does not answer. */
async function heapMb(url: string): Promise<{ heapTotal: number; external: number } | undefined> {
  try {
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1048576;
    return { heapTotal: round(value('nodejs_heap_size_total_bytes')), external: round(value('nodejs_external_memory_bytes')) };
  } catch {
    return undefined;
  }
}

export interface UploadReport {
  readonly mib: number;
  /** Index of the node the file was streamed to (the leader) in the per-node arrays. */
  readonly leader: number;
  readonly status: number;
  readonly seconds: number;
  readonly mibPerSecond: number;
  readonly sha256Matches: boolean;
  readonly rssMbBefore: number[];
  readonly rssMbPeak: number[];
  readonly rssGrowthMb: number[];
  readonly maxRssGrowthMb: number;
  /** Peak V8 heap (nodejs_heap_size_total_bytes) and memory outside it (nodejs_external_memory_bytes: mostly Buffers) per node, sampled from /metrics every 250 ms. */
  readonly heapTotalMbPeak: number[];
  readonly externalMbPeak: number[];
  /** The machine's load average (1, 5, 15 min) when the upload ended: figures on a loaded machine say little. */
  readonly loadAverage: number[];
  readonly error?: string;
}

export async function uploadRun(c: TestCluster, mib: number, path = `bench/big-${mib}.bin`): Promise<UploadReport> {
  const leader = await c.waitLeader(20_000);
  const url = new URL(c.nodes[leader]!.url);
  const pids = c.nodes.map((n) => n.proc?.pid ?? 0);
  const before = pids.map(rssMb);
  const peak = [...before];
  const sampler = setInterval(() => pids.forEach((p, i) => { peak[i] = Math.max(peak[i]!, rssMb(p)); }), 100);
  const heapPeak = pids.map(() => 0);
  const externalPeak = pids.map(() => 0);
  let scraping = false;
  const scraper = setInterval(() => {
    if (scraping) return;
    scraping = true;
    void Promise.all(c.nodes.map(async (n, i) => {
      const m = await heapMb(n.url);
      if (m === undefined) return;
      heapPeak[i] = Math.max(heapPeak[i]!, m.heapTotal);
      externalPeak[i] = Math.max(externalPeak[i]!, m.external);
    })).finally(() => { scraping = false; });
  }, 250);
  const block = Buffer.alloc(1024 * 1024);
  const hash = createHash('sha256');
  const t0 = performance.now();
  let answer = '';
  let status = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, method: 'PUT', path: `/v1/files/${path}`, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': mib * 1024 * 1024 } }, (res) => {
        status = res.statusCode ?? 0;
        res.on('data', (d: Buffer) => (answer += d.toString()));
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      let i = 0;
      const write = (): void => {
        while (i < mib) {
          block.writeUInt32BE(i++, 0); // every MiB differs
          block.writeUInt32BE(mib, 4);
          hash.update(block);
          if (!req.write(Buffer.from(block))) {
            req.once('drain', write);
            return;
          }
        }
        req.end();
      };
      write();
    });
  } finally {
    clearInterval(sampler);
    clearInterval(scraper);
  }
  const seconds = (performance.now() - t0) / 1000;
  let body: { sha256?: string; message?: string } = {};
  try {
    body = JSON.parse(answer || '{}') as typeof body;
  } catch {
    body = { message: answer.slice(0, 200) };
  }
  const growth = peak.map((p, i) => round(p - before[i]!));
  return {
    mib, leader, status, seconds: round(seconds), mibPerSecond: round(mib / seconds), sha256Matches: body.sha256 === hash.digest('hex'),
    rssMbBefore: before, rssMbPeak: peak, rssGrowthMb: growth, maxRssGrowthMb: Math.max(...growth),
    heapTotalMbPeak: heapPeak, externalMbPeak: externalPeak, loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    ...(status !== 200 ? { error: body.message ?? answer.slice(0, 200) } : {}),
  };
}
