// Wiring of the leader-only scheduler (./scheduler.ts), backups
// (./backups.ts) and the config's jobs (./jobs.ts) into a node: kept here so node.ts only adds a few lines.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { RawNode } from '../raft/index.js';
import { SCHEDULER_MACHINE_ID, encodeEnvelope, encodeSchedulerPayload, type ApplyResult, type MachineRegistry, type SchedulerMachine } from '../state/index.js';
import { Backups, type CapturedState } from './backups.js';
import { NodeError } from './errors.js';
import type { JobsPort } from '../api/ports.js';
import { commandJob, jobsPort } from './jobs.js';
import { LeaderScheduler } from './scheduler.js';

const CAPTURE_TIMEOUT_MS = 10_000;

export interface ScheduledWorkDeps {
  readonly config: QuorateConfig;
  readonly log: Logger;
  readonly version: string;
  readonly machines: MachineRegistry;
  readonly claims: SchedulerMachine;
  /** Runs `op` in the replica's loop (between two applies). */
  run(op: (raw: RawNode) => void): void;
  /** Proposes a raw entry and resolves with its result once applied. */
  proposeEntry(entry: Uint8Array): Promise<ApplyResult>;
  featureLevel(): number;
  isLeader(): boolean;
  notLeader(): Error;
  readBarrier(): Promise<void>;
  /** Witness mode: the lease still holds now (Fencing.leaseOk). */
  mayAct?(): boolean;
}

export function scheduledWork(d: ScheduledWorkDeps): { scheduler: LeaderScheduler; backups: Backups; jobs: JobsPort } {
  const log = d.log.child({ component: 'scheduler' });
  const scheduler = new LeaderScheduler({
    log,
    nodeName: d.config.node.nodeName,
    claims: d.claims,
    propose: (c) => d.proposeEntry(encodeEnvelope({ machine: SCHEDULER_MACHINE_ID, at: Date.now(), payload: encodeSchedulerPayload(c) })),
    featureLevel: () => d.featureLevel(),
    barrier: () => d.readBarrier(),
    ...(d.mayAct ? { mayAct: d.mayAct } : {}),
  });
  const b = d.config.database.backup;
  const backups = new Backups({
    log: d.log.child({ component: 'backup' }), clusterId: d.config.cluster.haId, nodeName: d.config.node.nodeName, version: d.version,
    dir: b.dir, retentionDays: b.retentionDays,
    capture: () => captureState(d),
    // The leader's copy after a read barrier; a follower's as applied (the manifest's index says where it is).
    barrier: () => (d.isLeader() ? d.readBarrier() : Promise.resolve()),
    isLeader: () => d.isLeader(),
    notLeader: () => d.notLeader(),
    ...(d.mayAct ? { mayAct: d.mayAct } : {}),
  });
  if (b.enabled) scheduler.add(backups.job(b.schedule));
  for (const j of d.config.jobs) scheduler.add(commandJob(j, log.child({ job: j.name })));
  return { scheduler, backups, jobs: jobsPort({ jobs: d.config.jobs, scheduler, claims: d.claims, notLeader: () => d.notLeader() }) };
}

/** The whole replicated state at the applied index, captured in the loop, with the term and membership at that index. */
function captureState(d: ScheduledWorkDeps): Promise<CapturedState> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new NodeError('shutting_down', 'the node did not capture its state in time (it is stopping or stuck); retry')), CAPTURE_TIMEOUT_MS);
    d.run((raw) => {
      clearTimeout(t);
      try {
        const index = d.machines.appliedIndex;
        const meta = raw.snapshotMeta(index);
        resolve({ index, term: meta.term, membership: meta.membership, chunks: d.machines.snapshot('composite') });
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
