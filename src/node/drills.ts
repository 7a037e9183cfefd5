// Drills on a node (issue 13 "quorate drill"): the fault this node carries
// out on itself when a drill asks (POST /v1/cluster/drill/fault, only with
// drills.enabled in its config), and the replicated report history (the
// "drills" machine, src/state/drills.ts). The API's DrillPort
// (src/api/ports-drill.ts).
//
// - crash: exits hard (SIGKILL to itself) once the answer is sent; the
//   service manager restarts it (systemd Restart=always, `quorate demo`).
// - pause: spawns a small detached helper (`sh -c 'sleep S; kill -CONT PID'`),
//   then SIGSTOPs its whole process once the answer is sent: the process is
//   frozen for the duration, timers, sockets and all, as a VM pause or a
//   long GC would freeze it.
// - isolate: drops every Raft message in and out (the peer transport's drop
//   switch) for the duration; the HTTP API keeps answering.
// - switchover: the planned path (a leadership transfer), on the leader.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { DrillFaultRequest, DrillFaultResult, DrillPort, DrillRecordView } from '../api/ports-drill.js';
import type { QuorateConfig } from '../config/index.js';
import { DEFAULT_DRILLS_MAX, DRILLS_MACHINE_ID, encodeDrillsPayload, type ApplyResult, type DrillsMachine } from '../state/index.js';
import { drillSchedule, type DrillSchedule } from '../drill/schedule.js';
import { NodeError } from './errors.js';

/** Longest pause or isolation a drill may ask for. */
export const MAX_FAULT_MS = 10 * 60_000;

export interface NodeDrillsOptions {
  readonly config: Pick<QuorateConfig, 'drills' | 'node'>;
  readonly log: Logger;
  readonly machine: DrillsMachine;
  readonly appliedIndex: () => number;
  readonly isLeader: () => boolean;
  readonly notLeader: () => NodeError;
  readonly term: () => number;
  readonly featureLevel: () => number;
  readonly proposeEnvelope: (machine: string, payload: Uint8Array, idempotencyKey?: string) => Promise<ApplyResult>;
  readonly switchover: () => Promise<{ to: string }>;
  /** The peer transport's drop switch (isolate). */
  readonly dropPeerTraffic: (on: boolean) => void;
}

export class NodeDrills implements DrillPort {
  readonly #o: NodeDrillsOptions;
  /** A pause or isolation in progress (one fault at a time). */
  #busyUntil = 0;

  constructor(o: NodeDrillsOptions) {
    this.#o = o;
  }

  get enabled(): boolean {
    return this.#o.config.drills.enabled;
  }

  get rtoTargetMs(): number {
    return this.#o.config.drills.rtoTargetMs;
  }

  get maxIntervalHours(): number {
    return this.#o.config.drills.maxIntervalHours;
  }

