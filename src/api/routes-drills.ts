// Drills (issue 13; docs/operations.md "Failover drills"):
// - POST /v1/cluster/drill/fault: the fault this node carries out on itself
//   (only with drills.enabled in its config); never forwarded.
// - POST /v1/drills: this node runs a drill (src/drill/runner.ts) against
//   its cluster, never faulting itself, and answers with the report.
// - POST /v1/drills/reports: keep a report in the replicated history (the
//   CLI's runner sends it here); GET /v1/drills lists the history.
import { reportMarkdown, type DrillReport } from '../drill/report.js';
import { QuorateHttpError } from './client-types.js';
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';
import { DRILL_FAULTS, type DrillFault, type DrillPort } from './ports-drill.js';

/** A drill's report (JSON text) may be at most this long (the "drills" machine's bound). */
const REPORT_MAX = 64 * 1024;
/** Longest pause/isolate and interval a drill may ask for. */
const MAX_DURATION_MS = 10 * 60_000;
const DEFAULT_DURATION_MS = 5000;
const DEFAULT_INTERVAL_MS = 30_000;

function objectBody(v: unknown, keys: readonly string[]): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badField('body', 'must be a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw badField(k, `unknown field (allowed: ${keys.join(', ')})`);
  return o;
}

function boolOf(o: Record<string, unknown>, k: string): boolean {
  const v = o[k] ?? false;
  if (typeof v !== 'boolean') throw badField(k, 'must be true or false');
  return v;
}

function intOf(o: Record<string, unknown>, k: string, dflt: number, min: number, max: number): number {
  const v = o[k] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw badField(k, `must be an integer in ${min}..${max}`);
  return v;
}

function faultOf(o: Record<string, unknown>, dflt?: DrillFault): DrillFault {
  const v = o['fault'] ?? dflt;
  if (typeof v !== 'string' || !(DRILL_FAULTS as readonly string[]).includes(v)) throw badField('fault', `must be one of ${DRILL_FAULTS.join(', ')}`);
  return v as DrillFault;
}

/** The Markdown table of a kept report, or null for one this version cannot render. */
function markdownOf(report: unknown): string | null {
  try {
    return reportMarkdown(report as DrillReport);
  } catch {
    return null;
  }
}

function drillsOf(ctx: RequestContext): DrillPort {
  const d = ctx.app.drills;
  if (d === undefined) throw new ApiError('not_found', `${ctx.path} is served by \`quorate agent\` only`);
  return d;
}

function disabled(ctx: RequestContext): ApiError {
  return new ApiError('drills_disabled', `drills.enabled is false in ${ctx.app.cluster.nodeName}'s config: set "drills": {"enabled": true} in the config of every node (and restart them) to run drills`);
}

