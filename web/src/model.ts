// What the page derives from the nodes' own views: which view to trust for
// the headline (the leader's), where nodes disagree, how many nodes the
// cluster can lose, and what losing one node would do. Pure functions.
import type { CertView, NodeView, PeerView, Status } from './api';

export interface Disagreement { readonly text: string }

/** The view of the node every answering node names as leader, else the one with the highest term. */
export function leaderView(views: readonly NodeView[]): Status | undefined {
  const ok = views.filter((v) => v.ok && v.status !== undefined).map((v) => v.status!);
  const lead = ok.filter((s) => s.raftRole === 'leader').sort((a, b) => b.term - a.term)[0];
  return lead ?? ok.sort((a, b) => b.term - a.term)[0];
}

/** Nodes that answer but do not agree about the leader or the term (beyond one heartbeat, the caller decides). */
export function disagreements(views: readonly NodeView[]): Disagreement[] {
  const ok = views.filter((v) => v.ok && v.status !== undefined);
  const out: Disagreement[] = [];
  const leaders = new Map<string, string[]>();
  for (const v of ok) {
    const l = v.status!.leader ?? '(none)';
    leaders.set(l, [...(leaders.get(l) ?? []), v.nodeName]);
  }
  if (leaders.size > 1) {
    out.push({ text: `Nodes disagree about the leader: ${[...leaders].map(([l, ns]) => `${ns.join(', ')} ${ns.length === 1 ? 'says' : 'say'} ${l}`).join('; ')}` });
  }
  const leadersByTerm = new Map<number, Set<string>>();
  for (const v of ok) {
    if (v.status!.raftRole === 'leader') leadersByTerm.set(v.status!.term, new Set([...(leadersByTerm.get(v.status!.term) ?? []), v.nodeName]));
  }
  for (const [t, ls] of leadersByTerm) if (ls.size > 1) out.push({ text: `Two leaders in term ${t}: ${[...ls].join(', ')} (split brain)` });
  const terms = new Set(ok.map((v) => v.status!.term));
  if (terms.size > 1) out.push({ text: `Nodes are at different terms: ${ok.map((v) => `${v.nodeName} ${v.status!.term}`).join(', ')}` });
  return out;
}

const VOTING = new Set(['primary', 'standby', 'candidate', 'rejoining']);

export function isVoter(p: PeerView): boolean {
  return VOTING.has(p.role);
}

/** "What if this node dies": the failure tolerance left, from the leader's view of who is reachable. */
export function whatIf(s: Status, nodeName: string): string {
  const voters = s.peers.filter(isVoter);
  const me = s.peers.find((p) => p.nodeName === nodeName);
  if (me === undefined || !isVoter(me)) return 'not a voter: losing it changes no quorum';
  const majority = Math.floor(voters.length / 2) + 1;
  const up = voters.filter((p) => p.status !== 'unreachable' && p.nodeName !== nodeName).length;
  if (up < majority) return `the cluster would lose its quorum (${up} of ${voters.length} voters left, ${majority} needed): writes stop`;
  const left = up - majority;
  const lead = me.role === 'primary' ? 'a new leader is elected; ' : '';
  return `${lead}${left === 0 ? 'no further failure could be tolerated' : `${left} more failure${left === 1 ? '' : 's'} could be tolerated`}`;
}

/** Why a follower is not healthy, in words. */
export function followerWhy(p: PeerView): string {
  switch (p.status) {
    case 'healthy': return 'replicating';
    case 'lagging': return `lagging by ${p.replicationLagEntries} entries (${fmtMs(p.replicationLagMs)})`;
    case 'unreachable': return p.lastContact ? `unreachable since ${new Date(p.lastContact).toLocaleTimeString()}` : 'never heard from';
    case 'diverged': return 'diverged: it lost entries it had acknowledged; the leader re-replicates them';
    case 'isolated': return 'isolated';
    default: return p.status;
  }
}

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

export function age(iso: string | null | undefined, now: number): string {
  if (!iso) return '—';
  return `${fmtMs(Math.max(0, now - Date.parse(iso)))} ago`;
}

/** A certificate with less than this left is shown as a warning (the alert rule's threshold for files). */
export const CERT_WARN_MS = 14 * 24 * 3600 * 1000;

/** One line per certificate a node serves: what it secures, when it expires; warn under 14 days left, bad when expired or unreadable. */
export function certLines(certs: readonly CertView[], now: number): { readonly text: string; readonly level: 'ok' | 'warn' | 'bad' }[] {
  return certs.map((c) => {
    const what = `${c.cert} cert (${c.source === 'auto' ? 'cluster CA' : c.file?.split(/[\\/]/).pop() ?? 'file'})`;
    if (c.notAfter === null) return { text: `${what}: unreadable${c.error ? ` (${c.error})` : ''}`, level: 'bad' };
    const left = Date.parse(c.notAfter) - now;
    const day = 24 * 3600 * 1000;
    const when = left <= 0 ? `expired ${c.notAfter.slice(0, 10)}` : `expires ${c.notAfter.slice(0, 10)} (${left < 2 * day ? `${Math.max(1, Math.round(left / 3600_000))} h` : `${Math.floor(left / day)} days`})`;
    return { text: `${what} ${when}`, level: left <= 0 ? 'bad' : left < CERT_WARN_MS ? 'warn' : 'ok' };
  });
}
