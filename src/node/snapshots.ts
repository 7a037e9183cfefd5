// Snapshots of one replica: taken from the state machine and streamed to
// storage (then the log compacted), streamed from storage to followers that
// need them, and received from the leader into a file (verified by a
// streaming validation before the core hears of them) and installed: streamed
// into storage atomically, then the state machine restored from it. Only the
// metadata of a snapshot is kept in memory, never its bytes. Part of the
// Replica (./replica.ts), kept apart for size.
import type { Logger } from 'pino';
import type { Message, NodeId, RawNode, SnapshotMeta } from '../raft/index.js';
import { NodeError } from './errors.js';
import type { LogStore, PeerNetwork, ReceivedSnapshotSource, StateMachine } from './ports.js';

/** What the snapshot keeper needs from its replica. */
export interface SnapshotHost {
  run(op: (raw: RawNode) => void): void;
  die(e: Error): void;
  fatalIfBroken(e: unknown): boolean;
  nameOf(id: NodeId): string;
}

export interface SnapshotsOptions {
  readonly raw: Pick<RawNode, 'snapshotMeta'>;
  readonly store: LogStore;
  readonly net: PeerNetwork;
  readonly sm: StateMachine;
  readonly logger: Logger;
  readonly host: SnapshotHost;
  /** The newest durable snapshot at start (its metadata; the bytes stay in storage). */
  readonly last: SnapshotMeta | undefined;
  /** Called after a snapshot is written (take) or installed from a leader (install): its duration and size. */
  readonly observe?: (kind: 'take' | 'install', seconds: number, bytes: number) => void;
}

/** Progress logging: bytes done (and the total when known), at most once per second. */
export const PROGRESS_LOG_INTERVAL_MS = 1000;

export class Snapshots {
  readonly #raw: Pick<RawNode, 'snapshotMeta'>;
  readonly #store: LogStore;
  readonly #net: PeerNetwork;
  readonly #sm: StateMachine;
  readonly #log: Logger;
  readonly #host: SnapshotHost;
  #last: SnapshotMeta | undefined;
  /** Snapshots received from leaders (files), by "term/index", until the core asks to install one (at most 2 kept). */
  #incoming = new Map<string, { meta: SnapshotMeta; source: ReceivedSnapshotSource }>();
  #inFlight = false;
  /** The core asked for a snapshot while one was being written: take one when it is done. */
  #again = false;
  readonly #observe: SnapshotsOptions['observe'];

  constructor(o: SnapshotsOptions) {
    this.#raw = o.raw;
    this.#store = o.store;
    this.#net = o.net;
    this.#sm = o.sm;
    this.#log = o.logger;
    this.#host = o.host;
    this.#last = o.last;
    this.#observe = o.observe;
  }

  /** Index of the newest snapshot this replica holds (0: none). */
  get index(): number {
    return this.#last?.index ?? 0;
  }

  /** A snapshot is being taken now. */
  /** The core asked for a snapshot: take one now, or right after the one being written (a dropped request kept its entries in memory until the next). */
  request(): void {
    if (this.#inFlight) {
      this.#again = true;
      return;
    }
    this.#again = false;
    void this.take().catch(() => undefined).then(() => {
      // Through the loop, as the core's own requests: between two Readies.
      if (this.#again) this.#host.run(() => this.request());
    });
  }

  /** A progress callback that logs `event` at most once per second. */
  #progress(event: string, what: string, fields: Record<string, unknown>, total?: number): (bytes: number) => void {
    let lastLog = Date.now();
    return (bytes) => {
      const now = Date.now();
      if (now - lastLog < PROGRESS_LOG_INTERVAL_MS) return;
      lastLog = now;
      const pct = total === undefined ? '' : ` (${Math.round((100 * bytes) / Math.max(1, total))}%)`;
      this.#log.info({ event, ...fields, bytes, ...(total === undefined ? {} : { total }) }, `${what}: ${bytes}${total === undefined ? '' : `/${total}`} bytes${pct}`);
    };
  }

  /** Keep a verified snapshot received from the leader until the core asks to install it. */
  received(meta: SnapshotMeta, source: ReceivedSnapshotSource): void {
    const key = `${meta.term}/${meta.index}`;
    const old = this.#incoming.get(key);
    if (old !== undefined && old.source !== source) void old.source.discard().catch(() => undefined);
    this.#incoming.delete(key);
    this.#incoming.set(key, { meta, source });
    while (this.#incoming.size > 2) {
      const [k, v] = this.#incoming.entries().next().value!;
      this.#incoming.delete(k);
      void v.source.discard().catch(() => undefined);
    }
  }