export const drillRoutes: Record<string, Record<string, Route>> = {
  '/v1/cluster/drill/fault': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const o = objectBody(await ctx.jsonBody(), ['fault', 'durationMs', 'dryRun']);
        const fault = faultOf(o);
        const durationMs = intOf(o, 'durationMs', DEFAULT_DURATION_MS, 1, MAX_DURATION_MS);
        const dryRun = boolOf(o, 'dryRun');
        const { result, afterAnswer } = await drillsOf(ctx).fault({ fault, durationMs, dryRun });
        if (afterAnswer !== undefined) ctx.res.once('finish', afterAnswer);
        ctx.json(200, result);
      },
    },
  },
  '/v1/drills': {
    GET: {
      auth: 'reader',
      query: ['limit'],
      handle: async (ctx) => {
        const limit = ctx.intParam('limit', 1, 1000);
        const d = drillsOf(ctx);
        const r = d.reports(limit);
        // enabled / rtoTargetMs: this node's drills settings (the dashboard offers "run a drill" only where drills are enabled).
        // schedule: the last drill, the last passing one and whether one is overdue per this node's drills.maxIntervalHours.
        ctx.json(200, { ...r, nodeName: ctx.app.cluster.nodeName, enabled: d.enabled, rtoTargetMs: d.rtoTargetMs, schedule: d.schedule(), reports: r.reports.map((x) => ({ ...x, markdown: markdownOf(x.report) })) });
      },
    },
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const o = objectBody(await ctx.jsonBody(true), ['kill', 'fault', 'rounds', 'intervalMs', 'durationMs', 'confirm', 'force']);
        const kill = o['kill'] ?? 'leader';
        if (typeof kill !== 'string' || kill === '' || kill.length > 64) throw badField('kill', 'must be "leader", "random" or a member\'s node name');
        const fault = faultOf(o, 'crash');
        const rounds = intOf(o, 'rounds', 1, 1, 100);
        const intervalMs = intOf(o, 'intervalMs', DEFAULT_INTERVAL_MS, 0, MAX_DURATION_MS);
        const durationMs = intOf(o, 'durationMs', DEFAULT_DURATION_MS, 1, MAX_DURATION_MS);
        const force = boolOf(o, 'force');
        if (!boolOf(o, 'confirm')) {
          throw new ApiError('confirm_required', `a drill ${fault === 'crash' ? 'crashes' : fault === 'pause' ? 'freezes' : fault === 'isolate' ? 'cuts off' : 'moves leadership away from'} ${kill === 'leader' ? 'the leader' : kill === 'random' ? 'a random voter' : kill} ${rounds} time(s) while it writes test keys under quorate-drill/; repeat with "confirm": true; nothing was changed`);
        }
        const drills = drillsOf(ctx);
        if (!drills.enabled) throw disabled(ctx);
        const self = ctx.app.cluster.nodeName;
        const members = ctx.app.cluster.status().peers.flatMap((p) => (p.apiUrl !== undefined && p.apiUrl !== '' ? [{ nodeName: p.nodeName, apiUrl: p.apiUrl }] : []));
        if (kill === self && !ctx.forwardedIn) {
          // Never the round's target: another member runs it.
          const other = members.find((m) => m.nodeName !== self);
          if (other === undefined) throw new ApiError('drill_refused', `${self} cannot run a drill against itself and knows no other member's API URL`);
          await ctx.app.forwarder.forward(ctx, other.apiUrl, other.nodeName, { write: true, timeoutMs: 3_600_000 });
          return;
        }
        const token = /^Bearer[ \t]+(\S+)/i.exec(ctx.header('authorization') ?? '')?.[1];
        // The runner (and the API client it drives) is loaded at the first drill, not at every start.
        const { DrillRefusedError, runDrill } = await import('../drill/runner.js');
        try {
          const r = await runDrill({
            urls: members.map((m) => m.apiUrl), token, kill, fault, rounds, intervalMs, durationMs, force, runner: `node:${self}`, exclude: self,
            log: (line) => ctx.app.logger.info({ event: 'drill_progress' }, line),
          });
          ctx.app.logger.warn({ event: 'drill_done', id: r.report.id, passed: r.report.summary.passed, rtoMsMax: r.report.summary.rtoMsMax, lost: r.report.summary.lostTotal }, `drill ${r.report.id} ${r.report.summary.passed ? 'passed' : 'FAILED'}`);
          ctx.json(200, { ...r, markdown: reportMarkdown(r.report) });
        } catch (e) {
          if (e instanceof DrillRefusedError) throw new ApiError('drill_refused', e.message);
          if (e instanceof QuorateHttpError && e.code === 'drills_disabled') throw new ApiError('drills_disabled', e.message);
          throw e;
        }
      },
    },
  },
  '/v1/drills/reports': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const o = objectBody(await ctx.jsonBody(), ['report']);
        const report = o['report'];
        if (typeof report !== 'object' || report === null || Array.isArray(report)) throw badField('report', 'must be a drill report object (what `quorate drill --json` prints under "report")');
        const text = JSON.stringify(report);
        if (text.length > REPORT_MAX) throw badField('report', `is ${text.length} characters of JSON; at most ${REPORT_MAX}`);
        const drills = drillsOf(ctx);
        await onLeader(ctx, true, async () => {
          const r = await drills.record(text, ctx.header('idempotency-key'));
          ctx.json(200, { ...r, leader: ctx.app.cluster.nodeName });
        });
      },
    },
  },
};
