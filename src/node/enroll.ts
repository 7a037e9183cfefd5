// Membership operations of the leader: join tokens, enroll (a new node joins
// as a learner, is promoted once caught up) and remove. See README.md
// "Enroll and remove" and docs/operations.md for the runbooks.
//
// Join tokens live in the leader's memory only: after a leader change, a
// token created before it is unknown ("unknown or expired join token; create
// a new one with `quorate join-token create`").
import type { Logger } from 'pino';
import { isVoting, majority, type Member, type NodeId } from '../raft/index.js';
import { writeQuorum } from '../raft/quorum.js';
import {
  deriveJoinKeys, joinerMac, leaderMac, macMatches, newJoinToken, joinTokenId, sealSecret, type JoinAnswer,
} from '../transport/join.js';
import { encodeFrame, encodeJoinAck, encodeRefusal, REFUSED, type JoinAuthFrame } from '../transport/codec.js';
import { MIN_COMPATIBLE_VERSION, PROTOCOL_VERSION } from '../transport/handshake.js';
import { existsSync } from 'node:fs';
import { NodeError } from './errors.js';
import { recordRemoval } from './housekeeping.js';
import { normalizePeerUrl, type Bootstrap } from './members.js';
import type { MemberRegistry } from './registry.js';
import type { Replica } from './replica.js';
import type { ConfigRole } from './roles.js';

export const DEFAULT_JOIN_TOKEN_TTL_MS = 10 * 60_000;
export const MAX_JOIN_TOKEN_TTL_MS = 24 * 3600_000;
export const UNKNOWN_TOKEN_MESSAGE = 'unknown or expired join token; create a new one with `quorate join-token create`';

interface TokenRecord {
  readonly token: string;
  readonly expiresAt: number;
}

/** One-time, short-lived join tokens, by id (join.ts joinTokenId). */
export class JoinTokens {
  readonly #byId = new Map<string, TokenRecord>();

  create(ttlMs: number, now = Date.now()): { token: string; tokenId: string; expiresAt: number } {
    this.#sweep(now);
    const token = newJoinToken();
    const tokenId = joinTokenId(token);
    this.#byId.set(tokenId, { token, expiresAt: now + ttlMs });
    return { token, tokenId, expiresAt: now + ttlMs };
  }

  /** The token for this id, if it exists and has not expired (not consumed). */
  find(tokenId: string, now = Date.now()): string | undefined {
    this.#sweep(now);
    return this.#byId.get(tokenId)?.token;
  }

  /** A token is consumed by its first successful use. */
  consume(tokenId: string): void {
    this.#byId.delete(tokenId);
  }

  #sweep(now: number): void {
    for (const [id, t] of this.#byId) if (t.expiresAt <= now) this.#byId.delete(id);
  }
}

// ---------------------------------------------------------------- remove: the quorum arithmetic

export interface RemovalCheck {
  readonly ok: boolean;
  readonly message: string;
}

/**
 * May `target` be removed now? The new configuration's voters must still
 * commit: the live voters left (reachable, the leader included, the target
 * excluded) must reach the new configuration's write quorum.
 */
export function checkRemoval(
  members: readonly Pick<Member, 'id' | 'role'>[], target: NodeId, live: ReadonlySet<NodeId>, configuredWriteQuorum: number | undefined, nameOf: (id: NodeId) => string,
): RemovalCheck {
  const mem = members.find((m) => m.id === target);
  if (mem === undefined) return { ok: false, message: `${nameOf(target)} is not a member` };
  const remaining = members.filter((m) => m.id !== target && isVoting(m.role));
  if (!remaining.some((m) => m.role === 'voter')) return { ok: false, message: `removing ${nameOf(target)} would leave no voter that can lead` };
  const quorum = writeQuorum(remaining.length, configuredWriteQuorum);
  const liveLeft = remaining.filter((m) => live.has(m.id)).length;
  if (liveLeft < quorum) {
    return {
      ok: false,
      message: `removing ${nameOf(target)} would leave ${remaining.length} voter${remaining.length === 1 ? '' : 's'} (write quorum ${quorum}) of which only ${liveLeft} ${liveLeft === 1 ? 'is' : 'are'} reachable: ` +
        `the cluster could not commit. Bring the unreachable voters back (or enroll new ones) first; nothing was changed`,
    };
  }
  return { ok: true, message: `the remaining ${remaining.length} voter${remaining.length === 1 ? '' : 's'} (${liveLeft} reachable) keep a write quorum of ${quorum}` };
}

