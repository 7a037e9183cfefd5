// The "app" machine: work queues, locks with fencing tokens and the outbox
// (commands in ./app-commands.ts). Deterministic like every machine: its only
// time is the registry's replicated clock (ApplyContext.clockMs), so a claim or
// a lock expires at the same log position on every node; claim tokens, lock
// fencing tokens and outbox ids come from the entry's log index (strictly
// increasing, equal everywhere).
//
// Queues: messages in enqueue order. A claim takes up to `max` visible
// messages (not claimed, or whose claim expired; delay elapsed), counts a
// delivery and hides them until clock + visibilityMs. ack/nack/extend need the
// claim token of a claim that has not expired: a stale token is refused per
// message. A message delivered maxDeliveries times (0: no limit) that comes
// back (claim expired or nacked) moves to the queue "<q>.dlq" instead.
// Locks: a free or expired lock is granted with fencingToken = the entry's
// index; the holder may re-acquire (same token) and renew before expiry.
// Outbox: messages in order, removed by outbox-done once the leader delivered them.
//
// Snapshot section: msgpack [1, queues, locks, outbox] (sorted by name; queue
// messages in queue order), or no bytes for the empty state.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { DataResult } from './results.js';
import { APP_MACHINE_ID, appFingerprint, decodeAppPayload, type AppCommand } from './app-commands.js';

const VERSION = 1;
const MAX_SECTION_BYTES = 1024 * 1024 * 1024;

interface QMsg {
  id: string;
  body: string;
  enqueuedAt: number;
  visibleAt: number;
  deliveries: number;
  maxDeliveries: number;
  claim: string | null;
  claimExpiresAt: number;
}
interface Queue { enqueued: number; acked: number; deadLettered: number; readonly messages: Map<string, QMsg> }
interface Lock { owner: string; fencingToken: number; expiresAt: number }
export interface OutboxMessage { readonly id: string; readonly body: string; readonly contentType: string; readonly createdAt: number }

export interface QueueStats {
  readonly queue: string; readonly ready: number; readonly delayed: number; readonly inFlight: number;
  readonly enqueued: number; readonly acked: number; readonly deadLettered: number; readonly deadLetterQueue: string; readonly deadLetterDepth: number;
}
export interface LockView { readonly name: string; readonly owner: string; readonly fencingToken: number; readonly expiresAt: number; readonly expired: boolean }

interface State { queues: Map<string, Queue>; locks: Map<string, Lock>; outbox: Map<string, OutboxMessage> }

const empty = (): State => ({ queues: new Map(), locks: new Map(), outbox: new Map() });
export const dlqOf = (q: string): string => `${q}.dlq`;

export class AppStateMachine implements StateMachine<AppCommand> {
  readonly id = APP_MACHINE_ID;
  #s: State = empty();
  /** Called after an outbox message is added (the leader's delivery loop wakes). Not replicated state. */
  onOutboxAdded: (() => void) | undefined;

  isEmpty(): boolean {
    return this.#s.queues.size === 0 && this.#s.locks.size === 0 && this.#s.outbox.size === 0;
  }

  decode(payload: Uint8Array): AppCommand {
    return decodeAppPayload(payload);
  }

  fingerprint(c: AppCommand): string {
    return appFingerprint(c);
  }

