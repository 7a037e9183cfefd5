// The client library's application coordination (SPEC §4): work queues with
// `queue.work(handler, {concurrency})` (extends the claim while the handler
// runs, acks on success, nacks on failure), locks with `lock.withLock(fn)`
// (renewed while fn runs; fn gets the fencing token to pass to its own
// storage and an AbortSignal that fires if the lock is lost), and
// `election.campaign()` (etcd's concurrency package shapes: a leadership held
// by a renewed lock, with resign()). Writes carry an Idempotency-Key, so a
// retry after a lost answer (a leader failover) gets the first result back.
import { randomUUID } from 'node:crypto';
import type { QuorateClient } from './client.js';
import { QuorateHttpError } from './client-types.js';

export interface QueueMessage { readonly id: string; readonly body: string; readonly deliveries: number; readonly enqueuedAt: number }
export interface Claim { readonly claimToken: string | null; readonly messages: readonly QueueMessage[]; readonly visibleUntil?: number }
export interface ClaimOutcome { readonly done: readonly string[]; readonly refused: readonly { id: string; reason: string }[] }
export interface WorkOptions {
  /** Handlers running at once (each claims one message at a time). Default 1. */
  readonly concurrency?: number;
  /** Claim visibility timeout; the claim is extended every third of it while the handler runs. Default 30000. */
  readonly visibilityMs?: number;
  /** Long poll of each claim. Default 2000. */
  readonly waitMs?: number;
  /** Delay before a failed message is visible again. Default 1000. */
  readonly nackDelayMs?: number;
  /** Called on errors the loop survives (claim failed, ack refused, ...). */
  readonly onError?: (err: Error, message?: QueueMessage) => void;
  /** Called once a message's ack was accepted. */
  readonly onAck?: (message: QueueMessage) => void;
}
export interface Worker {
  /** Stop claiming; resolves when the running handlers have finished. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;

/** Repeats a write with one Idempotency-Key until it gets a definite answer (or `deadline`). */
async function settle<T>(fn: (key: string) => Promise<T>, deadline: number): Promise<T> {
  const key = randomUUID();
  for (;;) {
    try {
      return await fn(key);
    } catch (e) {
      if (e instanceof QuorateHttpError && e.status < 500) throw e;
      if (Date.now() >= deadline) throw e;
      await sleep(200);
    }
  }
}

export class QueueHandle {
  readonly #c: QuorateClient;
  readonly name: string;
  constructor(client: QuorateClient, name: string) {
    this.#c = client;
    this.name = name;
  }

  async enqueue(body: string, o: { delayMs?: number; maxDeliveries?: number; idempotencyKey?: string } = {}): Promise<{ id: string }> {
    const { delayMs, maxDeliveries } = o;
    const r = await this.#c.request<{ id: string }>('POST', `/v1/queues/${enc(this.name)}/messages`, { write: true, body: { body, ...(delayMs !== undefined ? { delayMs } : {}), ...(maxDeliveries !== undefined ? { maxDeliveries } : {}) }, ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}) });
    return r.body;
  }

