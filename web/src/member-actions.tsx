// Membership actions on a node's card (admin): remove, isolate, promote a DR
// node. Each has a preflight from the leader's view (would the cluster keep a
// quorum, how many failures could it still tolerate), a confirmation naming
// its effect and the CLI command, and promote-dr a typed confirmation of the
// node name. The API decides: its refusal is shown as it came.
import type { Connection, NodeView, Status } from './api';
import type { Pending } from './actions';
import { isVoter } from './model';

/** What removing `node` leaves, from the leader's view; a warning when it drops tolerance to 0 or loses the quorum. */
export function removalWarning(lead: Status, node: string): string | undefined {
  const target = lead.peers.find((p) => p.nodeName === node);
  if (target === undefined || !isVoter(target)) return undefined;
  const voters = lead.peers.filter((p) => isVoter(p) && p.nodeName !== node);
  const majority = Math.floor(voters.length / 2) + 1;
  const reachable = voters.filter((p) => p.status !== 'unreachable').length;
  if (reachable < majority) return `After it, ${voters.length} voters remain of which ${reachable} are reachable (${majority} needed): the cluster could not commit. The leader will refuse (removal_unsafe).`;
  if (reachable - majority === 0) return `After it the cluster tolerates no further failure (${reachable} of ${voters.length} voters reachable, ${majority} needed).`;
  return undefined;
}

/** The page came from this node: once it is no longer a member, the others refuse this page's origin (CORS). */
function servedThisPage(view: NodeView): boolean {
  try { return view.apiUrl !== null && new URL(view.apiUrl).origin === location.origin; } catch { return false; }
}

const SERVED = 'This page was served by it: afterwards the other members no longer answer this page; open the dashboard on another member.';

export function prepareRemove(conn: Connection, lead: Status, node: string, servedHere = false): Pending {
  const leading = lead.nodeName === node && lead.raftRole === 'leader';
  const w = [removalWarning(lead, node), servedHere ? SERVED : undefined].filter((x) => x !== undefined).join(' ') || undefined;
  return {
    title: `Remove ${node}`,
    effect: `${node} leaves the cluster online: it stops being a member and serves no data afterwards (503 removed).${leading ? ' It leads now: it hands leadership to another voter first.' : ''} To bring it back, wipe its data dir and enroll it again.`,
    ...(w !== undefined ? { warning: w } : {}),
    cli: `quorate remove ${node}`,
    run: () => conn.call('POST', '/v1/cluster/remove', { nodeName: node }),
    summarize: (a) => String(a['message'] ?? `${node} removed`),
  };
}

export function prepareIsolate(conn: Connection, lead: Status, node: string, servedHere = false): Pending {
  const w = [removalWarning(lead, node), servedHere ? SERVED : undefined].filter((x) => x !== undefined).join(' ') || undefined;
  return {
    title: `Isolate ${node}`,
    effect: `For a suspected compromise: ${node} is removed at once and the cluster secret is rotated on the remaining members, so ${node} cannot reconnect with what it holds.`,
    ...(w !== undefined ? { warning: w } : {}),
    cli: `quorate isolate ${node}`,
    run: () => conn.call('POST', '/v1/cluster/isolate', { nodeName: node }),
    summarize: (a) => String(a['message'] ?? `${node} isolated`),
  };
}

export function preparePromoteDr(conn: Connection, lead: Status | undefined, node: string): Pending {
  const peer = lead?.peers.find((p) => p.nodeName === node);
  const lag = peer !== undefined ? ` As the leader sees it now, ${node} is ${peer.replicationLagEntries} entries (${peer.replicationLagMs} ms) behind.` : '';
  return {
    title: `Promote DR node ${node}`,
    effect: `${node} becomes the only voter of a new cluster generation and leads: writes the primary site committed but ${node} never received are lost, and the old nodes come back only by enrollment. Refused while a quorum of the old voters is reachable from ${node} (then use switchover, or the CLI's --force).${lag}`,
    warning: 'This cannot be undone from this page.',
    cli: `quorate promote-dr --node ${node} --confirm`,
    typed: node,
    run: () => conn.call('POST', '/v1/cluster/promote-dr', { nodeName: node, confirm: true }),
    summarize: (a) => { const l = a['lag'] as { entries?: number; ms?: number } | undefined; return `${node} leads generation ${String(a['generation'])}; lag at promotion ${String(l?.entries ?? '?')} entries, ${String(l?.ms ?? '?')} ms`; },
  };
}

/** Remove / isolate / promote-dr buttons of one card (admin; a leader's view is needed for remove and isolate). */
export function MemberActions({ conn, view, lead, prepare }: { conn: Connection; view: NodeView; lead: Status | undefined; prepare: (p: Pending) => void }) {
  const leading = lead !== undefined && lead.raftRole === 'leader';
  const peer = lead?.peers.find((p) => p.nodeName === view.nodeName);
  const isDr = (peer?.role ?? view.status?.role) === 'dr';
  const isLeaderCard = leading && lead.nodeName === view.nodeName;
  if (!leading && !isDr) return null;
  return (
    <div class="card-actions">
      {leading && peer !== undefined ? <button type="button" data-action="remove" onClick={() => prepare(prepareRemove(conn, lead, view.nodeName, servedThisPage(view)))}>Remove</button> : null}
      {leading && peer !== undefined && !isLeaderCard ? <button type="button" data-action="isolate" onClick={() => prepare(prepareIsolate(conn, lead, view.nodeName, servedThisPage(view)))}>Isolate</button> : null}
      {isDr && view.ok ? <button type="button" data-action="promote-dr" onClick={() => prepare(preparePromoteDr(conn, lead, view.nodeName))}>Promote DR</button> : null}
    </div>
  );
}
