// Pauses and drains with an expiry (`quorate pause --for 2h`, `quorate drain
// NAME --for 30m`; settings version 2, cluster feature level 3): a leader
// service that resumes the cluster / undrains the node once the expiry has
// passed, and the history records of every pause, resume, drain and undrain
// (the "maintenance" kind of src/state/history.ts, with the operator's reason
// and who ended it: the operator or the expiry).
//
// The expiry is an absolute time the leader stamped when it proposed the pause
// (its clock): a new leader ends it on its own clock, within one tick of the
// time. Ending is an ordinary settings entry (resume / undrain), so every node
// sees the same state at the same index.
import type { Logger } from 'pino';
import { HISTORY_MACHINE_ID, encodeEnvelope, encodeHistoryPayload, type HistoryCommand, type Hold, type MaintenanceBy, type SettingsCommand } from '../state/index.js';
import type { ModesView } from './modes.js';

/** How often the leader looks for an expired pause or drain. */
export const EXPIRY_CHECK_MS = 1000;

export interface MaintenanceDeps {
  readonly log: Logger;
  /** Bound put in every history command (config cluster.historyMax). */
  readonly historyMax: number;
  isLeader(): boolean;
  featureLevel(): number;
  term(): number;
  /** The modes at this node's applied index (with appended settings entries). */
  modes(): ModesView;
  /** Leader: proposes a settings command and waits until it applies (Modes.proposeSetting, recording it as `by`). */
  proposeSetting(c: SettingsCommand, by: MaintenanceBy): Promise<void>;
  /** Leader: proposes an entry (the node's proposal timeout). */
  proposeEntry(entry: Uint8Array): Promise<unknown>;
  now?(): number;
}

/** The history record of a pause/drain change: level 3 only (older members cannot read it). */
export function maintenanceRecord(c: SettingsCommand, by: MaintenanceBy, ended: Hold | undefined, term: number, max: number): HistoryCommand | undefined {
  if (c.key === 'failover') return undefined;
  const hold = c.value ? { reason: c.reason, expiresAt: c.expiresAt } : { reason: ended?.reason, expiresAt: ended?.expiresAt };
  const op = c.key === 'paused' ? (c.value ? 'pause' : 'resume') : c.value ? 'drain' : 'undrain';
  return { kind: 'maintenance', max, term, op, nodeName: c.key === 'drained' ? c.nodeName : undefined, reason: hold.reason, by, expiresAt: hold.expiresAt };
}

export class MaintenanceExpiry {
  readonly name = 'maintenance-expiry';
  readonly #d: MaintenanceDeps;
  /** What is being ended now ('pause' or a node name): one proposal at a time each. */
  readonly #inflight = new Set<string>();

  constructor(d: MaintenanceDeps) {
    this.#d = d;
  }

  /** After a pause/drain setting applied on the leader: its history record (level 3; best effort, a failure is logged). */
  async record(c: SettingsCommand, by: MaintenanceBy, ended: Hold | undefined): Promise<void> {
    const d = this.#d;
    if (d.featureLevel() < 3 || !d.isLeader()) return;
    const r = maintenanceRecord(c, by, ended, d.term(), d.historyMax);
    if (r === undefined) return;
    try {
      await d.proposeEntry(encodeEnvelope({ machine: HISTORY_MACHINE_ID, at: Date.now(), payload: encodeHistoryPayload(r) }));
    } catch (err) {
      d.log.warn({ event: 'history_propose_failed', err: (err as Error).message }, `recording the ${c.key} change in the history failed: ${(err as Error).message}`);
    }
  }

  /** One check (the leader's periodic service): end each pause or drain whose expiry has passed. */
  tick(): void {
    const d = this.#d;
    if (!d.isLeader()) return;
    const now = (d.now ?? Date.now)();
    const v = d.modes();
    if (v.paused && v.pause?.expiresAt !== undefined && v.pause.expiresAt <= now) this.#end('pause', { key: 'paused', value: false }, v.pause);
    for (const [nodeName, h] of Object.entries(v.drains ?? {})) {
      if (h.expiresAt !== undefined && h.expiresAt <= now && v.drained.includes(nodeName)) this.#end(nodeName, { key: 'drained', nodeName, value: false }, h);
    }
  }

  #end(what: string, c: SettingsCommand, h: Hold): void {
    if (this.#inflight.has(what)) return;
    this.#inflight.add(what);
    const d = this.#d;
    const label = what === 'pause' ? 'the pause' : `the drain of ${what}`;
    d.log.info({ event: 'maintenance_expired', what, reason: h.reason, expiresAt: new Date(h.expiresAt!).toISOString() }, `${label}${h.reason !== undefined ? ` (${h.reason})` : ''} expired at ${new Date(h.expiresAt!).toISOString()}: ending it`);
    d.proposeSetting(c, 'expiry').catch((err: unknown) => {
      d.log.warn({ event: 'maintenance_expiry_failed', what, err: (err as Error).message }, `ending ${label} failed: ${(err as Error).message}; retrying`);
    }).finally(() => this.#inflight.delete(what));
  }
}
