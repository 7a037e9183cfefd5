// "Serve here if this node leads, else forward to the leader": the one place
// that decides where writes and linearizable reads run.
import type { RequestContext } from './context.js';
import { ApiError } from './errors.js';

const codeOf = (err: unknown): unknown => (typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined);

/**
 * Forwards ctx to the leader, or throws 503 no_leader saying what to do.
 * `lostLeadership`: this node led when the request arrived and lost it while
 * serving it (a switchover it made itself, e.g. removing the leader): one
 * more hop is allowed even for a forwarded request; the node it reaches sees
 * the forwarded header and never forwards again, so this stays bounded.
 */
export async function forwardToLeader(ctx: RequestContext, write: boolean, timeoutMs = ctx.app.forwardTimeoutMs, lostLeadership = false, streamBody = false): Promise<void> {
  const cluster = ctx.app.cluster;
  if (ctx.forwardedIn && !lostLeadership) {
    // Another node sent this here believing we lead; we do not (an election
    // is under way or views differ). Never bounce it on: that could loop.
    throw new ApiError('no_leader', `${cluster.nodeName} is not the leader either (the request was already forwarded once; leadership is changing). Retry in a moment and check \`quorate status\``);
  }
  const url = cluster.leaderApiUrl();
  const st = cluster.status();
  if (url === undefined) {
    const why = st.leaderName !== undefined
      ? `the leader ${st.leaderName}'s API URL is not known yet`
      : 'no leader is known right now (an election may be in progress, or a majority of voters is unreachable)';
    throw new ApiError('no_leader', `${why}; nothing was applied. Retry in a moment and check \`quorate status\``);
  }
  await ctx.app.forwarder.forward(ctx, url, st.leaderName, { write, timeoutMs, streamBody });
}

/**
 * Runs `local` when this node leads; forwards otherwise. If leadership is
 * lost while `local` runs (the node throws not_leader before anything was
 * applied), the request is forwarded to the new leader too.
 */
export async function onLeader(ctx: RequestContext, write: boolean, local: () => Promise<void>, timeoutMs?: number): Promise<void> {
  if (!ctx.app.cluster.isLeader()) return forwardToLeader(ctx, write, timeoutMs);
  try {
    await local();
  } catch (err) {
    if (codeOf(err) === 'not_leader' && !ctx.res.headersSent) return forwardToLeader(ctx, write, timeoutMs, true);
    throw err;
  }
}

/** Like onLeader for calls the node may serve anywhere but refuses with not_leader (switchover, failover-safe). */
export async function tryLocalThenLeader(ctx: RequestContext, local: () => Promise<void>, timeoutMs?: number): Promise<void> {
  try {
    await local();
  } catch (err) {
    if (codeOf(err) === 'not_leader' && !ctx.res.headersSent) return forwardToLeader(ctx, false, timeoutMs);
    throw err;
  }
}