/** A voter enrolled into an even-sized voter set does not add failure tolerance. */
export function evenVotersWarning(votersAfter: number): string | undefined {
  if (votersAfter % 2 !== 0) return undefined;
  const tol = votersAfter - majority(votersAfter);
  return `${votersAfter} voters tolerate ${tol} failure${tol === 1 ? '' : 's'}, as ${votersAfter - 1} do: failure tolerance does not grow with an even number of voters; enroll one more voter (or an observer) for it to grow`;
}

// ---------------------------------------------------------------- enroll (leader side)

/** What a node waiting to be enrolled says about itself (GET /v1/cluster/join-info on the joiner). */
export interface JoinInfo {
  readonly nodeName: string;
  readonly haId: string;
  readonly version: string;
  readonly featureLevel: number;
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
  readonly apiUrl: string;
  readonly peerUrl: string;
  /** Its configured node.role: the membership follows each node's config, so enroll's role must match it. */
  readonly role: ConfigRole;
  /** Its data dir holds a cluster's data already: of which cluster, and what. */
  readonly data: { readonly haId: string; readonly entries: readonly string[] } | null;
}

export interface EnrollRequest {
  readonly apiUrl: string;
  readonly peerUrl: string;
  readonly role: ConfigRole;
  readonly force: boolean;
}

export interface EnrollResult {
  readonly nodeName: string;
  readonly nodeId: number;
  readonly role: ConfigRole;
  readonly catchUpTo: number;
  readonly backupDir: string | null;
  readonly warnings: string[];
}

export interface EnrollContext {
  readonly log: Logger;
  readonly haId: string;
  readonly selfId: NodeId;
  readonly version: string;
  readonly bootstrap: Bootstrap;
  readonly clusterSecret: Uint8Array;
  /** The cluster CA's epoch (`quorate ca rotate`), told to a joiner so that its first certificate is of it (0: none). */
  caEpoch?(): number;
  readonly replica: Pick<Replica, 'core' | 'run' | 'fatalIfBroken' | 'mapRaftError'>;
  readonly registry: Pick<MemberRegistry, 'peers' | 'nameOf'>;
  isLeader(): boolean;
  notLeader(): NodeError;
  clusterFeatureLevel(): number;
  /** config database.writeQuorum, for remove's quorum arithmetic. */
  readonly configuredWriteQuorum: number | undefined;
  /** The node's switchover (remove hands leadership over first when it is the one removed). */
  switchover(): Promise<unknown>;
}

interface Pending {
  readonly req: EnrollRequest;
  readonly info: JoinInfo;
  joined: ((r: { id: number; catchUpTo: number }) => void) | undefined;
}

/** How long a membership change waits for the leader's first commit of its term, or the previous change, before it is refused. */
const CONF_CHANGE_SETTLE_MS = 5_000;