  async take(): Promise<{ index: number }> {
    if (this.#inFlight) throw new NodeError('snapshot_in_progress', 'a snapshot is already being written; try again shortly');
    this.#inFlight = true;
    try {
      const index = this.#sm.appliedIndex;
      if (index <= (this.#last?.index ?? 0)) return { index: this.#last?.index ?? 0 };
      // Captured now, at `index`; streamed to disk while apply() goes on.
      const chunks = this.#sm.localSnapshot?.() ?? this.#sm.snapshot();
      const meta = this.#raw.snapshotMeta(index);
      let bytes = 0;
      const progress = this.#progress('snapshot_take_progress', `snapshot at index ${index} written`, { index });
      const t0 = performance.now();
      try {
        await this.#store.saveSnapshot(meta, chunks, (n) => {
          bytes = n;
          progress(n);
        });
      } catch (e) {
        // Disk full or an I/O error: the storage is no longer trusted; stop
        // through the fatal path (logged, exit) rather than an unhandled rejection.
        this.#host.die(new Error(`writing the snapshot at index ${index} failed: ${(e as Error).message}`, { cause: e }));
        throw new NodeError('storage_failed', `writing the snapshot at index ${index} failed (${(e as Error).message}); the node is stopping`);
      }
      this.#last = meta;
      this.#observe?.('take', (performance.now() - t0) / 1000, bytes);
      const compactedTo = await new Promise<number>((resolve, reject) =>
        this.#host.run((raw) => {
          try {
            resolve(raw.snapshotTaken(index, bytes).compactedTo);
          } catch (e) {
            this.#host.fatalIfBroken(e);
            reject(e as Error);
          }
        }),
      );
      if (compactedTo > 0) {
        try {
          await this.#store.compact(compactedTo);
        } catch (e) {
          this.#host.die(new Error(`compacting the log through index ${compactedTo} failed: ${(e as Error).message}`, { cause: e }));
          throw new NodeError('storage_failed', `compacting the log failed (${(e as Error).message}); the node is stopping`);
        }
      }
      this.#log.info({ event: 'snapshot_taken', index, bytes, compactedTo }, `snapshot at index ${index} (${bytes} bytes); log compacted to ${compactedTo}`);
      return { index };
    } finally {
      this.#inFlight = false;
    }
  }

  async install(meta: SnapshotMeta): Promise<void> {
    const inc = this.#incoming.get(`${meta.term}/${meta.index}`);
    if (!inc) throw new Error(`snapshot ${meta.term}/${meta.index} to install has no received data`);
    const total = inc.source.bytes;
    this.#log.info({ event: 'snapshot_install_start', index: meta.index, bytes: total }, `installing snapshot at index ${meta.index} (${total} bytes) from the leader`);
    const t0 = performance.now();
    // Its contents were validated in full when it arrived (receiveSnapshot),
    // so the restore below should not fail; storage makes the install atomic.
    await this.#store.installSnapshot(meta, inc.source.read(), this.#progress('snapshot_install_progress', `snapshot at index ${meta.index} stored`, { index: meta.index }, total));
    // The state machine builds its new state aside from the stored copy and
    // swaps it in at the end. A failure here (the file changed under us) leaves
    // storage ahead of the state: the caller's fatal path restarts the node,
    // which restores from storage.
    const stored = await this.#store.readSnapshot(meta);
    if (stored === undefined) throw new Error(`snapshot ${meta.term}/${meta.index} is not in storage right after its install`);
    await this.#sm.restore(stored.read());
    this.#last = meta;
    this.#observe?.('install', (performance.now() - t0) / 1000, total);
    for (const v of this.#incoming.values()) await v.source.discard().catch(() => undefined);
    this.#incoming.clear();
    this.#log.info({ event: 'snapshot_installed', index: meta.index, bytes: total }, `installed snapshot at index ${meta.index} (${total} bytes) from the leader`);
  }

  send(m: Message): void {
    const last = this.#last;
    if (!last || !m.snapshot || last.index !== m.snapshot.index) {
      this.#host.run((raw) => raw.reportSnapshot(m.to, false));
      return;
    }
    const name = this.#host.nameOf(m.to);
    void (async () => {
      const src = await this.#store.readSnapshot(last);
      if (src === undefined) throw new Error(`snapshot at index ${last.index} is no longer stored`);
      // A local snapshot refers to content on this disk: the peer is sent it expanded (counted first: the size goes first).
      const x = this.#sm.expandSnapshot !== undefined ? await this.#sm.expandSnapshot(() => src.read()) : { bytes: src.bytes, chunks: src.read(), release: () => undefined };
      try {
        const total = x.bytes;
        this.#log.info({ event: 'snapshot_send_start', to: m.to, index: last.index, bytes: total }, `sending snapshot at index ${last.index} (${total} bytes) to ${name}`);
        const progress = this.#progress('snapshot_send_progress', `snapshot to ${name}`, { to: m.to, index: last.index }, total);
        await this.#net.sendSnapshot(m.to, m, x.chunks, total, (sent) => progress(sent));
      } finally {
        x.release();
      }
    })().then(
      () => this.#host.run((raw) => raw.reportSnapshot(m.to, true)),
      (e: Error) => {
        this.#log.warn({ event: 'snapshot_send_failed', to: m.to, err: e.message }, `snapshot to ${name} failed: ${e.message}`);
        this.#host.run((raw) => raw.reportSnapshot(m.to, false));
      },
    );
  }
}
