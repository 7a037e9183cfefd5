// Raft leadership for an external-shared cluster (`database.mode:
// "external-shared"` with `cluster.coordination: "raft"`, three or more
// voters): a small Raft group of the configured members elects who writes
// to the PostgreSQL log, and its log is the fencing-token counter
// (./lead-claims.ts). Design and the safety argument: ./README.md "Raft-led".
//
// The group is the node's own machinery, not a second Raft: the core
// (src/raft), the Replica loop (src/node/replica.ts), the WAL
// (`<dataDir>/lead-raft`), the peer transport with its authenticated
// handshake and TLS (src/transport; security.tls as configured, "auto"
// included), bootstrap.json and the member registry (identity, rejoin
// fencing, the leader's reconciliation). Only the state machine differs: the
// claimed tokens, not the KV (that lives in PostgreSQL).
//
// What ExternalNode consumes (the same surface as the Redis lease,
// src/coord/redis-lease.ts): current() leads only while this node is the
// Raft leader in the term its claim committed in (CheckQuorum makes a leader
// that lost its quorum step down within two election timeouts), with the
// claimed token as the term; holder() is the leader as its committed claim
// names it; stepDown(why) when the fence row holds a newer token: this claim
// is given up and, while the node still leads, a new one (above the row) is
// claimed a second later.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { LeaseHolder } from '../coord/index.js';
import type { Leadership, LeadershipState } from '../node/leadership.js';
import { NONE, RawNode, type NodeId } from '../raft/index.js';
import { WalStorage } from '../storage/index.js';
import { PeerTransport, loadClusterSecret } from '../transport/index.js';
import { clusterSettingsOf, raftConfigFor, tickMsFor, transportOptionsFor } from '../node/boot.js';
import { notLeader } from '../node/errors.js';
import { FEATURE_LEVEL } from '../node/features.js';
import { bootstrapAddresses, bootstrapMembership, loadOrCreateBootstrap, selfId } from '../node/members.js';
import { MemberRegistry } from '../node/registry.js';
import { REAL_CLOCK, Replica } from '../node/replica.js';
import { memberRole } from '../node/roles.js';
import { AutoTls } from '../node/tls-auto.js';
import { encodeClaim, TokenClaims, type Claim } from './lead-claims.js';

const CLAIM_TIMEOUT_MS = 5_000;
const RECONCILE_MS = 250;
/** After a step-down on the fence row's evidence, the next claim waits this long (a node that keeps losing does not spin). */
const RECLAIM_AFTER_MS = 1_000;

/** What ExternalNode asks of whatever leads it (the Redis lease, or this Raft group). */
export interface ExternalLeadership extends Leadership {
  start(): void | Promise<void>;
  stop(): Promise<void>;
  /** The leader as known here: this node while it leads, else the last seen. */
  holder(): LeaseHolder | undefined;
  /** Give up leading now: the fence row holds a newer token. */
  stepDown(why: string): void;
  /** Split-brain evidence seen by the leadership itself, for the status. */
  readonly warning: string | undefined;
  /** The highest fencing token seen. */
  readonly highestToken: number;
}

export interface RaftLeadOptions {
  readonly config: QuorateConfig;
  /** This node's logger (with its name). */
  readonly logger: Logger;
  /** The agent's logger, for the cluster CA's certificates (security.tls "auto"), which name the node themselves. */
  readonly rootLogger?: Logger;
  /** The fencing row's token in PostgreSQL now; throws when the database cannot be read (the claim waits for it). */
  readonly fenceFloor: () => Promise<number>;
  readonly onFatal: (e: Error) => void;
}

const noMetrics = { committed: () => undefined, failed: () => undefined, commitLatency: () => undefined, fsyncLatency: () => undefined };

