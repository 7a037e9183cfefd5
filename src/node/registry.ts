// Who the members are: what each announced in its authenticated handshake,
// what the membership records for it (through the log), which peers are
// fenced (a new data dir under a known id), whether this node itself is
// rejoining, and the leader's reconciliation of the membership with what the
// members announce. See README.md "Identity and roles".
import type { Logger } from 'pino';
import { clusterFeatureLevel } from './features.js';
import {
  NONE, RaftError, isVoting,
  type ConfChange, type Member, type MemberRole, type Message, type NodeId, type RawNode,
} from '../raft/index.js';
import { configRole } from './roles.js';
import { ConfigCheck } from './config-check.js';
import { staticAddProblem } from './static-add.js';
import type { ClusterSettings } from '../transport/index.js';

/** What a member announced in its last authenticated handshake (or, for this node, its own config). */
export interface Announced {
  readonly nodeName: string;
  readonly apiUrl: string | undefined;
  /** The role the node's own config asks for (dr = learner). */
  readonly role: MemberRole | undefined;
  /** Its data dir's incarnation id. */
  readonly incarnation: string | undefined;
}

export interface PeerMeta {
  /** host:port; from bootstrap.json, then from the member's record in the membership (the leader records it). */
  peerUrl: string;
  /** When it was last caught up with the leader (the leader's view; for replicationLagMs). */
  lastCaughtUpAt: number;
  /** Never used as it is: the leader records it in the membership through the log. */
  announced: Announced | undefined;
}

/** Messages that count toward a quorum (elections, commits, leadership checks). */
const COUNTED = new Set<Message['type']>(['voteResp', 'preVoteResp', 'appResp', 'heartbeatResp']);

export interface RegistryOptions {
  readonly selfId: NodeId;
  readonly self: Announced;
  /** Bootstrap members: id → peer URL. */
  readonly members: ReadonlyMap<NodeId, string>;
  readonly logger: Logger;
  /** This node's configured role, for the handover message. */
  readonly configuredRole: string;
  /** Stop the process on a broken invariant (see Replica.fatalIfBroken). */
  readonly fatalIfBroken: (e: unknown) => boolean;
  /** This node's feature level (features.ts). */
  readonly featureLevel: number;
  /** This node's config keys that must agree across members (./config-check.ts); compared with what peers announce. */
  readonly settings?: ClusterSettings;
}

export class MemberRegistry {
  readonly selfId: NodeId;
  readonly #self: Announced;
  readonly #log: Logger;
  readonly #configuredRole: string;
  readonly #fatalIfBroken: (e: unknown) => boolean;
  readonly peers = new Map<NodeId, PeerMeta>();
  /** The membership's member records by id (refreshed when the membership changes). */
  #records = new Map<NodeId, Member>();
  /**
   * Voting members that came back with a new data dir (their authenticated
   * incarnation differs from the recorded one): until the leader records them
   * as learners, nothing they answer counts toward any quorum.
   */
  #fenced = new Set<NodeId>();
  #fencedLogAt = new Map<NodeId, number>();
  /** This node came back with a new data dir (see markRejoining). */
  #rejoining = false;
  /** The membership this node holds lists it as removed. */
  removed = false;
  /** Something the reconciliation looks at changed (a handshake, leadership, a committed membership change). */
  dirty = true;
  #warned = new Set<string>();
  /** The leader's last index at the previous catch-up sample (trackCatchUp). */
  #catchUpSample: { at: number; lastIndex: number } | undefined;
  readonly featureLevel: number;
  /** Feature level each peer announced on its current authenticated connection (features.ts). */
  readonly #levels = new Map<NodeId, number>();
  readonly #configCheck: ConfigCheck | undefined;

  constructor(o: RegistryOptions) {
    this.selfId = o.selfId;
    this.#self = o.self;
    this.#log = o.logger;
    this.#configuredRole = o.configuredRole;
    this.#fatalIfBroken = o.fatalIfBroken;
    this.featureLevel = o.featureLevel;
    this.#configCheck = o.settings === undefined ? undefined : new ConfigCheck(o.settings, o.self.nodeName, o.logger);
    for (const [id, peerUrl] of o.members) {
      this.peers.set(id, { peerUrl, lastCaughtUpAt: Date.now(), announced: id === o.selfId ? o.self : undefined });
    }
  }

  record(id: NodeId): Member | undefined {
    return this.#records.get(id);
  }

