// Built-in alerts (config `alerts`; docs/monitoring.md "Alert webhooks"): the
// node evaluates, every alerts.evaluateIntervalMs, the conditions the
// Prometheus rules of docs/monitoring/quorate-alerts.yml describe, and sends a
// "firing" notification when one has held for alerts.forSeconds and a
// "resolved" one when it no longer holds (one each per condition and subject:
// deduplicated), to alerts.webhookUrl (./alert-webhook.ts).
//
// Who sends: cluster conditions (quorum lost as the leader sees it, replication
// lag, frequent leader changes) are evaluated and sent by the leader only; node
// conditions (no leader known, quorum lost as a follower sees it, disk almost
// full, a failing health check, storage failing, split-brain warning) by the
// node they are about, so a follower's full disk is reported too, and with no
// leader every node that sees none says so.
// Every payload names the sender and the leader it knows (null: none).
import { statfsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AppHealthSummary } from '../api/ports-app.js';
import type { AlertView, AlertsPort, AlertsView } from '../api/ports-ops.js';
import type { CertificateInfo, NodeStatus } from '../api/ports.js';
import type { QuorateConfig } from '../config/index.js';
import type { HistoryRecord } from '../state/index.js';
import type { AlertWebhook } from './alert-webhook.js';
import { spanText, type DrillSchedule } from '../drill/schedule.js';

const RECENT_MAX = 100;
const NO_LEADER = 0;

export type AlertsConfig = QuorateConfig['alerts'];

/** A condition holding now. */
interface Condition {
  readonly id: string;
  readonly name: string;
  readonly severity: 'critical' | 'warning';
  readonly scope: 'cluster' | 'node';
  readonly subject?: string;
  readonly summary: string;
  readonly value?: number;
  readonly threshold?: number;
  /** Fires at once (the source already debounces, or one occurrence matters). */
  readonly immediate?: boolean;
}

export interface AlertSources {
  readonly nodeName: string;
  readonly haId: string;
  readonly dataDir: string;
  status(): NodeStatus;
  /** This node's application health checks (undefined: none configured). */
  health(): AppHealthSummary | undefined;
  /** The replicated cluster history (leader records count as leader changes). */
  history(): readonly HistoryRecord[];
  /** The drill schedule (drills.maxIntervalHours; undefined: no drills here). */
  drills?(): DrillSchedule | undefined;
  /** The certificates this node serves (undefined: none to report). */
  certificates?(): readonly CertificateInfo[];
  /** Free percentage of the data dir's file system; default: statfs. */
  diskFreePercent?(): number | undefined;
  now?(): number;
}

export function diskFreePercentOf(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.blocks === 0 ? undefined : (100 * s.bavail) / s.blocks;
  } catch {
    return undefined;
  }
}

