// The outbox's delivery (config `outbox.webhookUrl`,
// `database.outboxPollIntervalSeconds`): a leader service per source of
// messages. While this node leads, it takes the source's oldest message,
// POSTs its body to the webhook with the message id as Idempotency-Key (and
// X-Quorate-Fencing-Token: the term), and on a 2xx removes it through the log;
// then the next one, in order. A failed delivery is retried with exponential
// backoff (0.5 s doubling, at most max(poll interval, 30 s)); with nothing to
// deliver it polls every interval (the app machine's source also wakes it as
// soon as a message is added). A new leader resumes from the oldest message
// not yet removed: a message whose removal did not commit before a failover
// is delivered again with the same id, so the receiver deduplicates by
// Idempotency-Key (at-least-once, in order within a source).
//
// Sources: the "app" machine's outbox (`POST /v1/outbox`, ids `ob-<index>`,
// appOutboxSource below) and the SQL machine's `quorate_outbox` table (ids
// `sql-<rowid>`, ./sql-outbox.ts). Each has its own loop: the two are
// independent streams, each delivered in its own order.
import type { Logger } from 'pino';
import type { AppCommand, AppStateMachine } from '../state/index.js';
import type { LeaderService } from './leadership.js';
import type { MetricsRegistry } from '../ops/metrics.js';

export interface OutboxItem {
  /** The Idempotency-Key: unique within and across sources. */
  readonly id: string;
  readonly body: string | Uint8Array;
  readonly contentType: string;
}

/** Where messages come from and how a delivered one is removed. */
export interface OutboxSource {
  /** The leader service's name. */
  readonly name: string;
  /** Brings this node's view up to everything committed (a new leader, or after a failure). */
  sync(): Promise<void>;
  /** The oldest message not yet removed. */
  head(): Promise<OutboxItem | undefined>;
  /** Removes a delivered message through the log; resolves once applied here. */
  remove(m: OutboxItem): Promise<void>;
  /** Set by the delivery: call it when a message was added (wakes an idle poll). */
  onAdded?: (wake: () => void) => void;
}

export interface OutboxDeps {
  readonly source: OutboxSource;
  readonly webhookUrl: string;
  readonly pollMs: number;
  readonly log: Logger;
  readonly metrics: MetricsRegistry;
}

/** The "app" machine's outbox (POST /v1/outbox). */
export function appOutboxSource(d: { app: AppStateMachine; propose(c: AppCommand): Promise<unknown>; readBarrier(): Promise<void> }): OutboxSource {
  return {
    name: 'outbox-delivery',
    sync: () => d.readBarrier(),
    head: async () => d.app.outbox(1)[0],
    remove: async (m) => { await d.propose({ op: 'outbox-done', id: m.id }); },
    onAdded: (wake) => { d.app.onOutboxAdded = wake; },
  };
}

const DELIVERY_TIMEOUT_MS = 10_000;

export class OutboxDelivery implements LeaderService {
  readonly name: string;
  readonly #d: OutboxDeps;
  #generation = 0;
  #wake: (() => void) | undefined;
  readonly #delivered;
  readonly #failed;

  constructor(d: OutboxDeps) {
    this.#d = d;
    this.name = d.source.name;
    this.#delivered = d.metrics.counter('quorate_outbox_delivered_total', 'Outbox messages delivered to outbox.webhookUrl (2xx) by this node');
    this.#failed = d.metrics.counter('quorate_outbox_delivery_failures_total', 'Failed outbox delivery attempts by this node');
    d.source.onAdded?.(() => this.#wake?.());
  }

  start(term: number): void {
    const gen = ++this.#generation;
    void this.#loop(gen, term);
  }

  stop(): void {
    this.#generation++;
    this.#wake?.();
  }

  async #loop(gen: number, term: number): Promise<void> {
    const d = this.#d;
    const src = d.source;
    let failures = 0;
    let synced = false;
    while (gen === this.#generation) {
      try {
        // A new leader first reads its state up to everything committed (a message removed by the previous leader is not sent again).
        if (!synced) { await src.sync(); synced = true; }
        if (gen !== this.#generation) return;
        const head = await src.head();
        if (head === undefined) { await this.#sleep(d.pollMs); continue; }
        const r = await fetch(d.webhookUrl, {
          method: 'POST', body: head.body, signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
          headers: { 'content-type': head.contentType, 'idempotency-key': head.id, 'x-quorate-outbox-id': head.id, 'x-quorate-fencing-token': String(term) },
        });
        await r.arrayBuffer().catch(() => undefined);
        if (r.status < 200 || r.status > 299) throw new Error(`the webhook answered ${r.status}`);
        if (gen !== this.#generation) return;
        await src.remove(head);
        this.#delivered.inc();
        if (failures > 0) d.log.info({ event: 'outbox_delivery_resumed', id: head.id, failures }, `outbox message ${head.id} delivered after ${failures} failed attempts`);
        failures = 0;
      } catch (e) {
        if (gen !== this.#generation) return;
        failures++;
        this.#failed.inc();
        const backoff = Math.min(500 * 2 ** Math.min(failures - 1, 16), Math.max(d.pollMs, 30_000));
        const err = (e as Error).name === 'TimeoutError' ? `no answer within ${DELIVERY_TIMEOUT_MS} ms` : ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message;
        const line = { event: 'outbox_delivery_failed', source: src.name, webhookUrl: d.webhookUrl, failures, retryInMs: backoff, err };
        if (failures === 1 || failures % 10 === 0) d.log.warn(line, `outbox delivery to ${d.webhookUrl} failed (${err}); retrying in ${backoff} ms (attempt ${failures})`);
        synced = false;
        await this.#sleep(backoff, false);
      }
    }
  }

  #sleep(ms: number, wakeable = true): Promise<void> {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); this.#wake = undefined; resolve(); };
      const t = setTimeout(done, ms);
      // stop() always wakes; a new message wakes only an idle poll.
      const gen = this.#generation;
      this.#wake = wakeable ? done : () => { if (gen !== this.#generation) done(); };
    });
  }
}
