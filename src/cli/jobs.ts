// Job verbs (SPEC §5 `quorate jobs ls|history|run`; docs/cli.md "Jobs"). Jobs are defined in the config file only.
import { UsageError, int } from './args.js';
import { EXIT, cell, objectTable, type Verb, type Context } from './command.js';

function oneName(ctx: Context, verb: string): string {
  const [name, ...extra] = ctx.args.positionals;
  if (name === undefined || extra.length > 0) throw new UsageError(`${verb} takes one job name`, verb);
  return name;
}

const ls: Verb = {
  name: 'jobs ls',
  usage: '',
  description: 'Calls GET /v1/jobs. Jobs run on the leader only, each slot at most once across failovers (config `jobs`, docs/configuration.md).',
  flags: [],
  examples: ['quorate jobs ls', 'quorate jobs ls --json'],
  remote: true,
  async run(ctx) {
    const r = (await ctx.client().request<{ jobs: Record<string, unknown>[]; leader: string | null }>('GET', '/v1/jobs')).body;
    ctx.print(r, () => r.jobs.length === 0 ? 'no jobs configured (config key `jobs`)' : objectTable(r.jobs, ['name', 'schedule', 'catchUp', 'nextRunAt', 'lastSlot', 'runs', 'running']));
    return EXIT.ok;
  },
};

const history: Verb = {
  name: 'jobs history',
  usage: 'NAME [--limit N]',
  description: 'Calls GET /v1/jobs/NAME/runs: the replicated history (the newest 50 runs are kept). Outcome: running, ran, failed (non-zero exit), timed-out, interrupted (leadership lost, or the leader died), skipped (a missed slot with catchUp skip, or a slot that came while the previous run was still going).',
  flags: [{ name: 'limit', type: 'int', value: 'N', help: 'only the newest N runs' }],
  examples: ['quorate jobs history nightly-report', 'quorate jobs history nightly-report --limit 5 --json'],
  remote: true,
  async run(ctx) {
    const name = oneName(ctx, 'jobs history');
    const limit = int(ctx.args, 'limit');
    const r = (await ctx.client().request<{ runs: Record<string, unknown>[] }>('GET', `/v1/jobs/${encodeURIComponent(name)}/runs`, { query: { limit } })).body;
    ctx.print(r, () => r.runs.length === 0 ? `job ${name} has not run yet` : objectTable(r.runs.map((x) => ({ ...x, message: cell(x['message']).slice(0, 80) })), ['seq', 'slot', 'node', 'term', 'kind', 'startedAt', 'endedAt', 'outcome', 'exitCode', 'message']));
    return EXIT.ok;
  },
};

const runNow: Verb = {
  name: 'jobs run',
  usage: 'NAME',
  description: 'Calls POST /v1/jobs/NAME/run (forwarded to the leader): the leader claims the current time as a slot through the log and starts the job; the answer comes once it started (follow it with `quorate jobs history NAME`). 409 job_running while it runs.',
  flags: [],
  examples: ['quorate jobs run nightly-report'],
  remote: true,
  async run(ctx) {
    const name = oneName(ctx, 'jobs run');
    const r = (await ctx.client().request<{ nodeName: string; seq: number; slot: string }>('POST', `/v1/jobs/${encodeURIComponent(name)}/run`, { body: {}, write: true })).body;
    ctx.print(r, () => `job ${name} run ${r.seq} started on ${r.nodeName} (slot ${r.slot}); see \`quorate jobs history ${name}\``);
    return EXIT.ok;
  },
};

export const jobCommands: readonly Verb[] = [ls, history, runNow];