/** The conditions holding now, as this node sees them. */
export function conditions(cfg: AlertsConfig, src: AlertSources, nowMs: number): Condition[] {
  const st = src.status();
  const out: Condition[] = [];
  const self = src.nodeName;
  if (st.role === 'removed') return out;
  const leading = st.raftRole === 'leader';
  if (st.leaderId === NO_LEADER) {
    out.push({ id: `no_leader:${self}`, name: 'no_leader', severity: 'critical', scope: 'node', summary: `${self} knows no leader: writes fail until a majority of voters elects one (quorate doctor; docs/operations.md)` });
  }
  // The leader's view is authoritative (cluster scope); a follower reports its own view (it reaches too few voters to elect a leader).
  if (st.votersReachable < st.writeQuorum || (leading && !st.quorumMet)) {
    out.push({ id: leading ? 'quorum_lost' : `quorum_lost:${self}`, name: 'quorum_lost', severity: 'critical', scope: leading ? 'cluster' : 'node', value: st.votersReachable, threshold: st.writeQuorum,
      summary: `${leading ? 'the leader ' : ''}${self} reaches ${st.votersReachable} of ${st.votersTotal} voters (itself included), fewer than the write quorum ${st.writeQuorum}: writes fail until voters return` });
  }
  if (leading) {
    for (const p of st.peers) {
      if (p.self || p.replicationLagMs <= cfg.replicationLagMsMax) continue;
      out.push({ id: `replication_lag:${p.nodeName}`, name: 'replication_lag', severity: 'warning', scope: 'cluster', subject: p.nodeName, value: p.replicationLagMs, threshold: cfg.replicationLagMsMax,
        summary: `${p.nodeName} is ${(p.replicationLagMs / 1000).toFixed(1)} s (${p.replicationLagEntries} entries) behind the leader ${self}, over alerts.replicationLagMsMax ${cfg.replicationLagMsMax} ms: it is not failover-ready (status ${p.status})` });
    }
    const d = src.drills?.();
    if (d?.overdue === true) {
      const periodMs = d.maxIntervalHours * 3_600_000;
      out.push({ id: 'drill_overdue', name: 'drill_overdue', severity: 'warning', scope: 'cluster', value: d.lastPassedAt === null ? 0 : Math.round((nowMs - Date.parse(d.lastPassedAt)) / 1000), threshold: periodMs / 1000,
        summary: `${d.lastPassedAt === null ? 'no passing failover drill is kept' : `the last passing failover drill was ${spanText(nowMs - Date.parse(d.lastPassedAt))} ago (${d.lastPassedAt})`}, more than drills.maxIntervalHours ${d.maxIntervalHours} h: run one (quorate drill --kill leader --confirm, or the dashboard's drills view)` });
    }
    if (d?.last?.passed === false) {
      out.push({ id: 'drill_failed', name: 'drill_failed', severity: d.last.lost > 0 ? 'critical' : 'warning', scope: 'cluster', value: d.last.lost, immediate: true,
        summary: `the last failover drill (${d.last.id ?? 'no id'}, ${d.last.at}) FAILED${d.last.lost > 0 ? `, losing ${d.last.lost} acknowledged write(s)` : ''}: ${d.last.failures.join('; ') || 'see quorate drill --history'}; fix the cause and run a drill again` });
    }
    const since = nowMs - cfg.leaderChangesWindowSeconds * 1000;
    const changes = src.history().filter((r) => r.kind === 'leader' && r.at >= since).length;
    if (changes > cfg.leaderChangesMax) {
      out.push({ id: 'leader_flapping', name: 'leader_flapping', severity: 'warning', scope: 'cluster', value: changes, threshold: cfg.leaderChangesMax, immediate: true,
        summary: `${changes} leader changes in the last ${cfg.leaderChangesWindowSeconds} s (more than alerts.leaderChangesMax ${cfg.leaderChangesMax}): check the network between nodes, CPU starvation and fsync latency` });
    }
  }
  const free = src.diskFreePercent ? src.diskFreePercent() : diskFreePercentOf(src.dataDir);
  if (free !== undefined && free < cfg.diskFreePercentMin) {
    out.push({ id: `disk_low:${self}`, name: 'disk_low', severity: 'warning', scope: 'node', value: Math.round(free * 10) / 10, threshold: cfg.diskFreePercentMin,
      summary: `the data dir of ${self} (${src.dataDir}) has ${free.toFixed(1)}% free, under alerts.diskFreePercentMin ${cfg.diskFreePercentMin}%: free space before the node stops on a full disk` });
  }
  for (const c of src.certificates?.() ?? []) {
    if (c.notAfter === null) continue;
    const left = Date.parse(c.notAfter) - nowMs;
    const min = c.source === 'file' ? cfg.certificateDaysMin * 86_400_000 : (c.renewPeriodSeconds ?? 0) * 1000;
    if (left >= min) continue;
    const what = `the ${c.cert} certificate of ${self} (${c.source === 'file' ? c.file ?? 'file' : 'cluster CA'})`;
    out.push({ id: `certificate_expiring:${self}:${c.cert}`, name: 'certificate_expiring', severity: left <= 0 ? 'critical' : 'warning', scope: 'node', subject: c.cert, value: Math.round(left / 1000), threshold: Math.round(min / 1000),
      summary: left <= 0 ? `${what} expired at ${c.notAfter}: peers or clients refuse it` : `${what} expires in ${spanText(left)} (${c.notAfter}), ${c.source === 'file' ? `under alerts.certificateDaysMin ${cfg.certificateDaysMin} days: replace the file and restart the node` : 'less than one renewal period: the node failed to renew it (its tls_certificate_failed log lines; quorate ca show)'}` });
  }
  for (const c of src.health()?.checks ?? []) {
    if (c.healthy) continue;
    out.push({ id: `health_check_failing:${self}:${c.name}`, name: 'health_check_failing', severity: c.critical ? 'critical' : 'warning', scope: 'node', subject: c.name, value: c.consecutiveFailures, immediate: true,
      summary: `health check ${c.name} on ${self} fails${c.critical ? ' (critical)' : ''}: ${c.lastError ?? 'unhealthy'}` });
  }
  if (!st.storageHealthy) {
    out.push({ id: `storage_failing:${self}`, name: 'storage_failing', severity: 'critical', scope: 'node', immediate: true, summary: `${self} cannot write its data dir: ${st.storageError ?? 'storage failed'}` });
  }
  if (st.splitBrainWarning !== undefined) {
    out.push({ id: `split_brain:${self}`, name: 'split_brain', severity: 'critical', scope: 'node', immediate: true, summary: `Split-brain warning on ${self}: ${st.splitBrainWarning}` });
  }
  return out;
}

export interface AlertNotification {
  readonly version: 1;
  readonly status: 'firing' | 'resolved';
  readonly alert: AlertView;
  readonly cluster: string;
  readonly sentBy: string;
  readonly leader: string | null;
  readonly leaderKnown: boolean;
  /** Says so when no leader is known (the sender is then not the leader). */
  readonly note?: string;
  readonly sentAt: string;
}

