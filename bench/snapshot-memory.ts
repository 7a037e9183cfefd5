// `npm run bench:snapshot`: memory of streaming a large KV snapshot end to end.
// The sender (this process) fills a KvStateMachine (through its registry) with BENCH_STATE_MIB MiB of
// values (default 512), takes a snapshot into a WalStorage in a temp dir and
// streams it over a real PeerTransport connection to a receiver in a child
// process, which validates it (streaming), installs it into its own
// WalStorage and restores a KvStateMachine from it. Each phase samples RSS
// every few ms; the report gives the peak above the phase's baseline. The
// receiver has no prior state, so its restore phase holds exactly one copy of
// the state (restore builds the new state aside and swaps it in: a node that
// already holds a state holds both until the swap). Prints one JSON report.
// Not part of `npm test`.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message, SnapshotMeta } from '../src/raft/types.js';
import { createKvState, encodeCommand } from '../src/state/index.js';
import { WalStorage } from '../src/storage/index.js';
import { PeerTransport } from '../src/transport/index.js';
import type { ReceivedSnapshotFile, TransportLogger } from '../src/transport/index.js';

const MiB = 1024 * 1024;
const STATE_MIB = Number(process.env['BENCH_STATE_MIB'] ?? 512);
const VALUE_BYTES = Number(process.env['BENCH_VALUE_BYTES'] ?? 16 * 1024);
const SAMPLE_MS = 5;
const SECRET = new Uint8Array(32).fill(3);
const META: SnapshotMeta = { index: 0, term: 1, membership: { members: [{ id: 1, role: 'voter' }, { id: 2, role: 'voter' }], removed: [] } };

const quiet: TransportLogger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

const rss = (): number => process.memoryUsage.rss();
const mib = (n: number): number => Math.round((n / MiB) * 10) / 10;

interface PhaseReport {
  readonly seconds: number;
  readonly rssBeforeMiB: number;
  readonly peakAboveBaselineMiB: number;
  readonly throughputMBps?: number;
}

/** Runs `fn` while sampling RSS; the peak is reported above the RSS at its start (after a GC). */
async function phase(bytes: number | undefined, fn: () => Promise<void>): Promise<PhaseReport> {
  gc();
  const before = rss();
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, rss());
  }, SAMPLE_MS);
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  peak = Math.max(peak, rss());
  return {
    seconds: Math.round(seconds * 100) / 100,
    rssBeforeMiB: mib(before),
    peakAboveBaselineMiB: mib(peak - before),
    ...(bytes === undefined ? {} : { throughputMBps: Math.round(bytes / 1e6 / seconds) }),
  };
}

function snapMsg(meta: SnapshotMeta): Message {
  return { type: 'snap', from: 1, to: 2, term: meta.term, logTerm: 0, index: 0, commit: 0, entries: [], reject: false, rejectHint: 0, context: 0, snapshot: meta };
}

// ---- receiver (child process) ------------------------------------------------

async function receiver(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-bench-recv-'));
  // Opened first, as a node does: recovery removes *.tmp files in its snap dir, the spool dir.
  const { storage } = await WalStorage.open(join(dir, 'raft'));
  let receiving: { report: Promise<PhaseReport>; resolve: () => void } | undefined;
  const startReceive = (): void => {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    receiving = { report: phase(undefined, () => done), resolve };
  };
  let onSnap!: (meta: SnapshotMeta, source: ReceivedSnapshotFile) => void;
  const got = new Promise<{ meta: SnapshotMeta; source: ReceivedSnapshotFile }>((r) => (onSnap = (meta, source) => r({ meta, source })));
  const t = new PeerTransport({
    nodeId: 2, nodeName: 'recv', haId: 'bench', listenHost: '127.0.0.1', listenPort: 0, tls: 'off', logger: quiet, clusterSecret: SECRET,
    maxSnapshotBytes: 64 * 1024 * MiB, snapshotSpoolDir: join(dir, 'raft', 'snap'),
    onMessages: () => undefined, onPeerDisconnected: () => undefined,
    onSnapshot: (_from, meta, source) => {
      receiving?.resolve();
      onSnap(meta, source);
    },
  });
  const { port } = await t.listen();
  process.on('message', (m: { start?: boolean }) => {
    if (m.start) {
      startReceive();
      process.send!({ started: true });
    }
  });
  process.send!({ port });
  const { meta, source } = await got;
  const receive = await receiving!.report;
  const validate = await phase(source.bytes, () => createKvState().registry.validate(source.read()));
  const install = await phase(source.bytes, async () => {
    await storage.installSnapshot(meta, source.read());
  });
  await source.discard();
  const { registry, kv } = createKvState();
  gc();
  const beforeRestore = rss();
  const restore = await phase(source.bytes, async () => {
    const stored = await storage.readSnapshot(meta);
    await registry.restore(stored!.read());
  });
  gc();
  const restoredStateBytes = rss() - beforeRestore;
  await storage.close();
  await t.close();
  rmSync(dir, { recursive: true, force: true });
  process.send!({
    receiver: {
      receive, validate, install, restore,
      restoredKeys: kv.size,
      restoredStateMiB: mib(restoredStateBytes),
      restoreOverheadAboveStateMiB: mib(restore.peakAboveBaselineMiB * MiB - restoredStateBytes),
    },
  });
}