export class RaftLead implements ExternalLeadership {
  readonly #o: RaftLeadOptions;
  readonly #log: Logger;
  readonly #id: NodeId;
  readonly #claims: TokenClaims;
  readonly #storage: WalStorage;
  readonly #transport: PeerTransport;
  readonly #registry: MemberRegistry;
  readonly #replica: Replica;
  readonly #autoTls: AutoTls | undefined;
  readonly #listeners = new Set<(s: LeadershipState) => void>();
  #state: LeadershipState = { leading: false, term: 0, quorum: false };
  /** This node's token and the Raft term its claim committed in (0: none). */
  #token = 0;
  #claimTerm = 0;
  /** The term a claim is being made for (one at a time). */
  #claiming: number | undefined;
  #reclaimAt = 0;
  #reconcileTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(o: RaftLeadOptions, parts: { id: NodeId; claims: TokenClaims; storage: WalStorage; raw: RawNode; members: ReadonlyMap<NodeId, string>; autoTls: AutoTls | undefined; secret: Uint8Array; incarnation: string; generation: number; lastSnapshot: ConstructorParameters<typeof Replica>[0]['lastSnapshot'] }) {
    this.#o = o;
    const { config } = o;
    this.#log = o.logger;
    this.#id = parts.id;
    this.#claims = parts.claims;
    this.#storage = parts.storage;
    this.#registry = new MemberRegistry({
      selfId: parts.id, self: { nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, role: memberRole(config.node.role), incarnation: parts.incarnation },
      members: parts.members, logger: this.#log, configuredRole: config.node.role, featureLevel: FEATURE_LEVEL, settings: clusterSettingsOf(config),
      // A broken invariant stops the node; an operating error (a proposal refused) is the caller's to handle.
      fatalIfBroken: (e) => this.#replica.fatalIfBroken(e),
    });
    this.#autoTls = parts.autoTls;
    const raw = parts.raw;
    const peerMap = this.#registry.peerAddresses();
    this.#transport = new PeerTransport({
      ...transportOptionsFor(config, { id: parts.id, incarnation: parts.incarnation, clusterSecret: parts.secret, featureLevel: FEATURE_LEVEL, logger: this.#log, peerHost: (peer) => peerMap.get(peer)?.host, autoTls: parts.autoTls }),
      snapshotSpoolDir: join(config.node.dataDir, 'lead-raft', 'snap'),
      generation: parts.generation,
      usePeriodKeys: () => true,
      ...this.#registry.transportHooks(),
      onPeerAck: (peer, info) => {
        this.#registry.hear(peer, info);
        this.#replica.peerConnected(peer);
        const known = info.knownIncarnation;
        if (known !== undefined && known !== parts.incarnation) this.#replica.run((r) => this.#registry.markRejoining(r, peer, known));
      },
      onMessages: (msgs) => this.#replica.receive(msgs),
      onPeerDisconnected: (peer, reason) => { if (reason === 'reset') this.#replica.peerReset(peer); },
      onSnapshot: (from, meta, source, msg) => this.#replica.receiveSnapshot(from, meta, source, msg, (chunks) => this.#claims.validate(chunks)),
      onPeerHello: (peer, info) => {
        this.#registry.hear(peer, info);
        this.#registry.announce(peer, { nodeName: info.nodeName, apiUrl: info.apiUrl === '' ? undefined : info.apiUrl, role: memberRole(info.role), incarnation: info.incarnation });
        this.#registry.queueReconcile(this.#replica);
      },
      isRemovedPeer: (peer) => this.#replica.core.membership().removed.includes(peer),
      onRemovedByPeer: (_peer, reason) => this.#log.error({ event: 'removed_by_peer', reason }, `a peer says this node was removed from the leader group (${reason})`),
      onSupersededByPeer: (_peer, reason) => this.#log.error({ event: 'superseded_by_peer', reason }, `a peer refused this node (${reason})`),
    });
    this.#replica = new Replica({
      raw, log: parts.storage, net: this.#transport, sm: parts.claims, clock: REAL_CLOCK, tickMs: tickMsFor(config), logger: this.#log,
      lastSnapshot: parts.lastSnapshot, metrics: noMetrics,
      hooks: {
        admit: (m) => this.#registry.admit(m),
        onSoftState: () => this.#evaluate(),
        afterReady: (rd) => {
          if (rd.snapshot || rd.entries.some((e) => e.type === 'conf')) {
            this.#registry.refresh(raw);
            this.#transport.setPeers(this.#registry.peerAddresses());
          }
          if (rd.softState?.role === 'leader' || rd.committedEntries.some((e) => e.type === 'conf')) this.#registry.dirty = true;
          if (this.#replica.soft.role === 'leader' && this.#registry.dirty && rd.committedEntries.length > 0) this.#registry.queueReconcile(this.#replica);
        },
        onConfApplied: (index, ce) => this.#log.info({ event: 'membership_applied', index, change: ce.change }, `leader group: membership change applied at index ${index}: ${ce.change.op} node ${ce.change.id}`),
        onFatal: (e) => o.onFatal(e),
        notLeader: () => notLeader(undefined, undefined),
        nameOf: (peer) => this.#registry.nameOf(peer),
      },
    });
    this.#registry.refresh(raw);
    this.#transport.setPeers(peerMap);
    parts.autoTls?.onMaterial((m) => this.#transport.setTlsMaterial(m));
  }

  /** Opens the group's WAL (`<dataDir>/lead-raft`) and bootstrap.json; start() joins the group. */
  static async open(o: RaftLeadOptions): Promise<RaftLead> {
    const { config, logger } = o;
    const dataDir = config.node.dataDir;
    await mkdir(dataDir, { recursive: true });
    const bootstrap = await loadOrCreateBootstrap(dataDir, config);
    const id = selfId(bootstrap, config);
    const secret = loadClusterSecret(config.security.clusterSecretFile);
    const claims = new TokenClaims();
    const { storage, state } = await WalStorage.open(join(dataDir, 'lead-raft'), { validateSnapshot: (chunks) => claims.validate(chunks) });
    for (const w of state.warnings) logger.warn({ event: 'storage_recovery' }, `leader group: ${w}`);
    if (state.snapshot) await claims.restore(state.openSnapshot());
    const snapshot = state.snapshot ?? { index: 0, term: 0, membership: bootstrapMembership(bootstrap) };
    // database.writeQuorum is not used in this mode (the group commits claims by majority).
    const { writeQuorum, ...rc } = raftConfigFor(config, id, tickMsFor(config), state.incarnation);
    void writeQuorum;
    const raw = new RawNode(rc, { hardState: state.hardState, snapshot, entries: state.entries, applied: snapshot.index });
    const autoTls = await AutoTls.forNode(config, bootstrap, id, secret, o.rootLogger ?? logger);
    return new RaftLead(o, { id, claims, storage, raw, members: bootstrapAddresses(bootstrap), autoTls, secret, incarnation: state.incarnation, generation: bootstrap.generation ?? 0, lastSnapshot: state.snapshot });
  }

  async start(): Promise<void> {
    await this.#transport.listen();
    this.#autoTls?.start();
    this.#replica.start();
    this.#reconcileTimer = setInterval(() => {
      if (this.#replica.soft.role === 'leader') this.#registry.queueReconcile(this.#replica);
      this.#evaluate();
    }, RECONCILE_MS);
    this.#reconcileTimer.unref();
    const st = this.#replica.core.status();
    this.#log.info({ event: 'lead_group_started', id: this.#id, term: st.term, claimedToken: this.#claims.token },
      `leader group: ${this.#o.config.node.nodeName} is member ${this.#id} of ${st.membership.members.length}; Raft term ${st.term}, highest fencing token claimed ${this.#claims.token}`);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#reconcileTimer) clearInterval(this.#reconcileTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#drop('node stopping', 'info');
    await this.#replica.stop();
    await this.#transport.close();
    this.#autoTls?.close();
    await this.#storage.close();
  }

  /** Leads while this node is the Raft leader in the term its claim committed in (asked at every write). */
  current(): LeadershipState {
    if (this.#state.leading && !this.#leadsIn(this.#claimTerm)) this.#drop(`this node is no longer the Raft leader of term ${this.#claimTerm} (a newer term began, or it lost its quorum)`, 'warn');
    return this.#state;
  }

  onChange(listener: (s: LeadershipState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  holder(): LeaseHolder | undefined {
    if (this.current().leading) return { nodeName: this.#o.config.node.nodeName, term: this.#token, apiUrl: this.#o.config.node.advertiseApiUrl };
    const lead = this.#replica.core.softState().lead;
    const c = this.#claims.last;
    if (lead === NONE || lead === this.#id || c === undefined || c.by !== lead || c.term !== this.raftTerm) return undefined;
    return { nodeName: c.nodeName, term: c.token, apiUrl: c.apiUrl };
  }

  stepDown(why: string): void {
    if (!this.#state.leading) return;
    this.#drop(why, 'error');
    this.#reclaimAt = performance.now() + RECLAIM_AFTER_MS;
    this.#retry(RECLAIM_AFTER_MS);
  }

  get warning(): string | undefined { return undefined; }
  /** This node's member id in the group (bootstrap.json). */
  get id(): NodeId { return this.#id; }
  get highestToken(): number { return this.#claims.token; }
  /** The Raft term this node is in (durable). */
  get raftTerm(): number { return this.#replica.core.status().term; }
  /** The members of the group, and how many of them this node hears (the leader's view; else itself and the leader). */
  get voters(): { total: number; reachable: number } {
    const st = this.#replica.core.status();
    const total = st.membership.members.filter((m) => m.role === 'voter').length;
    return { total, reachable: st.role === 'leader' ? st.reachableVoters : st.lead !== NONE ? 2 : 1 };
  }
  get fatal(): Error | undefined { return this.#replica.fatal; }

  /** The other members of the group as this node sees them: name, addresses, and whether the peer connection is up. */
  others(): { id: NodeId; nodeName: string; apiUrl: string | undefined; peerUrl: string; connected: boolean }[] {
    const stats = this.#transport.stats();
    return this.#replica.core.membership().members.filter((m) => m.id !== this.#id).map((m) => {
      const s = stats.get(m.id);
      return { id: m.id, nodeName: this.#registry.nameOf(m.id), apiUrl: this.#registry.record(m.id)?.apiUrl, peerUrl: this.#registry.peers.get(m.id)?.peerUrl ?? '', connected: s !== undefined && (s.connected || s.inboundConnected) };
    });
  }

  // ------------------------------------------------------------ claims

  #leadsIn(term: number): boolean {
    const st = this.#replica.core.status();
    return !this.#stopped && this.#replica.fatal === undefined && st.role === 'leader' && st.term === term;
  }

  /** After every Ready that changed leadership, and periodically: drop a stale claim, start a claim for a new term. */
  #evaluate(): void {
    this.current();
    const st = this.#replica.core.status();
    if (this.#stopped || st.role !== 'leader' || this.#state.leading || this.#claiming === st.term) return;
    if (performance.now() < this.#reclaimAt) return;
    void this.#claim(st.term);
  }

  async #claim(term: number): Promise<void> {
    this.#claiming = term;
    try {
      for (let attempt = 0; this.#leadsIn(term); attempt++) {
        const backoff = () => new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(attempt, 5))));
        let floor: number;
        try {
          floor = await this.#o.fenceFloor();
        } catch (e) {
          if (attempt === 0) this.#log.error({ event: 'claim_waiting', term, err: (e as Error).message }, `leader group: ${this.#o.config.node.nodeName} leads Raft term ${term} but cannot read the fencing row in PostgreSQL (${(e as Error).message}); no token is claimed and no write accepted until it can`);
          await backoff();
          continue;
        }
        if (!this.#leadsIn(term)) return;
        const { nodeName, advertiseApiUrl: apiUrl } = this.#o.config.node;
        let applied: unknown;
        try {
          applied = ((await this.#replica.propose(encodeClaim({ floor, term, by: this.#id, nodeName, apiUrl }), CLAIM_TIMEOUT_MS)) as { data?: unknown }).data;
        } catch (e) {
          if (this.#leadsIn(term)) {
            this.#log.warn({ event: 'claim_failed', term, err: (e as Error).message }, `leader group: the token claim of term ${term} did not commit (${(e as Error).message}); retrying`);
            await backoff();
          }
          continue;
        }
        // Committed and applied here: the token is ours while this node leads in `term` (and no later claim of ours replaced it).
        const c = applied as Claim | undefined;
        if (c === undefined || c.by !== this.#id || c.term !== term || this.#claims.last !== c || !this.#leadsIn(term)) continue;
        this.#token = c.token;
        this.#claimTerm = term;
        this.#set({ leading: true, term: c.token, quorum: true });
        this.#log.info({ event: 'token_claimed', term, fencingToken: c.token, floor },
          `leader group: ${nodeName} leads Raft term ${term} and claimed fencing token ${c.token} (above the fencing row's ${floor} and every earlier claim)`);
        return;
      }
    } finally {
      if (this.#claiming === term) this.#claiming = undefined;
    }
  }

  #retry(ms: number): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#evaluate(), ms + 1);
    this.#retryTimer.unref();
  }

  #drop(why: string, level: 'info' | 'warn' | 'error'): void {
    if (!this.#state.leading) return;
    this.#set({ leading: false, term: this.#token, quorum: false });
    this.#claimTerm = 0;
    this.#log[level]({ event: 'lease_lost', fencingToken: this.#token, reason: why }, `${this.#o.config.node.nodeName} stepped down as leader (fencing token ${this.#token}): ${why}`);
  }

  #set(s: LeadershipState): void {
    this.#state = s;
    for (const l of this.#listeners) l(s);
  }
}