  apply(c: AppCommand, ctx: ApplyContext): DataResult {
    return { data: this.#apply(c, ctx.index, ctx.clockMs) };
  }

  #apply(c: AppCommand, index: number, now: number): unknown {
    switch (c.op) {
      case 'enqueue': {
        const q = this.#queue(c.queue);
        const id = String(index);
        q.messages.set(id, { id, body: c.body, enqueuedAt: now, visibleAt: now + c.delayMs, deliveries: 0, maxDeliveries: c.maxDeliveries, claim: null, claimExpiresAt: 0 });
        q.enqueued++;
        return { id };
      }
      case 'claim': {
        const q = this.#s.queues.get(c.queue);
        const claimToken = `c${index}`;
        const messages: { id: string; body: string; deliveries: number; enqueuedAt: number }[] = [];
        if (q !== undefined) {
          for (const m of [...q.messages.values()]) {
            if (messages.length >= c.max) break;
            if (m.claim !== null && now < m.claimExpiresAt) continue;
            if (m.claim !== null) this.#release(c.queue, q, m, now, 0);
            if (m.claim !== null || m.visibleAt > now || !q.messages.has(m.id)) continue;
            m.deliveries++;
            m.claim = claimToken;
            m.claimExpiresAt = now + c.visibilityMs;
            messages.push({ id: m.id, body: m.body, deliveries: m.deliveries, enqueuedAt: m.enqueuedAt });
          }
        }
        return { claimToken, visibleUntil: now + c.visibilityMs, messages };
      }
      case 'ack':
      case 'nack':
      case 'extend': {
        const q = this.#s.queues.get(c.queue);
        const done: string[] = [];
        const refused: { id: string; reason: string }[] = [];
        for (const id of c.ids) {
          const m = q?.messages.get(id);
          if (q === undefined || m === undefined) { refused.push({ id, reason: 'not_found' }); continue; }
          if (m.claim !== c.claimToken || now >= m.claimExpiresAt) { refused.push({ id, reason: 'stale_claim' }); continue; }
          if (c.op === 'ack') { q.messages.delete(id); q.acked++; }
          else if (c.op === 'nack') this.#release(c.queue, q, m, now, c.delayMs);
          else m.claimExpiresAt = now + c.visibilityMs;
          done.push(id);
        }
        return { done, refused, ...(c.op === 'extend' ? { visibleUntil: now + c.visibilityMs } : {}) };
      }
      case 'lock': {
        const l = this.#s.locks.get(c.name);
        if (l !== undefined && now < l.expiresAt && l.owner !== c.owner) {
          return { acquired: false, holder: l.owner, fencingToken: l.fencingToken, expiresInMs: l.expiresAt - now };
        }
        const fencingToken = l !== undefined && now < l.expiresAt ? l.fencingToken : index;
        this.#s.locks.set(c.name, { owner: c.owner, fencingToken, expiresAt: now + c.ttlMs });
        return { acquired: true, fencingToken, expiresAt: now + c.ttlMs, ttlMs: c.ttlMs };
      }
      case 'renew':
      case 'unlock': {
        const l = this.#s.locks.get(c.name);
        const why = l === undefined ? 'not_held' : l.owner !== c.owner || l.fencingToken !== c.fencingToken ? 'not_holder' : now >= l.expiresAt ? 'expired' : undefined;
        if (why !== undefined) {
          if (l !== undefined && now >= l.expiresAt) this.#s.locks.delete(c.name);
          return { ok: false, reason: why };
        }
        if (c.op === 'unlock') this.#s.locks.delete(c.name);
        else l!.expiresAt = now + c.ttlMs;
        return { ok: true, fencingToken: c.fencingToken, ...(c.op === 'renew' ? { expiresAt: now + c.ttlMs } : {}) };
      }
      case 'outbox-add': {
        const id = `ob-${index}`;
        this.#s.outbox.set(id, { id, body: c.body, contentType: c.contentType, createdAt: now });
        this.onOutboxAdded?.();
        return { id };
      }
      case 'outbox-done':
        return { removed: this.#s.outbox.delete(c.id) };
    }
  }

  #queue(name: string): Queue {
    let q = this.#s.queues.get(name);
    if (q === undefined) {
      q = { enqueued: 0, acked: 0, deadLettered: 0, messages: new Map() };
      this.#s.queues.set(name, q);
    }
    return q;
  }