  async claim(o: { max?: number; visibilityMs?: number; waitMs?: number } = {}): Promise<Claim> {
    return (await this.#c.request<Claim>('POST', `/v1/queues/${enc(this.name)}/claim`, { write: true, body: o, extraMs: o.waitMs ?? 0 })).body;
  }

  ack(claimToken: string, ids: readonly string[], idempotencyKey?: string): Promise<ClaimOutcome> {
    return this.#op('ack', { claimToken, ids }, idempotencyKey);
  }

  nack(claimToken: string, ids: readonly string[], delayMs = 0, idempotencyKey?: string): Promise<ClaimOutcome> {
    return this.#op('nack', { claimToken, ids, delayMs }, idempotencyKey);
  }

  extend(claimToken: string, ids: readonly string[], visibilityMs: number): Promise<ClaimOutcome> {
    return this.#op('extend', { claimToken, ids, visibilityMs });
  }

  async stats(): Promise<Record<string, unknown>> {
    return (await this.#c.request<Record<string, unknown>>('GET', `/v1/queues/${enc(this.name)}`)).body;
  }

  async #op(op: string, body: Record<string, unknown>, idempotencyKey?: string): Promise<ClaimOutcome> {
    return (await this.#c.request<ClaimOutcome>('POST', `/v1/queues/${enc(this.name)}/${op}`, { write: true, body, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}) })).body;
  }

  /**
   * Runs `handler` for every message, `concurrency` at a time: claims one,
   * extends the claim while the handler runs, acks when it resolves, nacks
   * (after nackDelayMs) when it throws. At-least-once: a message whose claim
   * expired (the worker stalled) is delivered again and its late ack refused.
   */
  work(handler: (m: QueueMessage) => Promise<void>, o: WorkOptions = {}): Worker {
    const visibilityMs = o.visibilityMs ?? 30_000;
    let stopping = false;
    const report = (e: unknown, m?: QueueMessage) => o.onError?.(e as Error, m);
    const one = async (): Promise<void> => {
      while (!stopping) {
        let claim: Claim;
        try {
          claim = await this.claim({ max: 1, visibilityMs, waitMs: o.waitMs ?? 2000 });
        } catch (e) {
          report(e);
          await sleep(250);
          continue;
        }
        const m = claim.messages[0];
        if (m === undefined || claim.claimToken === null) continue;
        const token = claim.claimToken;
        const timer = setInterval(() => void this.extend(token, [m.id], visibilityMs).catch((e: unknown) => report(e, m)), Math.max(50, Math.floor(visibilityMs / 3)));
        let ok = true;
        try {
          await handler(m);
        } catch (e) {
          ok = false;
          report(e, m);
        } finally {
          clearInterval(timer);
        }
        try {
          const deadline = Date.now() + visibilityMs;
          await settle((key) => (ok ? this.ack(token, [m.id], key) : this.nack(token, [m.id], o.nackDelayMs ?? 1000, key)), deadline);
          if (ok) o.onAck?.(m);
        } catch (e) {
          report(e, m);
        }
      }
    };
    const loops = Array.from({ length: Math.max(1, o.concurrency ?? 1) }, () => one());
    return {
      stop: async () => {
        stopping = true;
        await Promise.all(loops);
      },
    };
  }
}

export interface LockLease {
  readonly name: string;
  readonly owner: string;
  /** Strictly increasing across acquisitions: pass it to your storage and refuse writes with an older one. */
  readonly fencingToken: number;
  readonly expiresAt: number;
}

export class LockHandle {
  readonly #c: QuorateClient;
  readonly name: string;
  readonly owner: string;
  constructor(client: QuorateClient, name: string, owner: string = randomUUID()) {
    this.#c = client;
    this.name = name;
    this.owner = owner;
  }

  /** Acquires (waiting up to waitMs for a holder to release or expire); throws QuorateHttpError lock_held otherwise. */
  async acquire(o: { ttlMs?: number; waitMs?: number } = {}): Promise<LockLease> {
    const r = await this.#c.request<LockLease>('POST', `/v1/locks/${enc(this.name)}`, { write: true, body: { owner: this.owner, ...o }, extraMs: o.waitMs ?? 0 });
    return { ...r.body, name: this.name, owner: this.owner };
  }

  async renew(fencingToken: number, ttlMs?: number): Promise<void> {
    await this.#c.request('POST', `/v1/locks/${enc(this.name)}/renew`, { write: true, body: { owner: this.owner, fencingToken, ...(ttlMs !== undefined ? { ttlMs } : {}) } });
  }

  async release(fencingToken: number): Promise<void> {
    await this.#c.request('DELETE', `/v1/locks/${enc(this.name)}`, { write: true, query: { owner: this.owner, fencingToken } });
  }

  /** The holder now, or undefined. */
  async holder(): Promise<{ owner: string; fencingToken: number; expiresAt: number } | undefined> {
    const r = await this.#c.request<{ owner: string; fencingToken: number; expiresAt: number }>('GET', `/v1/locks/${enc(this.name)}`, { raw: true });
    return r.status === 200 ? r.body : undefined;
  }

  /**
   * Acquires, runs fn with the lease (renewed every ttl/3 while it runs; the
   * signal aborts if a renewal is refused: stop writing, the token is stale),
   * and releases afterwards.
   */
  async withLock<T>(fn: (lease: LockLease, signal: AbortSignal) => Promise<T>, o: { ttlMs?: number; waitMs?: number } = {}): Promise<T> {
    const ttlMs = o.ttlMs ?? 30_000;
    const lease = await this.acquire({ ttlMs, waitMs: o.waitMs ?? 30_000 });
    const lost = new AbortController();
    const timer = setInterval(() => {
      this.renew(lease.fencingToken, ttlMs).catch((e: unknown) => {
        if (e instanceof QuorateHttpError && e.code === 'not_lock_holder') lost.abort(e);
      });
    }, Math.max(50, Math.floor(ttlMs / 3)));
    try {
      return await fn(lease, lost.signal);
    } finally {
      clearInterval(timer);
      if (!lost.signal.aborted) await this.release(lease.fencingToken).catch(() => undefined);
    }
  }
}

export interface ElectionLeadership {
  readonly fencingToken: number;
  /** Aborts when leadership is lost (a renewal refused). */
  readonly signal: AbortSignal;
  /** Gives leadership up. */
  resign(): Promise<void>;
}

/** Leader election for applications (etcd concurrency's Election): campaign() resolves once this client leads. */
export class Election {
  readonly #lock: LockHandle;
  readonly #ttlMs: number;
  constructor(client: QuorateClient, name: string, o: { value?: string; ttlMs?: number } = {}) {
    this.#lock = new LockHandle(client, `election-${name}`, o.value ?? randomUUID());
    this.#ttlMs = o.ttlMs ?? 10_000;
  }

  get value(): string {
    return this.#lock.owner;
  }

  /** Waits until elected; the leadership is renewed until resign() or loss. */
  async campaign(o: { signal?: AbortSignal } = {}): Promise<ElectionLeadership> {
    let lease: LockLease | undefined;
    while (lease === undefined) {
      o.signal?.throwIfAborted();
      try {
        lease = await this.#lock.acquire({ ttlMs: this.#ttlMs, waitMs: 5000 });
      } catch (e) {
        if (!(e instanceof QuorateHttpError && e.code === 'lock_held')) await sleep(250);
      }
    }
    const lost = new AbortController();
    const held = lease;
    const timer = setInterval(() => {
      this.#lock.renew(held.fencingToken, this.#ttlMs).catch((e: unknown) => {
        if (e instanceof QuorateHttpError && e.code === 'not_lock_holder') { clearInterval(timer); lost.abort(e); }
      });
    }, Math.max(50, Math.floor(this.#ttlMs / 3)));
    return {
      fencingToken: held.fencingToken,
      signal: lost.signal,
      resign: async () => {
        clearInterval(timer);
        if (!lost.signal.aborted) await this.#lock.release(held.fencingToken);
      },
    };
  }

  /** The current leader's value and fencing token, or undefined. */
  async leader(): Promise<{ value: string; fencingToken: number } | undefined> {
    const h = await this.#lock.holder();
    return h === undefined ? undefined : { value: h.owner, fencingToken: h.fencingToken };
  }
}
