// The leader's operator commands of ClusterControl (src/api/ports.ts):
// switchover (hand leadership to a named or the most caught-up reachable
// voter, and wait until it has moved) and failover-safe (is some voter caught
// up and in contact, so that losing this leader loses no acknowledged write?).
// QuorateNode (./node.ts) calls these with what they need of it.
import { NONE, type NodeId } from '../raft/index.js';
import { NodeError } from './errors.js';
import type { MemberRegistry } from './registry.js';
import type { Replica } from './replica.js';

/** What the commands need of the node. */
export interface ControlContext {
  readonly replica: Pick<Replica, 'core' | 'run' | 'fatalIfBroken' | 'mapRaftError'>;
  readonly registry: Pick<MemberRegistry, 'peers' | 'nameOf' | 'isFenced'>;
  /** cluster.maxLagOnFailover: a target more entries behind than this is not caught up. */
  readonly maxLagEntries?: number;
  readonly nodeId: NodeId;
  readonly nodeName: string;
  readonly electionTimeoutMs: number;
  readonly tickMs: number;
  isLeader(): boolean;
  /** The NotLeader refusal, with whatever the node knows of the leader. */
  notLeader(): NodeError;
  /** Drained nodes are never switchover targets (./modes.ts). */
  isDrained?(nodeName: string): boolean;
  /** Members whose critical application health checks fail are never switchover targets (./app-services.ts). */
  isUnhealthy?(nodeName: string): boolean;
}

export async function switchover(c: ControlContext, to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }> {
  if (!c.isLeader()) throw c.notLeader();
  const st = c.replica.core.status();
  let target: NodeId | undefined;
  if (to !== undefined) {
    target = checkTarget(c, to);
  } else {
    const candidates = st.progress.filter((p) => p.role === 'voter' && p.inContact && c.isDrained?.(c.registry.nameOf(p.id)) !== true && c.isUnhealthy?.(c.registry.nameOf(p.id)) !== true).sort((a, b) => b.match - a.match);
    target = candidates[0]?.id;
    if (target === undefined) throw new NodeError('invalid_transfer', 'no other reachable, healthy voter can take over; add or start a voter first (or fix the failing health checks: `quorate checks`)');
  }
  checkCaughtUp(c, target, to === undefined);
  const started = performance.now();
  await new Promise<void>((resolve, reject) =>
    c.replica.run((raw) => {
      try {
        raw.transferLeadership(target);
        resolve();
      } catch (e) {
        if (c.replica.fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message})`));
        reject(c.replica.mapRaftError(e));
      }
    }),
  );
  const deadline = Date.now() + 2 * c.electionTimeoutMs + 500;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    const s = c.replica.core.status();
    if (s.lead !== NONE && s.lead !== c.nodeId) {
      return { from: c.nodeName, to: c.registry.nameOf(s.lead), term: s.term, pauseMs: Math.round(performance.now() - started) };
    }
  }
  throw new NodeError('transfer_failed', `leadership did not move to ${c.registry.nameOf(target)} in time; it may be lagging or unreachable. This node still leads: check \`quorate peers\` (lag, status), then retry or pick another target with \`quorate switchover --to NAME\``);
}

/** The member named `to`, when it may take over (it exists and is not drained); throws invalid_transfer otherwise. */
export function checkTarget(c: ControlContext, to: string): NodeId {
  const target = [...c.registry.peers.keys()].find((id) => c.registry.nameOf(id) === to);
  if (target === undefined) throw new NodeError('invalid_transfer', `no member named "${to}"; see \`quorate peers\` for names`);
  if (c.isDrained?.(to) === true) throw new NodeError('invalid_transfer', `${to} is drained and may not take over; run \`quorate undrain ${to}\` first or pick another voter`);
  if (c.isUnhealthy?.(to) === true) throw new NodeError('invalid_transfer', `${to} fails a critical application health check and may not take over; see \`quorate checks --url\` on it, or pick another voter`);
  return target;
}

/**
 * Refuses a target that is not caught up, naming how far behind it is: out of
 * contact for more than an election timeout, missing entries it has not held
 * for more than an election timeout (the age of what it misses, as
 * replicationLagMs of status), or more than maxLagEntries entries behind.
 * Under a steady stream of writes a healthy follower is a few entries behind
 * at any instant; it passes, and the transfer waits for it to catch up.
 */
export function checkCaughtUp(c: ControlContext, target: NodeId, picked: boolean, now = Date.now()): void {
  const st = c.replica.core.status();
  const p = st.progress.find((x) => x.id === target);
  const name = c.registry.nameOf(target);
  if (p === undefined) return; // not a member this leader tracks: raft refuses it (invalid_transfer)
  const entries = Math.max(0, st.lastIndex - p.match);
  const contactMs = p.ticksSinceContact * c.tickMs;
  const lastCaughtUp = c.registry.peers.get(target)?.lastCaughtUpAt;
  const ms = entries === 0 ? 0 : lastCaughtUp === undefined || lastCaughtUp === 0 ? contactMs : Math.max(0, now - lastCaughtUp);
  const maxEntries = Math.max(1, c.maxLagEntries ?? 1000);
  const why = contactMs > c.electionTimeoutMs ? `not heard from for ${contactMs} ms`
    : ms > c.electionTimeoutMs ? `missing entries for ${ms} ms (more than the election timeout, ${c.electionTimeoutMs} ms)`
      : entries > maxEntries ? `more than cluster.maxLagOnFailover (${maxEntries}) entries behind` : undefined;
  if (why === undefined) return;
  const hint = picked ? 'wait until a voter has caught up (`quorate peers`: lag) and retry' : 'wait until it has caught up (`quorate peers`: lag) or pick another target with `quorate switchover --to NAME`';
  throw new NodeError('target_not_caught_up',
    `${picked ? 'the most caught-up voter, ' : ''}${name} is not caught up: ${entries} entries and ${ms} ms behind the leader (match index ${p.match}, leader's last index ${st.lastIndex}; ${why}); ${hint}`,
    { target: name, behindEntries: entries, behindMs: ms, lastContactMs: contactMs });
}

export async function failoverSafe(c: ControlContext, waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }> {
  if (!c.isLeader()) throw c.notLeader();
  const deadline = Date.now() + Math.min(Math.max(0, waitMs), 5000);
  for (;;) {
    const caughtUp = caughtUpVoters(c);
    if (caughtUp.length > 0 || Date.now() >= deadline) return { safe: caughtUp.length > 0, caughtUp };
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The voters (names) fully caught up with this leader now: not diverged, not
 * fenced, holding its last index and heard from within an election timeout.
 * failoverSafe waits for one; quorate_failover_safe is 1 while there is one.
 */
export function caughtUpVoters(c: Pick<ControlContext, 'replica' | 'registry' | 'tickMs' | 'electionTimeoutMs'>): string[] {
  const st = c.replica.core.status();
  return st.progress
    .filter((p) => p.role === 'voter' && !p.diverged && !c.registry.isFenced(p.id) && p.match >= st.lastIndex && p.ticksSinceContact * c.tickMs < c.electionTimeoutMs)
    .map((p) => c.registry.nameOf(p.id));
}