  /** The last drill, the last passing one and whether one is overdue (drills.maxIntervalHours); parsed once per new report. */
  schedule(nowMs = Date.now()): DrillSchedule {
    const seq = this.#o.machine.seq;
    if (this.#scheduleCache?.seq !== seq) this.#scheduleCache = { seq, records: this.#o.machine.records() };
    return drillSchedule(this.#scheduleCache.records, this.maxIntervalHours, nowMs);
  }

  #scheduleCache: { seq: number; records: readonly { at: number; report: string }[] } | undefined;

  async fault(req: DrillFaultRequest): Promise<{ result: DrillFaultResult; afterAnswer?: () => void }> {
    const name = this.#o.config.node.nodeName;
    if (!this.enabled) {
      throw new NodeError('drills_disabled', `drills.enabled is false in ${name}'s config: it carries out no drill fault. Set "drills": {"enabled": true} in its config file and restart it (every node a drill may target needs it)`);
    }
    const wasLeader = this.#o.isLeader();
    const base = { nodeName: name, fault: req.fault, dryRun: req.dryRun, durationMs: req.fault === 'pause' || req.fault === 'isolate' ? Math.max(1, Math.min(MAX_FAULT_MS, req.durationMs)) : 0, pid: process.pid, wasLeader, term: this.#o.term(), rtoTargetMs: this.rtoTargetMs };
    if (req.dryRun) return { result: { ...base, at: Date.now() } };
    if (Date.now() < this.#busyUntil) throw new NodeError('transfer_in_progress', `${name} is still under a drill fault until ${new Date(this.#busyUntil).toISOString()}; wait for it to end`);
    this.#o.log.warn({ event: 'drill_fault', fault: req.fault, durationMs: base.durationMs, wasLeader }, `drill: ${req.fault} of this node${base.durationMs > 0 ? ` for ${base.durationMs} ms` : ''}`);
    switch (req.fault) {
      case 'crash':
        return {
          result: { ...base, at: Date.now() },
          afterAnswer: () => {
            this.#o.log.fatal({ event: 'drill_crash' }, 'drill: exiting hard (SIGKILL) now; the service manager restarts this node');
            this.#o.log.flush();
            process.kill(process.pid, 'SIGKILL');
          },
        };
      case 'pause': {
        await this.#spawnResumer(base.durationMs);
        this.#busyUntil = Date.now() + base.durationMs;
        return { result: { ...base, at: Date.now() }, afterAnswer: () => { this.#o.log.flush(); process.kill(process.pid, 'SIGSTOP'); } };
      }
      case 'isolate': {
        this.#busyUntil = Date.now() + base.durationMs;
        this.#o.dropPeerTraffic(true);
        const t = setTimeout(() => this.#o.dropPeerTraffic(false), base.durationMs);
        t.unref();
        return { result: { ...base, at: Date.now() } };
      }
      case 'switchover': {
        if (!wasLeader) throw new NodeError('invalid_transfer', `${name} is not the leader: a switchover drill targets the leader (--kill leader)`);
        const at = Date.now();
        const r = await this.#o.switchover();
        return { result: { ...base, at, newLeader: r.to } };
      }
    }
  }

  /** The helper that sends SIGCONT after `ms`: started (and detached) before this process stops itself. */
  #spawnResumer(ms: number): Promise<void> {
    const secs = (ms / 1000).toFixed(3);
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', `sleep ${secs}; kill -CONT ${process.pid}`], { detached: true, stdio: 'ignore' });
      child.once('error', (e) => reject(new Error(`cannot start the helper that resumes this node after a pause (/bin/sh): ${e.message}`)));
      child.once('spawn', () => {
        child.unref();
        resolve();
      });
    });
  }

  reports(limit?: number): { reports: DrillRecordView[]; seq: number; appliedIndex: number } {
    const recs = this.#o.machine.records(limit);
    const reports = recs.map((r) => {
      let report: unknown;
      try {
        report = JSON.parse(r.report) as unknown;
      } catch {
        report = r.report;
      }
      return { seq: r.seq, index: r.index, recordedAt: new Date(r.at).toISOString(), report };
    }).reverse();
    return { reports, seq: this.#o.machine.seq, appliedIndex: this.#o.appliedIndex() };
  }

  async record(reportJson: string, idempotencyKey?: string): Promise<{ seq: number }> {
    if (!this.#o.isLeader()) throw this.#o.notLeader();
    if (this.#o.featureLevel() < 2) throw new NodeError('feature_unavailable', 'drill reports need cluster feature level 2: some member runs the previous release; upgrade every member, then retry');
    const r = await this.#o.proposeEnvelope(DRILLS_MACHINE_ID, encodeDrillsPayload({ max: DEFAULT_DRILLS_MAX, report: reportJson }), idempotencyKey === undefined ? undefined : `drill:${idempotencyKey}`);
    if ('error' in r) throw new Error(`the drills machine refused the report: ${JSON.stringify(r).slice(0, 300)}`);
    return { seq: this.#o.machine.seq };
  }
}
