// Snapshots of one replica: taken from the state machine and saved (then the
// log compacted), streamed to followers that need them, and received from
// the leader (decoded in full before the core hears of them) and installed
// atomically. Part of the Replica (./replica.ts), kept apart for size.
import type { Logger } from 'pino';
import type { Message, NodeId, RawNode, SnapshotMeta } from '../raft/index.js';
import { NodeError } from './errors.js';
import type { LogStore, PeerNetwork, StateMachine } from './ports.js';

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
  /** The newest durable snapshot at start. */
  readonly last: { meta: SnapshotMeta; data: Uint8Array } | undefined;
}

export class Snapshots {
  readonly #raw: Pick<RawNode, 'snapshotMeta'>;
  readonly #store: LogStore;
  readonly #net: PeerNetwork;
  readonly #sm: StateMachine;
  readonly #log: Logger;
  readonly #host: SnapshotHost;
  #last: { meta: SnapshotMeta; data: Uint8Array } | undefined;
  /** Snapshots received from leaders, by "term/index", until the core asks to install one (at most 2 kept). */
  #incoming = new Map<string, { meta: SnapshotMeta; data: Uint8Array }>();
  #inFlight = false;

  constructor(o: SnapshotsOptions) {
    this.#raw = o.raw;
    this.#store = o.store;
    this.#net = o.net;
    this.#sm = o.sm;
    this.#log = o.logger;
    this.#host = o.host;
    this.#last = o.last;
  }

  /** Index of the newest snapshot this replica holds (0: none). */
  get index(): number {
    return this.#last?.meta.index ?? 0;
  }

  /** A snapshot is being taken now. */
  get inFlight(): boolean {
    return this.#inFlight;
  }

  /** Keep a verified snapshot received from the leader until the core asks to install it. */
  received(meta: SnapshotMeta, data: Uint8Array): void {
    this.#incoming.set(`${meta.term}/${meta.index}`, { meta, data });
    while (this.#incoming.size > 2) this.#incoming.delete(this.#incoming.keys().next().value!);
  }

  async take(): Promise<{ index: number }> {
    if (this.#inFlight) throw new NodeError('snapshot_in_progress', 'a snapshot is already being written; try again shortly');
    this.#inFlight = true;
    try {
      const index = this.#sm.appliedIndex;
      if (index <= (this.#last?.meta.index ?? 0)) return { index: this.#last?.meta.index ?? 0 };
      const data = this.#sm.snapshot();
      const meta = this.#raw.snapshotMeta(index);
      try {
        await this.#store.saveSnapshot(meta, data);
      } catch (e) {
        // Disk full or an I/O error: the storage is no longer trusted; stop
        // through the fatal path (logged, exit) rather than an unhandled rejection.
        this.#host.die(new Error(`writing the snapshot at index ${index} failed: ${(e as Error).message}`, { cause: e }));
        throw new NodeError('storage_failed', `writing the snapshot at index ${index} failed (${(e as Error).message}); the node is stopping`);
      }
      this.#last = { meta, data };
      const compactedTo = await new Promise<number>((resolve, reject) =>
        this.#host.run((raw) => {
          try {
            resolve(raw.snapshotTaken(index).compactedTo);
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
      this.#log.info({ event: 'snapshot_taken', index, bytes: data.length, compactedTo }, `snapshot at index ${index} (${data.length} bytes); log compacted to ${compactedTo}`);
      return { index };
    } finally {
      this.#inFlight = false;
    }
  }

  async install(meta: SnapshotMeta): Promise<void> {
    const inc = this.#incoming.get(`${meta.term}/${meta.index}`);
    if (!inc) throw new Error(`snapshot ${meta.term}/${meta.index} to install has no received data`);
    // Its contents were decoded in full when it arrived (receiveSnapshot), so
    // the restore below cannot fail half-way; storage makes the install atomic.
    await this.#store.installSnapshot(meta, inc.data);
    this.#sm.restore(inc.data);
    this.#last = inc;
    this.#incoming.clear();
    this.#log.info({ event: 'snapshot_installed', index: meta.index, bytes: inc.data.length }, `installed snapshot at index ${meta.index} (${inc.data.length} bytes) from the leader`);
  }

  send(m: Message): void {
    const snap = this.#last;
    if (!snap || !m.snapshot || snap.meta.index !== m.snapshot.index) {
      this.#host.run((raw) => raw.reportSnapshot(m.to, false));
      return;
    }
    const total = snap.data.length;
    const name = this.#host.nameOf(m.to);
    let lastLog = 0;
    this.#log.info({ event: 'snapshot_send_start', to: m.to, index: snap.meta.index, bytes: total }, `sending snapshot at index ${snap.meta.index} (${total} bytes) to ${name}`);
    this.#net
      .sendSnapshot(m.to, m, snap.data, (sent) => {
        const now = Date.now();
        if (now - lastLog > 1000) {
          lastLog = now;
          this.#log.info({ event: 'snapshot_send_progress', to: m.to, sent, total }, `snapshot to ${name}: ${Math.round((100 * sent) / Math.max(1, total))}%`);
        }
      })
      .then(
        () => this.#host.run((raw) => raw.reportSnapshot(m.to, true)),
        (e: Error) => {
          this.#log.warn({ event: 'snapshot_send_failed', to: m.to, err: e.message }, `snapshot to ${name} failed: ${e.message}`);
          this.#host.run((raw) => raw.reportSnapshot(m.to, false));
        },
      );
  }
}