/** Evaluates the conditions on a timer, keeps the active and recent alerts, hands notifications to the webhook. */
export class AlertEngine implements AlertsPort {
  readonly #cfg: AlertsConfig;
  readonly #src: AlertSources;
  readonly #log: Logger;
  readonly #webhook: AlertWebhook | undefined;
  readonly #pending = new Map<string, number>();
  readonly #active = new Map<string, AlertView>();
  readonly #recent: (AlertView & { status: 'firing' | 'resolved' })[] = [];
  #timer: NodeJS.Timeout | undefined;
  #evaluatedAt: string | null = null;

  constructor(cfg: AlertsConfig, src: AlertSources, log: Logger, webhook?: AlertWebhook) {
    this.#cfg = cfg;
    this.#src = src;
    this.#log = log.child({ component: 'alerts' });
    this.#webhook = webhook;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.evaluate(), this.#cfg.evaluateIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#webhook?.close();
  }

  /** One evaluation: fires what held long enough, resolves what no longer holds. */
  evaluate(): void {
    const now = this.#src.now?.() ?? Date.now();
    let conds: Condition[];
    try {
      conds = conditions(this.#cfg, this.#src, now);
    } catch (e) {
      this.#log.warn({ event: 'alerts_evaluation_failed', err: (e as Error).message }, `alert evaluation failed: ${(e as Error).message}`);
      return;
    }
    this.#evaluatedAt = new Date(now).toISOString();
    const holding = new Set(conds.map((c) => c.id));
    for (const id of [...this.#pending.keys()]) if (!holding.has(id)) this.#pending.delete(id);
    for (const c of conds) {
      const current = this.#active.get(c.id);
      if (current !== undefined) {
        // Still firing: keep the newest value and text (no new notification).
        this.#active.set(c.id, { ...current, summary: c.summary, ...(c.value !== undefined ? { value: c.value } : {}) });
        continue;
      }
      const since = this.#pending.get(c.id) ?? now;
      this.#pending.set(c.id, since);
      if (c.immediate !== true && now - since < this.#cfg.forSeconds * 1000) continue;
      this.#pending.delete(c.id);
      const a: AlertView = {
        id: c.id, name: c.name, severity: c.severity, scope: c.scope, node: this.#src.nodeName, summary: c.summary,
        ...(c.subject !== undefined ? { subject: c.subject } : {}), ...(c.value !== undefined ? { value: c.value } : {}), ...(c.threshold !== undefined ? { threshold: c.threshold } : {}),
        since: new Date(since).toISOString(), firedAt: new Date(now).toISOString(),
      };
      this.#active.set(c.id, a);
      this.#notify('firing', a);
    }
    for (const [id, a] of [...this.#active]) {
      if (holding.has(id)) continue;
      this.#active.delete(id);
      this.#notify('resolved', { ...a, resolvedAt: new Date(now).toISOString() });
    }
  }

  #notify(status: 'firing' | 'resolved', a: AlertView): void {
    this.#recent.unshift({ ...a, status });
    if (this.#recent.length > RECENT_MAX) this.#recent.length = RECENT_MAX;
    const line = { event: status === 'firing' ? 'alert_firing' : 'alert_resolved', alert: a.name, id: a.id, severity: a.severity, ...(a.subject !== undefined ? { subject: a.subject } : {}) };
    if (status === 'firing') this.#log.warn(line, `alert ${a.name} firing: ${a.summary}`);
    else this.#log.info(line, `alert ${a.name} resolved`);
    if (this.#webhook === undefined) return;
    const st = this.#src.status();
    const leading = st.raftRole === 'leader';
    // Cluster conditions: only the leader sends (a node that just lost leadership does not send their resolution).
    if (a.scope === 'cluster' && !leading) return;
    const leader = st.leaderName ?? null;
    const n: AlertNotification = {
      version: 1, status, alert: a, cluster: this.#src.haId, sentBy: this.#src.nodeName, leader, leaderKnown: st.leaderId !== NO_LEADER,
      ...(st.leaderId === NO_LEADER ? { note: `no leader is known: sent by ${this.#src.nodeName}, which is not the leader` } : {}),
      sentAt: new Date().toISOString(),
    };
    this.#webhook.send(n);
  }

  view(): AlertsView {
    const st = this.#src.status();
    const w = this.#webhook?.stats();
    return {
      nodeName: this.#src.nodeName,
      leader: st.leaderName ?? null,
      active: [...this.#active.values()],
      recent: [...this.#recent],
      thresholds: {
        replicationLagMsMax: this.#cfg.replicationLagMsMax, diskFreePercentMin: this.#cfg.diskFreePercentMin, certificateDaysMin: this.#cfg.certificateDaysMin, leaderChangesMax: this.#cfg.leaderChangesMax,
        leaderChangesWindowSeconds: this.#cfg.leaderChangesWindowSeconds, forSeconds: this.#cfg.forSeconds,
      },
      webhook: { configured: this.#webhook !== undefined, signed: w?.signed ?? false, delivered: w?.delivered ?? 0, failed: w?.failed ?? 0, pending: w?.pending ?? 0, lastError: w?.lastError ?? null },
      evaluatedAt: this.#evaluatedAt,
    };
  }
}