  /** The message comes back (claim expired or nacked): visible after delayMs, or to the dead-letter queue after maxDeliveries. */
  #release(name: string, q: Queue, m: QMsg, now: number, delayMs: number): void {
    m.claim = null;
    m.claimExpiresAt = 0;
    m.visibleAt = now + delayMs;
    if (m.maxDeliveries > 0 && m.deliveries >= m.maxDeliveries) {
      q.messages.delete(m.id);
      q.deadLettered++;
      const dlq = this.#queue(dlqOf(name));
      dlq.messages.set(m.id, { ...m, visibleAt: now, maxDeliveries: 0 });
      dlq.enqueued++;
    }
  }

  // ---- reads (this node's applied state; `now` is the registry's clock)

  queueStats(name: string, now: number): QueueStats {
    const q = this.#s.queues.get(name);
    let ready = 0, delayed = 0, inFlight = 0;
    for (const m of q?.messages.values() ?? []) {
      if (m.claim !== null && now < m.claimExpiresAt) inFlight++;
      else if (m.visibleAt > now) delayed++;
      else ready++;
    }
    const dlq = dlqOf(name);
    return { queue: name, ready, delayed, inFlight, enqueued: q?.enqueued ?? 0, acked: q?.acked ?? 0, deadLettered: q?.deadLettered ?? 0, deadLetterQueue: dlq, deadLetterDepth: this.#s.queues.get(dlq)?.messages.size ?? 0 };
  }

  queueNames(): string[] {
    return [...this.#s.queues.keys()].sort();
  }

  lock(name: string, now: number): LockView | undefined {
    const l = this.#s.locks.get(name);
    return l === undefined ? undefined : { name, ...l, expired: now >= l.expiresAt };
  }

  locks(now: number): LockView[] {
    return [...this.#s.locks.keys()].sort().map((n) => this.lock(n, now)!);
  }

  /** Outbox messages in order (oldest first). */
  outbox(limit = Infinity): OutboxMessage[] {
    const out: OutboxMessage[] = [];
    for (const m of this.#s.outbox.values()) {
      if (out.length >= limit) break;
      out.push(m);
    }
    return out;
  }

  get outboxSize(): number {
    return this.#s.outbox.size;
  }

  // ---- snapshot

  #bytes(): Uint8Array {
    if (this.isEmpty()) return new Uint8Array(0);
    const s = this.#s;
    const queues = [...s.queues.keys()].sort().map((n) => {
      const q = s.queues.get(n)!;
      return [n, q.enqueued, q.acked, q.deadLettered, [...q.messages.values()].map((m) => [m.id, m.body, m.enqueuedAt, m.visibleAt, m.deliveries, m.maxDeliveries, m.claim, m.claimExpiresAt])];
    });
    const locks = [...s.locks.keys()].sort().map((n) => { const l = s.locks.get(n)!; return [n, l.owner, l.fencingToken, l.expiresAt]; });
    const outbox = [...s.outbox.values()].map((m) => [m.id, m.body, m.contentType, m.createdAt]);
    return packCanonical([VERSION, queues, locks, outbox]);
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readSection(chunks);
    return () => {
      this.#s = s;
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSection(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readSection(chunks: AsyncIterable<Uint8Array>): Promise<State> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > MAX_SECTION_BYTES) throw new SnapshotCorruptError(0, 'app', 'section larger than 1 GiB');
  }
  if (total === 0) return empty();
  const raw = unpack(Buffer.concat(parts));
  const bad = (field: string, why: string): never => { throw new SnapshotCorruptError(0, `app.${field}`, why); };
  if (!Array.isArray(raw) || raw.length !== 4) return bad('section', 'expected [version, queues, locks, outbox]');
  if (raw[0] !== VERSION) throw new SnapshotVersionError(typeof raw[0] === 'number' ? raw[0] : -1, VERSION);
  const [, queues, locks, outbox] = raw as unknown[];
  const s = empty();
  const nat = (v: unknown, f: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : bad(f, `expected a non-negative integer, got ${String(v)}`));
  const str = (v: unknown, f: string): string => (typeof v === 'string' ? v : bad(f, 'expected a string'));
  for (const q of arr(queues, 'queues', bad)) {
    const [n, enq, acked, dead, msgs] = arr(q, 'queues[]', bad);
    const queue: Queue = { enqueued: nat(enq, 'queue.enqueued'), acked: nat(acked, 'queue.acked'), deadLettered: nat(dead, 'queue.deadLettered'), messages: new Map() };
    for (const m of arr(msgs, 'queue.messages', bad)) {
      const [id, body, enqAt, vis, del, max, claim, exp] = arr(m, 'message', bad);
      const msg: QMsg = { id: str(id, 'message.id'), body: str(body, 'message.body'), enqueuedAt: nat(enqAt, 'message.enqueuedAt'), visibleAt: nat(vis, 'message.visibleAt'),
        deliveries: nat(del, 'message.deliveries'), maxDeliveries: nat(max, 'message.maxDeliveries'), claim: claim === null ? null : str(claim, 'message.claim'), claimExpiresAt: nat(exp, 'message.claimExpiresAt') };
      queue.messages.set(msg.id, msg);
    }
    s.queues.set(str(n, 'queue.name'), queue);
  }
  for (const l of arr(locks, 'locks', bad)) {
    const [n, owner, tok, exp] = arr(l, 'lock', bad);
    s.locks.set(str(n, 'lock.name'), { owner: str(owner, 'lock.owner'), fencingToken: nat(tok, 'lock.fencingToken'), expiresAt: nat(exp, 'lock.expiresAt') });
  }
  for (const o of arr(outbox, 'outbox', bad)) {
    const [id, body, ct, at] = arr(o, 'outbox[]', bad);
    s.outbox.set(str(id, 'outbox.id'), { id: str(id, 'outbox.id'), body: str(body, 'outbox.body'), contentType: str(ct, 'outbox.contentType'), createdAt: nat(at, 'outbox.createdAt') });
  }
  return s;
}

function unpack(b: Uint8Array): unknown {
  try {
    return unpackCanonical(b);
  } catch (e) {
    throw new SnapshotCorruptError(0, 'app', `not valid msgpack (${(e as Error).message})`);
  }
}

function arr(v: unknown, field: string, bad: (f: string, why: string) => never): unknown[] {
  return Array.isArray(v) ? v : bad(field, 'expected an array');
}