// ---- sender (this process) ---------------------------------------------------

async function sender(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-bench-send-'));
  const child = fork(new URL(import.meta.url).pathname, ['receiver'], { execArgv: ['--expose-gc'], stdio: 'inherit' });
  const fromChild = <T>(key: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const on = (m: Record<string, unknown>): void => {
        if (key in m) {
          child.off('message', on);
          resolve(m[key] as T);
        }
      };
      child.on('message', on);
      child.once('exit', (code) => reject(new Error(`receiver exited (${code}) before sending ${key}`)));
    });
  const portP = fromChild<number>('port');

  gc();
  const rssEmpty = rss();
  const { registry } = createKvState();
  const keys = Math.ceil((STATE_MIB * MiB) / VALUE_BYTES);
  const filler = 'x'.repeat(VALUE_BYTES - 16);
  const t0 = performance.now();
  for (let i = 0; i < keys; i++) {
    const value = `${String(i).padStart(15, '0')}:${filler}`;
    registry.apply(i + 1, encodeCommand({ at: 1, command: { type: 'put', key: `key/${String(i).padStart(8, '0')}`, value } }));
  }
  const fillSeconds = (performance.now() - t0) / 1000;
  gc();
  const rssState = rss();
  const stateBytes = keys * VALUE_BYTES;

  const { storage } = await WalStorage.open(join(dir, 'raft'));
  const meta: SnapshotMeta = { ...META, index: registry.appliedIndex };
  // The stored log must contain the snapshot index for a local save; an
  // install (what a follower does) has no such need, and writes the same file.
  let snapshotBytes = 0;
  const take = await phase(stateBytes, async () => {
    await storage.installSnapshot(meta, registry.snapshot('composite'), (n) => (snapshotBytes = n));
  });

  const t = new PeerTransport({
    nodeId: 1, nodeName: 'send', haId: 'bench', listenHost: '127.0.0.1', listenPort: 0, tls: 'off', logger: quiet, clusterSecret: SECRET,
    onMessages: () => undefined, onPeerDisconnected: () => undefined, onSnapshot: () => undefined,
  });
  await t.listen();
  t.setPeers(new Map([[2, { host: '127.0.0.1', port: await portP }]]));
  const started = fromChild<boolean>('started');
  child.send({ start: true });
  await started;
  const report = fromChild<Record<string, unknown>>('receiver');
  const send = await phase(snapshotBytes, async () => {
    const src = await storage.readSnapshot(meta);
    await t.sendSnapshot(2, snapMsg(meta), src!.read(), src!.bytes);
  });
  const recv = await report;
  await t.close();
  await storage.close();
  child.disconnect();
  rmSync(dir, { recursive: true, force: true });

  const phases = { take, send, ...(recv as Record<string, PhaseReport>) };
  const worstStreaming = Math.max(take.peakAboveBaselineMiB, send.peakAboveBaselineMiB,
    ...['receive', 'validate', 'install'].map((k) => (recv[k] as PhaseReport).peakAboveBaselineMiB),
    recv['restoreOverheadAboveStateMiB'] as number);
  console.log(JSON.stringify({
    stateMiB: STATE_MIB,
    keys,
    valueBytes: VALUE_BYTES,
    stateBytes,
    snapshotBytes,
    fillSeconds: Math.round(fillSeconds * 10) / 10,
    rssEmptyMiB: mib(rssEmpty),
    rssWithStateMiB: mib(rssState),
    phases,
    worstPeakAboveStateMiB: worstStreaming,
    targetMiB: 64,
    withinTarget: worstStreaming <= 64,
    notes: [
      'peakAboveBaselineMiB: highest RSS sampled every 5 ms during the phase, minus the RSS at its start (after a GC)',
      'take: MachineRegistry.snapshot() (composite) streamed into WalStorage (temp file, CRC, fsync, rename) in the sender, which holds the state',
      'send: WalStorage.readSnapshot -> PeerTransport.sendSnapshot over loopback TCP, until the receiver acknowledged',
      'receiver.receive: the receiving PeerTransport writing the stream to its spool file (child process, no state)',
      'receiver.restore: builds the state from the stored file into an empty registry with the KV; restoreOverheadAboveStateMiB = its peak minus the restored state that stays',
    ],
  }, null, 2));
}

if (process.argv[2] === 'receiver') await receiver();
else await sender();