const fetchJson = async (url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> => {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await r.text();
  let body: Record<string, unknown> = {};
  try { body = JSON.parse(text) as Record<string, unknown>; } catch { body = { message: text.slice(0, 500) }; }
  return { status: r.status, body };
};

export class Enroller {
  readonly tokens = new JoinTokens();
  readonly #c: EnrollContext;
  /** By normalized peer address. */
  readonly #pending = new Map<string, Pending>();

  constructor(c: EnrollContext) {
    this.#c = c;
  }

  createToken(ttlMs: number): { token: string; expiresAt: string; ttlMs: number } {
    if (!this.#c.isLeader()) throw this.#c.notLeader();
    const t = this.tokens.create(ttlMs);
    this.#c.log.info({ event: 'join_token_created', tokenId: t.tokenId, expiresAt: new Date(t.expiresAt).toISOString() }, `join token ${t.tokenId.slice(0, 8)}… created, valid until ${new Date(t.expiresAt).toISOString()} (one use, kept in the leader's memory only)`);
    return { token: t.token, expiresAt: new Date(t.expiresAt).toISOString(), ttlMs };
  }

  /** Checks the joiner, offers it the enrollment, waits for its join exchange. */
  async enroll(req: EnrollRequest): Promise<EnrollResult> {
    const c = this.#c;
    if (!c.isLeader()) throw c.notLeader();
    const peerKey = normalizePeerUrl(req.peerUrl);
    const members = c.replica.core.membership().members;
    const clash = members.find((m) => (m.peerUrl ?? c.registry.peers.get(m.id)?.peerUrl) === peerKey);
    if (clash) throw new NodeError('invalid_conf_change', `${peerKey} is already the peer address of member ${c.registry.nameOf(clash.id)} (id ${clash.id}); to replace that node, \`quorate remove ${c.registry.nameOf(clash.id)}\` first`);
    let info: JoinInfo;
    try {
      const r = await fetchJson(`${req.apiUrl.replace(/\/+$/, '')}/v1/cluster/join-info`);
      if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${String(r.body['message'] ?? '')}`);
      info = r.body as unknown as JoinInfo;
    } catch (e) {
      throw new NodeError('enroll_refused', `cannot reach the joining node's API at ${req.apiUrl} (${(e as Error).message}): start it with \`quorate agent --config F --join-token TOKEN\` and check its node.advertiseApiUrl`);
    }
    const level = c.clusterFeatureLevel();
    if (info.featureLevel < level || info.protocolVersion < MIN_COMPATIBLE_VERSION || PROTOCOL_VERSION < info.minCompatibleVersion) {
      throw new NodeError('enroll_refused',
        `${info.nodeName} at ${req.apiUrl} runs quorate ${info.version} (feature level ${info.featureLevel}, protocol ${info.minCompatibleVersion}..${info.protocolVersion}); ` +
        `this cluster needs feature level ${level} or higher and protocol ${MIN_COMPATIBLE_VERSION}..${PROTOCOL_VERSION} (quorate ${c.version} on the leader): ` +
        `upgrade ${info.nodeName} to quorate ${c.version} and enroll it again; nothing was changed`);
    }
    if (info.haId !== c.haId) {
      throw new NodeError('enroll_refused', `${info.nodeName}'s config has cluster.haId ${JSON.stringify(info.haId)}, this cluster is ${JSON.stringify(c.haId)}: set cluster.haId to ${JSON.stringify(c.haId)} in its config and restart it with --join-token`);
    }
    if (info.role !== req.role) {
      throw new NodeError('enroll_refused', `${info.nodeName}'s config has node.role ${JSON.stringify(info.role)}, not ${JSON.stringify(req.role)}: the membership follows each node's config, so set node.role to ${JSON.stringify(req.role)} there and restart it, or enroll it with --role ${info.role}; nothing was changed`);
    }
    if (normalizePeerUrl(info.peerUrl) !== peerKey) {
      throw new NodeError('enroll_refused', `the node at ${req.apiUrl} advertises peer address ${info.peerUrl}, not ${req.peerUrl}: pass its node.advertisePeerUrl as peerUrl`);
    }
    if (info.data !== null && !req.force) {
      const whose = info.data.haId === c.haId ? 'an earlier member of this cluster' : `cluster ${JSON.stringify(info.data.haId)}`;
      throw new NodeError('enroll_refused', `${info.nodeName}'s data dir holds data of ${whose} (${info.data.entries.join(', ')}): it may be a member of another cluster. Pass --force to back that data up on the node and replace it with this cluster's; nothing was changed`);
    }
    if (this.#pending.has(peerKey)) throw new NodeError('conf_change_in_progress', `an enrollment of ${peerKey} is already under way; wait for it to finish`);
    const p: Pending = { req, info, joined: undefined };
    const joined = new Promise<{ id: number; catchUpTo: number }>((resolve) => { p.joined = resolve; });
    this.#pending.set(peerKey, p);
    try {
      const self = c.registry.peers.get(c.selfId)?.peerUrl ?? '';
      const offer = await fetchJson(`${req.apiUrl.replace(/\/+$/, '')}/v1/cluster/join-offer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ haId: c.haId, leaderPeerUrl: self, force: req.force }),
      });
      if (offer.status !== 200) {
        throw new NodeError('enroll_refused', `${info.nodeName} could not join: ${String(offer.body['message'] ?? `HTTP ${offer.status}`)}`);
      }
      const j = await Promise.race([joined, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000))]);
      if (j === undefined) throw new NodeError('enroll_refused', `${info.nodeName} answered the offer but never completed the join exchange`);
      const voters = c.replica.core.membership().members.filter((m) => isVoting(m.role)).length;
      const warnings: string[] = [];
      if (req.role === 'voter') {
        const w = evenVotersWarning(voters + 1);
        if (w !== undefined) warnings.push(w);
      }
      const backupDir = typeof offer.body['backupDir'] === 'string' ? offer.body['backupDir'] : null;
      return { nodeName: info.nodeName, nodeId: j.id, role: req.role, catchUpTo: j.catchUpTo, backupDir, warnings };
    } finally {
      this.#pending.delete(peerKey);
    }
  }

  /** The leader's side of the join exchange (transport onJoin): answers a joinAck or a refuse frame. */
  async onJoin(ja: JoinAuthFrame, joinerNonce: Uint8Array, leaderNonce: Uint8Array): Promise<Buffer> {
    const c = this.#c;
    const refuse = (reason: string, tell: boolean): Buffer => {
      c.log.warn({ event: 'join_refused', tokenId: ja.tokenId, peerUrl: ja.peerUrl, nodeName: ja.nodeName, reason }, `join refused for ${ja.nodeName} (${ja.peerUrl}): ${reason}`);
      return encodeFrame('refuse', encodeRefusal(tell ? { code: 'join_refused', reason } : REFUSED));
    };
    const token = this.tokens.find(ja.tokenId);
    if (token === undefined) return refuse(UNKNOWN_TOKEN_MESSAGE, false);
    const keys = deriveJoinKeys(token, joinerNonce, leaderNonce);
    if (!macMatches(joinerMac(keys, joinerNonce, leaderNonce, ja), ja.mac)) return refuse('the join token proof did not verify (wrong token)', false);
    // From here on the joiner holds the token: it may hear why.
    const peerKey = normalizePeerUrl(ja.peerUrl);
    const p = this.#pending.get(peerKey);
    if (p === undefined || p.joined === undefined) return refuse(`no enrollment of ${peerKey} is pending on the leader: run \`quorate enroll ${ja.apiUrl} --role voter|observer|dr\``, true);
    if (!c.isLeader()) return refuse('this node is no longer the leader', true);
    this.tokens.consume(ja.tokenId);
    const id = this.#nextId();
    const gate = c.replica.core.status().commit;
    const member: Member = {
      id, role: 'learner', peerUrl: peerKey, apiUrl: ja.apiUrl, name: ja.nodeName,
      ...(ja.incarnation !== '' ? { incarnation: ja.incarnation } : {}), catchUpTo: gate,
    };
    await this.#proposeAndWait({ op: 'add', id, role: 'learner', member }, id);
    const peers = c.replica.core.membership().members
      .map((m) => ({ id: m.id, peerUrl: m.peerUrl ?? c.registry.peers.get(m.id)?.peerUrl }))
      .filter((m): m is { id: number; peerUrl: string } => m.peerUrl !== undefined);
    const generation = c.bootstrap.generation ?? 0;
    const caEpoch = c.caEpoch?.() ?? 0;
    const answer: JoinAnswer = {
      haId: c.haId, nodeId: id, leaderId: c.selfId, bootstrap: JSON.stringify(c.bootstrap.members), peers: JSON.stringify(peers), ...(generation > 0 ? { generation } : {}),
      ...(caEpoch > 0 ? { caEpoch } : {}),
    };
    const { iv, sealed } = sealSecret(keys, c.clusterSecret, answer);
    const mac = leaderMac(keys, joinerNonce, leaderNonce, ja.mac, answer, iv, sealed);
    c.log.info({ event: 'member_enrolled', id, nodeName: ja.nodeName, peerUrl: peerKey, role: p.req.role, catchUpTo: gate },
      `${ja.nodeName} (id ${id}, ${peerKey}) joined as a learner; it becomes ${p.req.role === 'dr' ? 'a dr node' : `a${p.req.role === 'observer' ? 'n observer' : ' voter'}`} once it has caught up to index ${gate}`);
    p.joined({ id, catchUpTo: gate });
    return encodeFrame('joinAck', encodeJoinAck({ ...answer, iv, sealed, mac }));
  }

  /** Ids are never reused: one above every id the cluster has known (members, removed, bootstrap). */
  #nextId(): number {
    const m = this.#c.replica.core.membership();
    return Math.max(0, ...m.members.map((x) => x.id), ...m.removed, ...this.#c.bootstrap.members.map((x) => x.id)) + 1;
  }

  async #proposeAndWait(change: Parameters<import('../raft/index.js').RawNode['proposeConfChange']>[0], id: NodeId): Promise<void> {
    const c = this.#c;
    const propose = () => new Promise<void>((resolve, reject) => c.replica.run((raw) => {
      try {
        raw.proposeConfChange(change);
        resolve();
      } catch (e) {
        if (c.replica.fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message})`));
        reject(c.replica.mapRaftError(e));
      }
    }));
    // A leader just elected (after the handover of a remove of the old leader, say) has not committed an entry of
    // its term yet, or the previous change is still being committed: both pass within a round trip, so wait for
    // them (bounded) rather than refuse an operator's one call with "retry shortly".
    const settleBy = Date.now() + CONF_CHANGE_SETTLE_MS;
    for (;;) {
      try {
        await propose();
        break;
      } catch (e) {
        if (!(e instanceof NodeError && e.code === 'conf_change_in_progress') || Date.now() > settleBy || !c.isLeader()) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const deadline = Date.now() + 10_000;
    for (;;) {
      const st = c.replica.core.status();
      const has = st.membership.members.some((m) => m.id === id) !== (change.op === 'remove');
      if (has && st.commit >= st.lastIndex) return;
      if (Date.now() > deadline) throw new NodeError('commit_unknown', `the membership change for node ${id} was proposed but not seen committed within 10 s; check \`quorate peers\``);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Remove a member by name (the leader hands over first when it is the one removed). */
  async remove(nodeName: string): Promise<{ nodeName: string; nodeId: number; message: string }> {
    const c = this.#c;
    if (!c.isLeader()) throw c.notLeader();
    const m = c.replica.core.membership();
    const target = m.members.find((x) => c.registry.nameOf(x.id) === nodeName);
    if (target === undefined) {
      throw new NodeError('invalid_conf_change', `no member named ${JSON.stringify(nodeName)}${m.removed.length > 0 ? ' (removed ids stay removed)' : ''}; see \`quorate peers\` for names`);
    }
    const st = c.replica.core.status();
    const live = new Set<NodeId>([c.selfId, ...st.progress.filter((p) => p.inContact && !p.diverged).map((p) => p.id)]);
    const check = checkRemoval(m.members, target.id, live, c.configuredWriteQuorum, (id) => c.registry.nameOf(id));
    if (!check.ok) throw new NodeError('removal_unsafe', check.message);
    if (target.id === c.selfId) {
      c.log.info({ event: 'remove_leader_handover', nodeName }, `removing the leader ${nodeName}: handing leadership over first`);
      await c.switchover();
      throw c.notLeader(); // the API forwards the request to the new leader, which removes this node
    }
    await this.#proposeAndWait({ op: 'remove', id: target.id }, target.id);
    c.log.info({ event: 'member_removed', id: target.id, nodeName }, `${nodeName} (id ${target.id}) removed from the cluster; its id is never reused (${check.message})`);
    return { nodeName, nodeId: target.id, message: `${nodeName} removed; ${check.message}` };
  }
}

// ---------------------------------------------------------------- this node's removed state (moved from node.ts)

/** Removed from the cluster (its membership says so, a peer refused it as removed, or the marker file): serves no data. */
export class RemovedState {
  readonly #dataDir: string;
  readonly #log: Logger;
  #removed = false;

  /** At start: removed already if the data dir's marker file is there or `byMembership`. */
  constructor(dataDir: string, log: Logger, byMembership: boolean) {
    this.#dataDir = dataDir;
    this.#log = log;
    if (existsSync(`${dataDir}/removed`) || byMembership) this.mark('the membership (or this data dir\'s "removed" marker) says so');
  }

  get removed(): boolean {
    return this.#removed;
  }

  /** Marks this node removed once: the marker file and the `node_removed` line (housekeeping.ts recordRemoval). */
  mark(why: string): void {
    if (this.#removed) return;
    this.#removed = true;
    recordRemoval(this.#dataDir, this.#log, why);
  }
}