  isFenced(id: NodeId): boolean {
    return this.#fenced.has(id);
  }

  /** The member's name once known (its record, or its handshake); undefined before (nameOf then says `node-<id>`). */
  knownName(id: NodeId): string | undefined {
    if (id === this.selfId) return this.#self.nodeName;
    return this.#records.get(id)?.name ?? this.peers.get(id)?.announced?.nodeName;
  }

  nameOf(id: NodeId): string {
    if (id === this.selfId) return this.#self.nodeName;
    return this.#records.get(id)?.name ?? this.peers.get(id)?.announced?.nodeName ?? `node-${id}`;
  }

  /** A peer completed an authenticated handshake (from transport I/O). */
  announce(peer: NodeId, said: Announced): void {
    const p = this.peers.get(peer);
    if (!p) return;
    p.announced = said;
    this.#refreshFenced();
    this.dirty = true;
  }

  /**
   * A peer announced its feature level in an authenticated handshake (from
   * transport I/O). Kept when its connection drops: a member that is down for
   * a while (the usual case during a failure) does not send the cluster back
   * to the previous formats; one that comes back as an older build says so in
   * its next handshake, and the level drops then.
   */
  hearFeatureLevel(peer: NodeId, level: number): void {
    this.#levels.set(peer, level);
  }

  /** What a peer's authenticated handshake (hello or helloAck) announced: its feature level and cluster settings. */
  hear(peer: NodeId, info: { readonly featureLevel: number; readonly nodeName: string; readonly settings?: ClusterSettings | undefined }): void {
    this.hearFeatureLevel(peer, info.featureLevel);
    this.#configCheck?.hear(peer, this.#records.get(peer)?.name ?? info.nodeName, info.settings);
  }

  /** The transport's hooks that read the membership records: the incarnation told to a peer, and the static-add check (./static-add.ts). */
  transportHooks(): { recordedIncarnation(peer: NodeId): string | undefined; identityProblem(hello: { fromId: number; fromName: string; incarnation: string }): string | undefined } {
    return {
      recordedIncarnation: (peer) => this.#records.get(peer)?.incarnation,
      identityProblem: (hello) => staticAddProblem(this.#records.get(hello.fromId), hello),
    };
  }

  /** Config keys on which a member's file differs from this node's (./config-check.ts). */
  configWarnings(): string[] {
    return this.#configCheck?.warnings() ?? [];
  }

  /** id → address of every other peer known (bootstrap.json, then the membership's records), for the transport. */
  peerAddresses(): Map<NodeId, { host: string; port: number }> {
    const out = new Map<NodeId, { host: string; port: number }>();
    for (const [pid, meta] of this.peers) {
      if (pid === this.selfId) continue;
      const u = new URL(`tcp://${meta.peerUrl}`);
      out.set(pid, { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) });
    }
    return out;
  }

