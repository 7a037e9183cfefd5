// Watch: a bounded in-memory history of change events plus live listeners.
// History is node-local (not replicated, not in snapshots): after a restart or
// a snapshot install it starts at the current revision. Whole revisions are
// evicted together (a txn's events share one revision), so "revision r is
// available" means every event of r is available.
import { CompactedError } from './errors.js';

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** Present on put. */
  readonly value?: string;
  /** Store revision of the change. */
  readonly revision: number;
  /** put: the key's createRevision. delete: the deleted record's createRevision. */
  readonly createRevision: number;
  /** put: equals revision. delete: the deleted record's last modRevision. */
  readonly modRevision: number;
}

export type WatchListener = (event: WatchEvent) => void;

export interface WatchOptions {
  /** Called once if the watch is ended by the store (e.g. a snapshot install skipped history); the listener gets nothing after. */
  readonly onCancel?: (err: CompactedError) => void;
}

export type Unsubscribe = () => void;

interface Watcher {
  readonly prefix: string;
  readonly listener: WatchListener;
  readonly onCancel: ((err: CompactedError) => void) | undefined;
  /** Smallest revision still to deliver. */
  nextRevision: number;
}

const eventBytes = (e: WatchEvent): number => 2 * (e.key.length + (e.value?.length ?? 0)) + 64;

export class WatchHub {
  readonly #maxEvents: number;
  readonly #maxBytes: number;
  readonly #onListenerError: (err: unknown, event: WatchEvent | undefined) => void;
  #events: WatchEvent[] = [];
  #head = 0;
  #bytes = 0;
  /** Every event with revision <= this is gone. */
  #compactedRevision = 0;
  #watchers = new Set<Watcher>();

  constructor(maxEvents: number, maxBytes: number, onListenerError: (err: unknown, event: WatchEvent | undefined) => void) {
    this.#maxEvents = maxEvents;
    this.#maxBytes = maxBytes;
    this.#onListenerError = onListenerError;
  }

  /** The oldest revision a watch may start from. */
  get oldestRevision(): number {
    return this.#compactedRevision + 1;
  }

  get watcherCount(): number {
    return this.#watchers.size;
  }

  #call(w: Watcher, e: WatchEvent): void {
    try {
      w.listener(e);
    } catch (err) {
      this.#reportError(err, e);
    }
  }

  #reportError(err: unknown, e: WatchEvent | undefined): void {
    try {
      this.#onListenerError(err, e);
    } catch {
      // An error hook that throws must not break apply either.
    }
  }

  /** Records the events of one revision and delivers them to matching watchers. */
  publish(events: readonly WatchEvent[]): void {
    if (events.length === 0) return;
    for (const e of events) {
      this.#events.push(e);
      this.#bytes += eventBytes(e);
    }
    this.#trim();
    const revision = events[events.length - 1]!.revision;
    for (const w of this.#watchers) {
      if (w.nextRevision > revision) continue;
      for (const e of events) {
        if (e.revision >= w.nextRevision && e.key.startsWith(w.prefix)) this.#call(w, e);
      }
      w.nextRevision = revision + 1;
    }
  }

  #trim(): void {
    while (this.#events.length - this.#head > this.#maxEvents || this.#bytes > this.#maxBytes) {
      const r = this.#events[this.#head]!.revision;
      while (this.#head < this.#events.length && this.#events[this.#head]!.revision === r) {
        this.#bytes -= eventBytes(this.#events[this.#head]!);
        this.#head++;
      }
      this.#compactedRevision = r;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#events.length) {
      this.#events = this.#events.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Replays retained events with revision >= fromRevision (synchronously,
   * before returning), then streams live ones. fromRevision undefined = live
   * only. Throws CompactedError if fromRevision < oldestRevision.
   */
  watch(prefix: string, fromRevision: number | undefined, currentRevision: number, listener: WatchListener, options?: WatchOptions): Unsubscribe {
    const w: Watcher = { prefix, listener, onCancel: options?.onCancel, nextRevision: currentRevision + 1 };
    if (fromRevision !== undefined) {
      if (fromRevision < this.oldestRevision) throw new CompactedError(fromRevision, this.oldestRevision);
      let lo = this.#head;
      let hi = this.#events.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.#events[mid]!.revision < fromRevision) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < this.#events.length; i++) {
        const e = this.#events[i]!;
        if (e.key.startsWith(prefix)) this.#call(w, e);
      }
      w.nextRevision = Math.max(fromRevision, currentRevision + 1);
    }
    this.#watchers.add(w);
    return () => {
      this.#watchers.delete(w);
    };
  }

  /** After a snapshot install: history restarts at `revision`; open watches are cancelled (they would miss events). */
  reset(revision: number): void {
    this.#events = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#compactedRevision = revision;
    const watchers = [...this.#watchers];
    this.#watchers.clear();
    for (const w of watchers) {
      if (w.onCancel === undefined) continue;
      try {
        w.onCancel(new CompactedError(w.nextRevision, revision + 1));
      } catch (err) {
        this.#reportError(err, undefined);
      }
    }
  }
}
