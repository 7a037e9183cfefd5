// Leader-only scheduled jobs (config `jobs`, SPEC §3): commands from the config
// file only (never from the API), run by the leader-only scheduler
// (./scheduler.ts), so each slot is started at most once across failovers.
//
// A run is `/bin/sh -c COMMAND` under a small supervisor shell, started with
// `setpriv --pdeathsig HUP` in a process group of its own:
// - the agent dies (even kill -9): the kernel sends the supervisor SIGHUP and
//   it kills the whole group with SIGKILL, so no job runs on beside the new
//   leader's;
// - leadership is lost, or the run passes timeoutSeconds: the agent sends
//   SIGTERM to the group, then SIGKILL after JOB_KILL_GRACE_MS; the run is
//   recorded as interrupted (or timed out);
// - it ends by itself: recorded with its exit code (non-zero: failed) and the
//   tail of its output.
// Environment: QUORATE_FENCING_TOKEN and QUORATE_TERM (the leader's term),
// QUORATE_JOB_SLOT (the slot, ISO time), QUORATE_JOB_NAME, QUORATE_JOB_RUN (its
// run number). A run the old leader could not report (it died or lost
// leadership) is recorded as interrupted by the next leader (./scheduler.ts).
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { JobRunInfo, JobsPort } from '../api/ports.js';
import type { JobRecord, JobRun } from '../state/index.js';
import type { JobContext, LeaderScheduler, ScheduledJob } from './scheduler.js';

export const JOB_KILL_GRACE_MS = 5000;
/** Output kept per run (the tail, stdout and stderr together). */
export const JOB_OUTPUT_TAIL = 1024;

export interface JobConfig {
  readonly name: string;
  readonly schedule: string;
  readonly command: string;
  readonly timeoutSeconds: number;
  readonly catchUp: 'once' | 'skip';
}

// $1 is the command. The supervisor ignores TERM only after the command is
// forked (an ignored signal would be inherited), so TERM to the group reaches
// the command while the supervisor waits to report its exit code.
const SUPERVISOR = `trap 'kill -KILL -$$' HUP; /bin/sh -c "$1" & trap '' TERM; wait $!`;

/** The ScheduledJob that runs one configured job. */
export function commandJob(j: JobConfig, log: Logger): ScheduledJob {
  return {
    name: j.name,
    schedule: j.schedule,
    catchUp: j.catchUp,
    run: (ctx) => runCommand(j, ctx, log),
  };
}

function runCommand(j: JobConfig, ctx: JobContext, log: Logger): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      QUORATE_FENCING_TOKEN: String(ctx.term), QUORATE_TERM: String(ctx.term), QUORATE_JOB_SLOT: new Date(ctx.slotMs).toISOString(),
      QUORATE_JOB_NAME: j.name, QUORATE_JOB_RUN: String(ctx.seq),
    };
    const child = spawn('setpriv', ['--pdeathsig', 'HUP', '--', '/bin/sh', '-c', SUPERVISOR, 'quorate-job', j.command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    let tail = '';
    const keep = (d: Buffer): void => {
      tail = (tail + d.toString('utf8')).slice(-JOB_OUTPUT_TAIL);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let why: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: string): void => {
      if (why !== undefined || child.pid === undefined) return;
      why = reason;
      log.warn({ event: 'job_terminating', job: j.name, seq: ctx.seq, reason }, `job ${j.name} run ${ctx.seq}: ${reason}; sending SIGTERM (SIGKILL in ${JOB_KILL_GRACE_MS} ms)`);
      signalGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), JOB_KILL_GRACE_MS);
    };
    const timeout = setTimeout(() => stop(`timed out after ${j.timeoutSeconds} s (timeoutSeconds)`), j.timeoutSeconds * 1000);
    const onAbort = (): void => stop('interrupted: this node lost leadership');
    ctx.signal.addEventListener('abort', onAbort);
    if (ctx.signal.aborted) onAbort();
    child.on('error', (e) => {
      clearTimeout(timeout);
      ctx.signal.removeEventListener('abort', onAbort);
      reject(new Error(`could not start the job (${e.message}); setpriv (util-linux) and /bin/sh are needed`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      ctx.signal.removeEventListener('abort', onAbort);
      // Whatever is left of the group (a command that forked and exited) goes too.
      if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      const out = tail.trim() === '' ? '' : `; output: ${tail.trim()}`;
      if (why !== undefined) reject(new Error(`${why}${out}`));
      else if (code === 0) resolve(`exit 0${out}`);
      else reject(new Error(`${code !== null ? `exit ${code}` : `killed by ${signal}`}${out}`));
    });
  });
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch { /* the group is gone */ }
}

/** The JobsPort of the API (src/api/ports.ts) over the scheduler and its replicated record. */
export function jobsPort(o: {
  jobs: readonly JobConfig[];
  scheduler: Pick<LeaderScheduler, 'list' | 'runNow' | 'term'>;
  claims: { job(name: string): JobRecord | undefined };
  notLeader(): Error;
}): JobsPort {
  const byName = new Map(o.jobs.map((j) => [j.name, j]));
  return {
    list: () => {
      const live = new Map(o.scheduler.list().map((x) => [x.name, x]));
      return o.jobs.map((j) => {
        const l = live.get(j.name);
        const rec = o.claims.job(j.name);
        return {
          name: j.name, schedule: j.schedule, catchUp: j.catchUp, timeoutSeconds: j.timeoutSeconds,
          nextRunAt: l?.nextRunMs !== undefined ? new Date(l.nextRunMs).toISOString() : null,
          lastSlot: rec !== undefined ? new Date(rec.lastSlotMs).toISOString() : null, runs: rec?.seq ?? 0, running: l?.running ?? false,
        };
      });
    },
    runs: (name, limit) => {
      if (!byName.has(name)) return undefined;
      const runs = [...(o.claims.job(name)?.runs ?? [])].reverse();
      return runs.slice(0, limit ?? runs.length).map(runInfo);
    },
    runNow: async (name) => {
      if (!byName.has(name)) throw new Error(`no job named ${JSON.stringify(name)} in the config (GET /v1/jobs lists them); jobs are defined in the config file only`);
      if (o.scheduler.term === undefined) throw o.notLeader();
      const r = await o.scheduler.runNow(name);
      return { seq: r.seq, slot: new Date(r.slotMs).toISOString() };
    },
  };
}

function runInfo(r: JobRun): JobRunInfo {
  const m = r.message ?? null;
  const outcome = r.kind === 'skipped' ? 'skipped' : r.ok === undefined ? 'running' : r.ok ? 'ran' : m?.startsWith('interrupted') === true ? 'interrupted' : m?.startsWith('timed out') === true ? 'timed-out' : 'failed';
  const code = m !== null ? /^exit (\d+)/.exec(m) : null;
  return {
    seq: r.seq, slot: new Date(r.slotMs).toISOString(), term: r.term, node: r.node, kind: r.kind, startedAt: new Date(r.at).toISOString(),
    endedAt: r.finishedAt !== undefined ? new Date(r.finishedAt).toISOString() : null, outcome, exitCode: code !== null ? Number(code[1]) : null, message: m,
  };
}
