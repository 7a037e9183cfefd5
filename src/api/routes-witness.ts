// POST /v1/cluster/witness/confirm: the operator's `quorate witness confirm`
// on the node it is sent to (src/coord/WITNESS.md): after Redis restarted,
// failed over or lost its data, trust the witness record again (or recreate
// it with this node alone in the in-sync set). Served only in witness mode.
//
// The next epoch must stay above every term any data node has persisted
// (else a recreated record could hand out an epoch another node already led
// at: two leaders of one term). So before confirming, this node asks every
// other data node for its term over its HTTP API (GET /v1/cluster/status,
// with the caller's token), and uses the highest. `minEpoch` is the
// operator's override for a node that cannot be asked.
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';

const PEER_TIMEOUT_MS = 3000;
const NOT_DATA_NODES = new Set(['observer', 'dr', 'removed']);

export type PeerTerm =
  | { readonly nodeName: string; readonly term: number; readonly lastIndex: number }
  | { readonly nodeName: string; readonly unreachable: string };

/** Each other data node's term, asked of the node itself (or why it could not be). */
export async function askPeerTerms(ctx: RequestContext): Promise<PeerTerm[]> {
  const auth = ctx.header('authorization');
  const peers = ctx.app.cluster.status().peers.filter((p) => !p.self && !NOT_DATA_NODES.has(p.role));
  return Promise.all(peers.map(async (p): Promise<PeerTerm> => {
    if (p.apiUrl === undefined) return { nodeName: p.nodeName, unreachable: 'no API URL is recorded for it in the membership' };
    const url = `${p.apiUrl.replace(/\/+$/, '')}/v1/cluster/status`;
    try {
      const r = await ctx.app.forwarder.getJson(url, auth !== undefined ? { authorization: auth } : {}, PEER_TIMEOUT_MS);
      const b = r.body as Record<string, unknown> | undefined;
      if (r.status === 401 || r.status === 403) {
        return { nodeName: p.nodeName, unreachable: `${url} answered ${r.status}: it does not accept this token (use a managed admin token, \`quorate token create --role admin\`, which every node accepts)` };
      }
      if (r.status !== 200 || typeof b?.['term'] !== 'number') {
        const err = b?.['message'];
        return { nodeName: p.nodeName, unreachable: `${url} answered ${r.status}${typeof err === 'string' ? `: ${err}` : ''}` };
      }
      return { nodeName: p.nodeName, term: b['term'], lastIndex: typeof b['lastIndex'] === 'number' ? b['lastIndex'] : 0 };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return { nodeName: p.nodeName, unreachable: `${url}: ${code !== undefined ? `${code}: ` : ''}${(e as Error).message}` };
    }
  }));
}

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
        const override = o['minEpoch'];
        if (override !== undefined && (typeof override !== 'number' || !Number.isSafeInteger(override) || override < 0)) {
          throw badField('minEpoch', 'must be a non-negative integer: at least the last term of a data node that cannot be asked');
        }
        const confirm = ctx.app.cluster.witnessConfirm;
        if (confirm === undefined) throw new ApiError('invalid_request', 'this node does not use a Redis witness (cluster.coordination "redis" with database.mode "local-sync"); nothing to confirm');
        const me = ctx.app.cluster.nodeName;
        if (o['confirm'] !== true) {
          throw new ApiError('confirm_required', `confirming makes the witness trust its record again, or recreate it with ${me} alone in the in-sync set: run it on the node with the most data (the last leader), ` +
            'or acknowledged writes may be lost. Repeat with "confirm": true (quorate witness confirm --confirm); nothing was changed');
        }
        const peers = await askPeerTerms(ctx);
        const lost = peers.filter((p): p is Extract<PeerTerm, { unreachable: string }> => 'unreachable' in p);
        if (lost.length > 0 && override === undefined) {
          const names = lost.map((p) => p.nodeName).join(', ');
          throw new ApiError('witness_peer_unreachable',
            `${me} could not ask ${names} for its term (${lost.map((p) => `${p.nodeName}: ${p.unreachable}`).join('; ')}). Without it a recreated witness record could hand out an epoch ` +
            `${names} already led at (two leaders of one term). Start ${names} (it does not lead while the record is untrusted) and repeat; or, if it cannot be started, ` +
            `repeat with --min-epoch N (minEpoch), N at least its last term: the "term" its \`quorate status\` last showed, or the highest "epoch" of its witness_appointed log lines ` +
            `(0 only if its data is gone for good and it will rejoin with an empty data dir); nothing was changed`);
        }
        const asked = peers.filter((p): p is Extract<PeerTerm, { term: number }> => 'term' in p);
        const floor = Math.max(override ?? 0, ...asked.map((p) => p.term));
        const r = await confirm(floor);
        const mine = ctx.app.cluster.status().lastIndex;
        const ahead = asked.filter((p) => p.lastIndex > mine);
        ctx.app.logger.warn({ event: 'witness_confirm', by: ctx.principal?.name, epoch: r.epoch, inSync: r.inSync, floor, peers },
          `witness confirmed on ${me}: epoch ${r.epoch} (above ${asked.length > 0 ? asked.map((p) => `${p.nodeName}'s term ${p.term}`).join(', ') : 'no other node\'s term'}${override !== undefined ? `, --min-epoch ${override}` : ''})`);
        ctx.json(200, {
          nodeName: me, epoch: r.epoch, inSync: r.inSync, floor, peers,
          ...(ahead.length > 0 ? { warning: `${ahead.map((p) => `${p.nodeName} (lastIndex ${p.lastIndex})`).join(', ')} has a longer log than ${me} (lastIndex ${mine}): if it was the last leader, it may hold acknowledged writes ${me} lacks; see docs/operations.md "Two nodes and a Redis witness"` } : {}),
        });
      },
    },
  },
};
