// Delivery of alert notifications (./alerts.ts) to alerts.webhookUrl: one POST
// of JSON per notification, in order, each retried with exponential backoff
// (alerts.retryBackoffMs, doubling, at most 60 s apart) up to
// alerts.maxAttempts on a network error, a timeout, 408, 429 or 5xx; any other
// answer ends its attempts (2xx: delivered; 4xx: refused, logged).
//
// Headers: X-Quorate-Alert-Id (the alert id), X-Quorate-Delivery (unique per
// notification, the same across its retries), X-Quorate-Timestamp (unix
// seconds), and with alerts.secretFile X-Quorate-Signature:
// "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body). The secret is
// alerts.secretFile's, never the cluster secret (refused at start).
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AlertNotification, AlertsConfig } from './alerts.js';

const QUEUE_MAX = 1000;
const BACKOFF_CAP_MS = 60_000;

/** HMAC-SHA256 signature header value of a body sent at `timestamp` (unix seconds). */
export function signAlert(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Reads alerts.secretFile. Throws, naming the key, when it cannot be read, is
 * empty, or is the cluster secret or admin token file (or holds the same bytes).
 */
export function loadAlertSecret(cfg: AlertsConfig, forbidden: readonly { key: string; file: string }[]): string | undefined {
  if (cfg.secretFile === '') return undefined;
  let secret: string;
  try {
    secret = readFileSync(cfg.secretFile, 'utf8').trim();
  } catch (e) {
    throw new Error(`alerts.secretFile: cannot read ${JSON.stringify(cfg.secretFile)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); write a random secret there (e.g. \`openssl rand -hex 32 > FILE; chmod 600 FILE\`) or remove the key to send unsigned notifications`);
  }
  if (secret === '') throw new Error(`alerts.secretFile: ${JSON.stringify(cfg.secretFile)} is empty; write a random secret there (e.g. \`openssl rand -hex 32\`)`);
  for (const f of forbidden) {
    let other: string | undefined;
    try { other = readFileSync(f.file, 'utf8').trim(); } catch { other = undefined; }
    if (f.file === cfg.secretFile || other === secret) {
      throw new Error(`alerts.secretFile: must not be ${f.key} (${f.file}) nor hold the same secret: the webhook receiver would learn it. Use a separate secret for alerts`);
    }
  }
  return secret;
}

interface Job {
  readonly n: AlertNotification;
  readonly delivery: string;
}

export interface WebhookStats {
  readonly signed: boolean;
  readonly delivered: number;
  readonly failed: number;
  readonly pending: number;
  readonly lastError: string | null;
}

export class AlertWebhook {
  readonly #cfg: AlertsConfig;
  readonly #secret: string | undefined;
  readonly #log: Logger;
  readonly #queue: Job[] = [];
  #running = false;
  #closed = false;
  #delivered = 0;
  #failed = 0;
  #lastError: string | null = null;
  #wake: (() => void) | undefined;
  #abort = new AbortController();
  #idle: Promise<void> = Promise.resolve();

  constructor(cfg: AlertsConfig, secret: string | undefined, log: Logger) {
    this.#cfg = cfg;
    this.#secret = secret;
    this.#log = log.child({ component: 'alert-webhook' });
  }

  send(n: AlertNotification): void {
    if (this.#closed) return;
    if (this.#queue.length >= QUEUE_MAX) {
      const dropped = this.#queue.shift()!;
      this.#failed++;
      this.#log.warn({ event: 'alert_dropped', id: dropped.n.alert.id }, `alert notification queue full (${QUEUE_MAX}): dropped the oldest (${dropped.n.alert.id} ${dropped.n.status})`);
    }
    this.#queue.push({ n, delivery: randomUUID() });
    if (!this.#running) {
      this.#running = true;
      this.#idle = this.#drain();
    }
  }

  stats(): WebhookStats {
    return { signed: this.#secret !== undefined, delivered: this.#delivered, failed: this.#failed, pending: this.#queue.length, lastError: this.#lastError };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    this.#wake?.();
    await this.#idle;
  }

  async #drain(): Promise<void> {
    try {
      while (!this.#closed && this.#queue.length > 0) {
        await this.#deliver(this.#queue[0]!);
        this.#queue.shift();
      }
    } finally {
      this.#running = false;
    }
  }

  async #deliver(job: Job): Promise<void> {
    const body = JSON.stringify(job.n);
    let backoff = this.#cfg.retryBackoffMs;
    for (let attempt = 1; attempt <= this.#cfg.maxAttempts && !this.#closed; attempt++) {
      const ts = String(Math.floor(Date.now() / 1000));
      const headers: Record<string, string> = {
        'content-type': 'application/json', 'x-quorate-alert-id': job.n.alert.id, 'x-quorate-delivery': job.delivery,
        'x-quorate-timestamp': ts, 'user-agent': 'quorate-alerts/1',
      };
      if (this.#secret !== undefined) headers['x-quorate-signature'] = signAlert(this.#secret, ts, body);
      let retry: boolean;
      let why: string;
      try {
        const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#cfg.timeoutMs)]);
        const res = await fetch(this.#cfg.webhookUrl, { method: 'POST', headers, body, signal, redirect: 'manual' });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          this.#delivered++;
          this.#log.info({ event: 'alert_delivered', id: job.n.alert.id, status: job.n.status, attempt }, `alert ${job.n.alert.id} (${job.n.status}) delivered`);
          return;
        }
        retry = res.status === 408 || res.status === 429 || res.status >= 500;
        why = `HTTP ${res.status}`;
      } catch (e) {
        if (this.#closed) return;
        retry = true;
        why = (e as Error).name === 'TimeoutError' ? `no answer within alerts.timeoutMs ${this.#cfg.timeoutMs} ms` : `${(e as Error).message}${(e as { cause?: Error }).cause ? ` (${(e as { cause: Error }).cause.message})` : ''}`;
      }
      this.#lastError = `${new Date().toISOString()} ${job.n.alert.id} (${job.n.status}), attempt ${attempt}/${this.#cfg.maxAttempts}: ${why}`;
      if (!retry || attempt === this.#cfg.maxAttempts) {
        this.#failed++;
        this.#log.error({ event: 'alert_delivery_failed', id: job.n.alert.id, status: job.n.status, attempts: attempt, err: why },
          `alert ${job.n.alert.id} (${job.n.status}) not delivered to alerts.webhookUrl after ${attempt} attempt(s): ${why}${retry ? '' : ' (not retried: the receiver refused it)'}`);
        return;
      }
      this.#log.warn({ event: 'alert_delivery_retry', id: job.n.alert.id, attempt, inMs: backoff, err: why }, `alert delivery failed (${why}); retrying in ${backoff} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff);
        this.#wake = () => { clearTimeout(t); resolve(); };
      });
      this.#wake = undefined;
      backoff = Math.min(backoff * 2, BACKOFF_CAP_MS);
    }
  }
}
