// Leader-only scheduled jobs (SPEC §4, issue "application integration"; docs/api.md "Jobs"):
//   GET  /v1/jobs                  the jobs of this node's config, with their next slot and run count
//   GET  /v1/jobs/{name}/runs      the replicated, bounded history of a job's runs, newest first
//   POST /v1/jobs/{name}/run       start a run now (forwarded to the leader); commands come from the config file only
import type { RequestContext, Route } from './context.js';
import { ApiError } from './errors.js';
import { onLeader } from './leader.js';
import type { JobsPort } from './ports.js';

function jobsOf(ctx: RequestContext): JobsPort {
  const j = ctx.app.cluster.jobs;
  if (j === undefined) throw new ApiError('not_found', `${ctx.app.cluster.nodeName} runs no jobs`);
  return j;
}

export const jobRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/jobs': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, leader: ctx.app.cluster.status().leaderName ?? null, jobs: jobsOf(ctx).list() });
      },
    },
  },
};

const PREFIX = '/v1/jobs/';

function jobName(raw: string): string {
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    throw new ApiError('not_found', 'no such job (the name is not valid percent-encoding)');
  }
  return name;
}

function unknownJob(name: string): ApiError {
  return new ApiError('not_found', `no job named ${JSON.stringify(name.slice(0, 100))} in the config (GET /v1/jobs lists them)`);
}

/** `/v1/jobs/{name}/runs` and `/v1/jobs/{name}/run`: the route group for server.ts's match(). */
export function matchJobPath(path: string): { name: string; methods: Readonly<Record<string, Route>> } | undefined {
  if (!path.startsWith(PREFIX)) return undefined;
  const m = /^([^/]+)\/(runs|run)$/.exec(path.slice(PREFIX.length));
  if (m === null) return undefined;
  const name = jobName(m[1]!);
  if (m[2] === 'runs') {
    return {
      name: '/v1/jobs/{name}/runs',
      methods: {
        GET: {
          auth: 'reader',
          query: ['limit'],
          handle: async (ctx) => {
            const runs = jobsOf(ctx).runs(name, ctx.intParam('limit', 1, 1000));
            if (runs === undefined) throw unknownJob(name);
            ctx.json(200, { nodeName: ctx.app.cluster.nodeName, name, runs });
          },
        },
      },
    };
  }
  return {
    name: '/v1/jobs/{name}/run',
    methods: {
      POST: {
        auth: 'admin',
        query: [],
        handle: async (ctx) => {
          await ctx.jsonBody(true);
          if (jobsOf(ctx).runs(name, 1) === undefined) throw unknownJob(name);
          await onLeader(ctx, true, async () => {
            const r = await jobsOf(ctx).runNow(name);
            ctx.app.logger.info({ event: 'job_run_requested', by: ctx.principal?.name, job: name, seq: r.seq }, `job ${name} run ${r.seq} started on request`);
            ctx.json(200, { nodeName: ctx.app.cluster.nodeName, name, ...r });
          });
        },
      },
    },
  };
}