  /** The cluster feature level over the membership's current members, as this node has heard them. */
  clusterFeatureLevel(members: readonly Member[]): number {
    return clusterFeatureLevel(members, { id: this.selfId, level: this.featureLevel }, this.#levels);
  }

  /** The membership changed (in the loop): re-read the records. */
  refresh(raw: RawNode): void {
    const membership = raw.membership();
    this.#records = new Map(membership.members.map((m) => [m.id, m]));
    // Peer addresses come from the membership (a member added online is reachable by all); removed ids are dropped.
    for (const m of membership.members) {
      if (m.peerUrl === undefined) continue;
      const p = this.peers.get(m.id);
      if (p === undefined) this.peers.set(m.id, { peerUrl: m.peerUrl, lastCaughtUpAt: Date.now(), announced: undefined });
      else p.peerUrl = m.peerUrl;
    }
    for (const id of membership.removed) {
      if (id === this.selfId) continue;
      this.peers.delete(id);
      this.#configCheck?.forget(id);
    }
    this.removed = membership.removed.includes(this.selfId);
    this.#refreshFenced();
    if (this.#rejoining && this.#records.get(this.selfId)?.incarnation === this.#self.incarnation) {
      this.#rejoining = false;
      raw.setRejoining(false);
      this.#log.info({ event: 'rejoin_recorded', incarnation: this.#self.incarnation }, `the cluster has recorded this node's new data dir (incarnation ${this.#self.incarnation}); it votes again once the leader promotes it`);
    }
  }

  /**
   * A peer records another incarnation for this node (in the loop): this data
   * dir is new under an id the cluster knows (wiped or replaced). Withhold
   * votes and candidacy until the membership records this incarnation.
   */
  markRejoining(raw: RawNode, peer: NodeId, known: string): void {
    if (this.#rejoining || this.#records.get(this.selfId)?.incarnation === this.#self.incarnation) return;
    this.#rejoining = true;
    raw.setRejoining(true);
    this.#log.warn({ event: 'rejoining', peer, recorded: known, incarnation: this.#self.incarnation },
      `${this.nameOf(peer)} knows this node with another data dir (incarnation ${known}; this one is ${this.#self.incarnation}): this node grants no vote and does not campaign until the leader has recorded it and it has caught up`);
  }

  /** May this message reach the core? A fenced peer's votes and acknowledgements do not. */
  admit(m: Message): boolean {
    if (!this.#fenced.has(m.from) || !COUNTED.has(m.type)) return true;
    const now = Date.now();
    if (now - (this.#fencedLogAt.get(m.from) ?? 0) >= 5000) {
      this.#fencedLogAt.set(m.from, now);
      this.#log.info({ event: 'fenced_message_ignored', from: m.from, type: m.type }, `ignoring ${m.type} from ${this.nameOf(m.from)}: it has a new data dir and does not count yet`);
    }
    return false;
  }

  #reconcileQueued = false;

  /** Run the reconciliation in the loop soon, at most one queued (moved from node.ts). */
  queueReconcile(replica: { readonly fatal: Error | undefined; run(op: (raw: RawNode) => void): void }): void {
    if (this.#reconcileQueued) return;
    this.#reconcileQueued = true;
    replica.run((raw) => {
      this.#reconcileQueued = false;
      if (!replica.fatal) this.reconcile(raw);
    });
  }

  /**
   * The leader brings the membership in line with what each member announced
   * in its authenticated handshake, one single-server change at a time:
   * 1. a voting member that came back with a new data dir (new incarnation)
   *    becomes a learner gated at the current commit index (an amnesiac node
   *    never votes or counts until it holds what it may have acknowledged);
   * 2. facts not yet recorded (incarnation, API URL, name) are recorded;
   * 3. roles follow each node's config (voter / observer / dr); a gated
   *    learner is promoted only once its match index reaches the gate. A
   *    leader configured as observer or dr first hands leadership to a voter.
   * Runs in the loop.
   */
  reconcile(raw: RawNode): void {
    const st = raw.status();
    if (st.role !== 'leader' || st.leadTransferee !== NONE) return;
    this.dirty = false;
    const match = new Map(st.progress.map((p) => [p.id, p.match]));
    match.set(this.selfId, st.lastIndex);
    // Peer addresses go into the records only once every member applies the field (feature level 2, features.ts).
    const recordPeerUrls = this.clusterFeatureLevel(st.membership.members) >= 2;
    for (const mem of st.membership.members) {
      const said = this.peers.get(mem.id)?.announced;
      if (said === undefined) continue;
      const name = said.nodeName;
      const apiUrl = said.apiUrl ?? mem.apiUrl;
      const incarnation = said.incarnation ?? mem.incarnation;
      const peerUrl = mem.peerUrl ?? (recordPeerUrls ? this.peers.get(mem.id)?.peerUrl : undefined);
      let next: Member | undefined;
      let why = '';
      if (mem.incarnation !== undefined && said.incarnation !== undefined && said.incarnation !== mem.incarnation && mem.id !== this.selfId) {
        const gate = isVoting(mem.role) ? st.commit : mem.catchUpTo;
        next = { id: mem.id, role: isVoting(mem.role) ? 'learner' : mem.role, incarnation: said.incarnation, name, ...(apiUrl ? { apiUrl } : {}), ...(peerUrl ? { peerUrl } : {}), ...(gate !== undefined ? { catchUpTo: gate } : {}) };
        why = `${name} came back with a new data dir (incarnation ${mem.incarnation} → ${said.incarnation}): it is a non-voting learner until it has caught up to index ${gate ?? st.commit}`;
        this.#log.warn({ event: 'member_rejoined', id: mem.id, previous: mem.incarnation, incarnation: said.incarnation, catchUpTo: gate }, why);
      } else if (incarnation !== mem.incarnation || apiUrl !== mem.apiUrl || name !== mem.name || peerUrl !== mem.peerUrl) {
        next = { ...mem, name, ...(incarnation !== undefined ? { incarnation } : {}), ...(apiUrl !== undefined ? { apiUrl } : {}), ...(peerUrl !== undefined ? { peerUrl } : {}) };
        why = `recording ${name}'s identity (incarnation ${incarnation ?? '-'}, API ${apiUrl ?? '-'}, peer ${peerUrl ?? '-'})`;
      } else {
        const want = said.role ?? mem.role;
        if (mem.catchUpTo !== undefined) {
          if ((match.get(mem.id) ?? 0) < mem.catchUpTo) continue; // still catching up: stays a learner
          if (want === mem.role) {
            const { catchUpTo: _done, ...rest } = mem;
            next = rest;
            why = `${name} has caught up to index ${mem.catchUpTo}`;
          }
        }
        if (next === undefined && want !== mem.role) {
          if (mem.id === this.selfId && want !== 'voter') {
            this.#handOver(raw, st);
            return;
          }
          this.#propose(raw, { op: 'setRole', id: mem.id, role: want }, `setting ${name}'s role to ${configRole(want)}`);
          return;
        }
        if (next === undefined) continue;
      }
      this.#propose(raw, { op: 'setMember', id: mem.id, member: next }, why);
      return;
    }
  }

  #handOver(raw: RawNode, st: ReturnType<RawNode['status']>): void {
    const target = st.progress
      .filter((p) => p.role === 'voter' && p.inContact && !p.diverged && (this.peers.get(p.id)?.announced?.role ?? 'voter') === 'voter')
      .sort((a, b) => b.match - a.match)[0];
    if (target === undefined) {
      this.#warnOnce('role_handover', `configured as ${this.#configuredRole} but no other reachable voter can take over leadership yet`);
      return;
    }
    this.#log.info({ event: 'role_handover', to: target.id }, `configured as ${this.#configuredRole}: handing leadership to ${this.nameOf(target.id)}`);
    try {
      raw.transferLeadership(target.id);
    } catch (e) {
      if (this.#fatalIfBroken(e)) return;
      this.#warnOnce('role_handover', (e as Error).message);
    }
  }

  #propose(raw: RawNode, change: ConfChange, why: string): void {
    try {
      const r = raw.proposeConfChange(change);
      this.#log.info({ event: 'membership_change_proposed', change, index: r.index }, `${why} (index ${r.index})`);
    } catch (e) {
      if (this.#fatalIfBroken(e)) return;
      const code = (e as RaftError).code;
      if (code === 'conf_change_in_progress') this.dirty = true; // retried when the next entry commits
      if (code !== 'conf_change_in_progress' && code !== 'transfer_in_progress' && code !== 'not_leader') {
        this.#warnOnce(`member_${change.id}`, `cannot change ${this.nameOf(change.id)}'s membership record: ${(e as Error).message}`);
      }
    }
  }

  /**
   * When each follower was last caught up (the leader's view). A follower
   * that holds everything the leader had at the previous sample was caught
   * up then: lagMs is the age of what it misses (±one sample), also under a
   * steady stream of writes where it is never exactly at lastIndex.
   */
  trackCatchUp(st: ReturnType<RawNode['status']>, now: number): void {
    const prev = this.#catchUpSample;
    for (const pr of st.progress) {
      const meta = this.peers.get(pr.id);
      if (!meta) continue;
      if (pr.match >= st.lastIndex) meta.lastCaughtUpAt = now;
      else if (prev !== undefined && pr.match >= prev.lastIndex) meta.lastCaughtUpAt = Math.max(meta.lastCaughtUpAt, prev.at);
    }
    this.#catchUpSample = { at: now, lastIndex: st.lastIndex };
  }

  #refreshFenced(): void {
    const fenced = new Set<NodeId>();
    for (const [id, rec] of this.#records) {
      if (id === this.selfId || !isVoting(rec.role) || rec.incarnation === undefined) continue;
      const said = this.peers.get(id)?.announced?.incarnation;
      if (said !== undefined && said !== rec.incarnation) fenced.add(id);
    }
    for (const id of fenced) {
      if (!this.#fenced.has(id)) {
        this.#log.warn({ event: 'member_fenced', id, recorded: this.#records.get(id)?.incarnation, announced: this.peers.get(id)?.announced?.incarnation },
          `${this.nameOf(id)} came back with a new data dir: its votes and acknowledgements do not count until the leader records it as a learner and it has caught up`);
      }
    }
    this.#fenced = fenced;
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log.warn({ event: 'role_reconcile' }, message);
  }
}
