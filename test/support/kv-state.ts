// For state tests: a MachineRegistry with the KV registered (createKvState),
// behind one object with the registry's surface (apply, applied index,
// clock, sessions, snapshot, restore, validate, whole-state checksum) and the
// KV's reads, so tests read like they drive one replicated KV.
import { createHash } from 'node:crypto';
import { InvalidCommandError, SnapshotCorruptError, commandFingerprint, createKvState } from '../../src/state/index.js';
import type {
  ApplyContext, ApplyResult, RestoreCommit, StateMachine, ExpireKey, KeyRecord, KvStateMachine, KvStateOptions, MachineRegistry, RangeResult, SnapshotWriteFormat,
  Unsubscribe, WatchListener, WatchOptions,
} from '../../src/state/index.js';

export class TestKv {
  readonly registry: MachineRegistry;
  readonly kv: KvStateMachine;

  constructor(options: KvStateOptions = {}) {
    ({ registry: this.registry, kv: this.kv } = createKvState(options));
  }

  get appliedIndex(): number {
    return this.registry.appliedIndex;
  }
  get clockMs(): number {
    return this.registry.clockMs;
  }
  get sessionCount(): number {
    return this.registry.sessionCount;
  }
  get revision(): number {
    return this.kv.revision;
  }
  get size(): number {
    return this.kv.size;
  }
  get watcherCount(): number {
    return this.kv.watcherCount;
  }
  get oldestWatchRevision(): number {
    return this.kv.oldestWatchRevision;
  }
  /** An empty entry gives `{ revision }`, as the KV used to answer. */
  apply(index: number, data: Uint8Array): ApplyResult {
    const r = this.registry.apply(index, data) ?? { revision: this.kv.revision };
    if (r instanceof Promise) throw new Error('the test KV state has no machine that applies off the loop');
    return r;
  }
  markApplied(index: number): void {
    this.registry.markApplied(index);
  }
  get(key: string): KeyRecord | undefined {
    return this.kv.get(key);
  }
  range(prefix: string, limit: number, startAfter?: string): RangeResult {
    return this.kv.range(prefix, limit, startAfter);
  }
  watch(prefix: string, fromRevision: number | undefined, listener: WatchListener, options?: WatchOptions): Unsubscribe {
    return this.kv.watch(prefix, fromRevision, listener, options);
  }
  expiredKeys(nowMs: number, max?: number): ExpireKey[] {
    return this.kv.expiredKeys(nowMs, max);
  }
  snapshot(format?: SnapshotWriteFormat): AsyncIterable<Uint8Array> {
    return this.registry.snapshot(format);
  }
  restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    return this.registry.restore(chunks);
  }
  validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    return this.registry.validate(chunks);
  }
  /** The registry's checksum: the whole replicated state. */
  checksum(): string {
    return this.registry.checksum();
  }
}

/**
 * A small test machine: payload = a JSON number to add to a total. Its
 * snapshot stream is `total:<n>\n` followed by `pad` bytes of '.', yielded in
 * chunks of `chunk` bytes (so a section spans several frames when pad is
 * large). An empty stream is total 0.
 */
export function counterMachine(o: { id?: string; pad?: number; chunk?: number } = {}): StateMachine<number> & { total: number; seen: ApplyContext[] } {
  const id = o.id ?? 'counter';
  const pad = o.pad ?? 0;
  const chunk = o.chunk ?? 1000;
  const encode = (total: number): Uint8Array => {
    const head = Buffer.from(`total:${total}\n`);
    return Buffer.concat([head, Buffer.alloc(pad, '.')]);
  };
  const parse = async (chunks: AsyncIterable<Uint8Array>): Promise<number> => {
    const parts: Buffer[] = [];
    for await (const c of chunks) parts.push(Buffer.from(c));
    const all = Buffer.concat(parts);
    if (all.length === 0) return 0;
    const nl = all.indexOf(10);
    const m = /^total:(\d+)$/.exec(all.subarray(0, Math.max(0, nl)).toString());
    if (nl < 0 || m === null) throw new SnapshotCorruptError(0, 'total', 'expected total:<n>\\n');
    for (let i = nl + 1; i < all.length; i++) if (all[i] !== 46) throw new SnapshotCorruptError(i, 'pad', 'expected "."');
    return Number(m[1]);
  };
  const m = {
    id,
    total: 0,
    seen: [] as ApplyContext[],
    decode(payload: Uint8Array): number {
      const n = JSON.parse(new TextDecoder().decode(payload)) as unknown;
      if (typeof n !== 'number') throw new InvalidCommandError('payload', 'must be a number');
      return n;
    },
    fingerprint: (n: number) => commandFingerprint({ type: 'put', key: `${id}/${n}`, value: '' }),
    apply(n: number, ctx: ApplyContext) {
      m.total += n;
      m.seen.push(ctx);
      return { revision: m.total };
    },
    snapshot(): AsyncIterable<Uint8Array> {
      const bytes = encode(m.total); // captured at the call
      return (async function* () {
        for (let at = 0; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
      })();
    },
    async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
      const total = await parse(chunks);
      return () => {
        m.total = total;
      };
    },
    async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
      await parse(chunks);
    },
    checksum: () => createHash('sha256').update(encode(m.total)).digest('hex'),
  };
  return m;
}
