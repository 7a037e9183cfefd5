// POST /v1/cluster/promote-dr (SPEC §4; src/node/promotion.ts) and
// POST /v1/cluster/isolate. Served when the server was given a DrControl.
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';
import type { DrControl } from './ports.js';

function body(v: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badField('body', 'must be a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw badField(k, `unknown field (allowed: ${keys.join(', ')})`);
  return o;
}

function nodeNameOf(o: Record<string, unknown>): string {
  const n = o['nodeName'];
  if (typeof n !== 'string' || n === '' || n.length > 256) throw badField('nodeName', 'must be a member\'s node name');
  return n;
}

function boolOf(o: Record<string, unknown>, k: string): boolean {
  const v = o[k] ?? false;
  if (typeof v !== 'boolean') throw badField(k, 'must be true or false');
  return v;
}

function drOf(ctx: RequestContext): DrControl {
  const dr = ctx.app.dr;
  if (dr === undefined) throw new ApiError('not_found', `${ctx.path} is served by \`quorate agent\` only`);
  return dr;
}

export const drRoutes: Record<string, Record<string, Route>> = {
  '/v1/cluster/promote-dr': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const o = body(await ctx.jsonBody(), ['nodeName', 'confirm', 'force']);
        const nodeName = nodeNameOf(o);
        const confirm = boolOf(o, 'confirm');
        const force = boolOf(o, 'force');
        if (!confirm) {
          throw new ApiError('confirm_required', `promoting ${nodeName} makes it the only voter of a new cluster generation: writes the primary site committed but ${nodeName} never received are lost, ` +
            'and the old nodes come back only by enrollment. Repeat with "confirm": true (quorate promote-dr --node NAME --confirm); nothing was changed');
        }
        const dr = drOf(ctx);
        if (nodeName !== ctx.app.cluster.nodeName && !ctx.forwardedIn) {
          // Sent to another node: it goes to the DR node's recorded API URL.
          const target = ctx.app.cluster.status().peers.find((p) => p.nodeName === nodeName);
          if (target?.apiUrl === undefined) throw new ApiError('invalid_request', `no member named ${JSON.stringify(nodeName)} with a known API URL; send promote-dr to the DR node itself (--url)`);
          await ctx.app.forwarder.forward(ctx, target.apiUrl, nodeName, { write: true, timeoutMs: 60_000 });
          return;
        }
        const r = await dr.promoteDr({ nodeName, force });
        ctx.app.logger.warn({ event: 'promote_dr', by: ctx.principal?.name, nodeName, generation: r.generation, lag: r.lag, forced: force }, r.message);
        ctx.json(200, { ...r });
      },
    },
  },
  '/v1/cluster/isolate': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const o = body(await ctx.jsonBody(), ['nodeName']);
        const nodeName = nodeNameOf(o);
        const dr = drOf(ctx);
        await onLeader(ctx, true, async () => {
          const r = await dr.isolate(nodeName);
          ctx.app.logger.warn({ event: 'isolated', by: ctx.principal?.name, nodeName, nodeId: r.nodeId }, r.message);
          ctx.json(200, { ...r, leader: ctx.app.cluster.nodeName });
        });
      },
    },
  },
};
