// POST /v1/cluster/witness/confirm: the operator's `quorate witness confirm`
// on the node it is sent to (src/coord/WITNESS.md): after Redis restarted,
// failed over or lost its data, trust the witness record again (or recreate
// it with this node alone in the in-sync set). Served only in witness mode.
import type { Route } from './context.js';
import { ApiError, badField } from './errors.js';

export const witnessRoutes: Record<string, Record<string, Route>> = {
  '/v1/cluster/witness/confirm': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const b = (await ctx.jsonBody(true)) ?? {};
        if (typeof b !== 'object' || b === null || Array.isArray(b)) throw badField('body', 'must be a JSON object');
        const o = b as Record<string, unknown>;
        for (const k of Object.keys(o)) if (k !== 'confirm' && k !== 'minEpoch') throw badField(k, 'unknown field (allowed: confirm, minEpoch)');
        const minEpoch = o['minEpoch'] ?? 0;
        if (typeof minEpoch !== 'number' || !Number.isSafeInteger(minEpoch) || minEpoch < 0) throw badField('minEpoch', 'must be a non-negative integer: the other node\'s term when it cannot be reached');
        const confirm = ctx.app.cluster.witnessConfirm;
        if (confirm === undefined) throw new ApiError('invalid_request', 'this node does not use a Redis witness (cluster.coordination "redis" with database.mode "local-sync"); nothing to confirm');
        if (o['confirm'] !== true) {
          throw new ApiError('confirm_required', `confirming makes the witness trust its record again, or recreate it with ${ctx.app.cluster.nodeName} alone in the in-sync set: run it on the node with the most data (the last leader), ` +
            'or acknowledged writes may be lost. Repeat with "confirm": true (quorate witness confirm --confirm); nothing was changed');
        }
        const r = await confirm(minEpoch);
        ctx.app.logger.warn({ event: 'witness_confirm', by: ctx.principal?.name, epoch: r.epoch, inSync: r.inSync }, `witness confirmed on ${ctx.app.cluster.nodeName}`);
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, epoch: r.epoch, inSync: r.inSync });
      },
    },
  },
};
