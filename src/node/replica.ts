// The Replica: one Raft replica's loop, in the order of the core's contract
// (persist → send → apply → advance), built from ports (a log store, a peer
// network, a state machine, a clock) so that what it runs on can change
// without the loop changing. It owns the applied state, the proposal and
// read waiters (./waiters.ts), and snapshots (take, send, receive, install;
// ./snapshots.ts). Everything that
// touches the core runs inside #run(), one Ready at a time; inputs that arrive
// while a Ready is being persisted queue up and go into the next one, so one
// fsync covers every proposal that arrived meanwhile (group commit).
//
// What is not the replica's (member identity, status, leader-only work,
// metrics presentation) lives with the node (./node.ts) and plugs in through
// ReplicaHooks.
import type { Logger } from 'pino';
import { NONE, RaftError, RawNode, decodeConfEntry, type ConfEntry, type Entry, type Message, type NodeId, type Ready, type SnapshotMeta, type SoftState } from '../raft/index.js';
import type { ApplyResult } from '../state/index.js';
import { NodeError } from './errors.js';
import type { Clock, LogStore, PeerNetwork, ReceivedSnapshotSource, SnapshotChunks, StateMachine } from './ports.js';
import { Snapshots } from './snapshots.js';
import { Waiters } from './waiters.js';

export { REAL_CLOCK, type Clock, type LogStore, type PeerNetwork, type ReceivedSnapshotSource, type SnapshotChunks, type SnapshotSource, type StateMachine } from './ports.js';

/** What the node plugs into the loop. Every hook runs inside the loop. */
export interface ReplicaHooks {
  /** May this message reach the core? (e.g. fenced peers' acknowledgements do not) */
  admit(m: Message): boolean;
  /** Leadership or the known leader changed (after advance). */
  onSoftState(prev: SoftState, next: SoftState): void;
  /** A Ready was handled (after advance): membership may have changed. */
  afterReady(rd: Ready): void;
  /** A membership entry was applied. */
  onConfApplied(index: number, ce: ConfEntry): void;
  /** This replica cannot go on (a broken invariant, a failed fsync): stop the process. */
  onFatal(e: Error): void;
  /** A NotLeader refusal, with whatever the node knows of the leader. */
  notLeader(): NodeError;
  nameOf(id: NodeId): string;
}

export interface ReplicaMetrics {
  committed(): void;
  failed(reason: string): void;
  commitLatency(seconds: number): void;
  fsyncLatency(seconds: number): void;
  /** A snapshot written from the applied state (take) or installed from a leader (install): duration and size. */
  snapshot?(kind: 'take' | 'install', seconds: number, bytes: number): void;
}

/** Bounds on client work waiting in this replica (beyond them: 429 overloaded). */
const MAX_INBOX_OPS = 50_000;
const MAX_PENDING_READS = 20_000;
/**
 * Group commit's bound: proposal bytes taken into one Ready. The WAL's fsync
 * runs off the event loop, so everything that arrives meanwhile waits in the
 * inbox and goes into the next Ready (one fsync for all of it); beyond this
 * bound the rest waits for the Ready after, so one batch's write and fsync,
 * and the latency of the proposals at its head, stay bounded.
 */
const BATCH_BYTES_MAX = 1024 * 1024;
/** Bound on the append data held per peer while its snapshot is verified (#holdAppends). */
const HELD_BYTES_MAX = 8 * 1024 * 1024;
/** A long batch of committed entries (a restart's replay, a follower catching up) lets the event loop run this often: peers connect and health checks answer meanwhile. */
const APPLY_SLICE_ENTRIES = 1024;

interface Held {
  readonly msgs: Message[];
  bytes: number;
}

export interface ReplicaOptions {
  readonly raw: RawNode;
  readonly log: LogStore;
  readonly net: PeerNetwork;
  readonly sm: StateMachine;
  readonly clock: Clock;
  readonly tickMs: number;
  readonly logger: Logger;
  readonly metrics: ReplicaMetrics;
  readonly hooks: ReplicaHooks;
  /** The newest durable snapshot at start (served to followers that need it). */
  readonly lastSnapshot: SnapshotMeta | undefined;
}

export class Replica {
  readonly #raw: RawNode;
  readonly #store: LogStore;
  readonly #net: PeerNetwork;
  readonly #sm: StateMachine;
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #log: Logger;
  readonly #metrics: ReplicaMetrics;
  readonly #hooks: ReplicaHooks;

  #inbox: Array<() => void> = [];
  /** Client proposals in the inbox, not yet given to the core (quorate_proposals_pending). */
  #queuedProposals = 0;
  /** Peers whose snapshot is being verified, with the appends they sent meanwhile (#holdAppends). */
  readonly #held = new Map<NodeId, Held>();
  /** Proposal bytes taken since the inbox was last drained; set once a proposal was deferred to the next Ready. */
  #batchBytes = 0;
  #batchFull = false;
  #running = false;
  #stopped = false;
  #fatal: Error | undefined;
  #stopTick: (() => void) | undefined;
  readonly #waiters: Waiters;
  #soft: SoftState = { lead: NONE, role: 'follower' };
  #term: number;
  #durableTerm: number;
  #durableVote: NodeId;
  readonly #snapshots: Snapshots;

  constructor(o: ReplicaOptions) {
    this.#raw = o.raw;
    this.#store = o.log;
    this.#net = o.net;
    this.#sm = o.sm;
    this.#clock = o.clock;
    this.#tickMs = o.tickMs;
    this.#log = o.logger;
    this.#metrics = o.metrics;
    this.#hooks = o.hooks;
    this.#waiters = new Waiters(o.clock, o.metrics);
    this.#snapshots = new Snapshots({
      raw: o.raw, store: o.log, net: o.net, sm: o.sm, logger: o.logger, last: o.lastSnapshot,
      observe: (kind, seconds, bytes) => this.#metrics.snapshot?.(kind, seconds, bytes),
      host: { run: (op) => this.run(op), die: (e) => this.die(e), fatalIfBroken: (e) => this.fatalIfBroken(e), nameOf: (id) => this.#hooks.nameOf(id) },
    });
    const st = o.raw.status();
    this.#term = st.term;
    this.#durableTerm = st.term;
    this.#durableVote = st.vote;
  }

  /** Start ticking and process whatever is pending. */
  start(): void {
    this.#stopTick = this.#clock.every(this.#tickMs, () => this.run(() => this.#raw.tick()));
    this.run(() => undefined);
  }

  /** Stop ticking, let the Ready being persisted finish, settle every waiter. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopTick?.();
    for (let i = 0; i < 200 && this.#running; i++) await new Promise<void>((r) => this.#clock.after(5, r));
    this.#waiters.rejectProposals(() => new NodeError('commit_unknown', 'the node is shutting down; the write may or may not have been applied'));
    this.#waiters.rejectReads(() => new NodeError('shutting_down', 'the node is shutting down; retry on another node'));
  }

  /** The core, for reads of its state (status, membership); never step or propose on it directly: use run(). */
  get core(): Pick<RawNode, 'status' | 'softState' | 'membership' | 'snapshotMeta'> {
    return this.#raw;
  }

  /** The durable term (for log lines and fencing tokens). */
  get term(): number {
    return this.#term;
  }

  get soft(): SoftState {
    return this.#soft;
  }

  get fatal(): Error | undefined {
    return this.#fatal;
  }

  get snapshotIndex(): number {
    return this.#snapshots.index;
  }

  /** Run `op` inside the loop, where it may use the core (`raw`). */
  run(op: (raw: RawNode) => void): void {
    if (this.#stopped) return;
    this.#inbox.push(() => op(this.#raw));
    if (!this.#running) {
      this.#running = true;
      this.#clock.soon(() => void this.#loop());
    }
  }

  // ------------------------------------------------------------ inputs

  /** Messages from a peer (already validated by the transport). */
  receive(msgs: Message[]): void {
    const now = this.#held.size > 0 ? this.#holdAppends(msgs) : msgs;
    if (now.length > 0) this.run(() => this.#stepAll(now));
  }

  /**
   * Appends from a peer whose snapshot is being verified are held and stepped
   * right after it. The transport acknowledges a snapshot as soon as it is
   * whole, so the leader probes while we still verify it; stepped before the
   * snapshot, its probe would be refused and it would send the whole snapshot
   * again. Beyond HELD_BYTES_MAX an append is dropped, as a lost message would be.
   */
  #holdAppends(msgs: Message[]): Message[] {
    const out: Message[] = [];
    for (const m of msgs) {
      const h = m.type === 'app' ? this.#held.get(m.from) : undefined;
      if (h === undefined) {
        out.push(m);
        continue;
      }
      let bytes = 0;
      for (const e of m.entries) bytes += e.data.length;
      if (h.bytes + bytes > HELD_BYTES_MAX) continue;
      h.msgs.push(m);
      h.bytes += bytes;
    }
    return out;
  }

  /**
   * A snapshot stream arrived whole and checksummed, in a file (`source`).
   * Its contents are validated in full, streaming (`verify`), before the core
   * hears of it: one that does not decode is dropped (its file removed) and
   * changes nothing; the leader sends it again.
   */
  receiveSnapshot(from: NodeId, meta: SnapshotMeta, source: ReceivedSnapshotSource, msg: Message, verify: (chunks: SnapshotChunks) => Promise<void>): void {
    const held: Held = { msgs: [], bytes: 0 };
    this.#held.set(from, held);
    const release = (): Message[] => {
      if (this.#held.get(from) === held) this.#held.delete(from);
      return held.msgs;
    };
    verify(source.read()).then(
      () => {
        this.#snapshots.received(meta, source);
        const after = release();
        this.run(() => this.#stepAll([msg, ...after]));
      },
      (e: unknown) => {
        const after = release();
        if (after.length > 0) this.run(() => this.#stepAll(after));
        void source.discard().catch(() => undefined);
        this.#log.error({ event: 'snapshot_rejected', peer: from, index: meta.index, term: meta.term, bytes: source.bytes, err: (e as Error).message },
          `rejected the snapshot at index ${meta.index} from ${this.#hooks.nameOf(from)}: its contents do not decode (${(e as Error).message}); nothing was changed`);
      },
    );
  }

  /** The connection to `peer` was reset (its process likely died): if it led us, pre-vote now. */
  peerReset(peer: NodeId): void {
    this.run((raw) => {
      if (this.#soft.lead === peer && this.#soft.role === 'follower') {
        this.#log.info({ event: 'leader_connection_reset', peer }, `connection to leader ${this.#hooks.nameOf(peer)} was reset; starting a pre-vote now`);
        raw.leaderUnreachable();
      }
    });
  }

  /** The transport's connection to `peer` is (re)established: a leader heartbeats it at once (RawNode.peerConnected). */
  peerConnected(peer: NodeId): void {
    this.run((raw) => raw.peerConnected(peer));
  }

  propose(data: Uint8Array, timeoutMs: number): Promise<ApplyResult> {
    const busy = this.#overloaded();
    if (busy) {
      this.#metrics.failed('overloaded');
      return Promise.reject(busy);
    }
    return new Promise<ApplyResult>((resolve, reject) => {
      const op = (raw: RawNode): void => {
        if (this.#deferToNextBatch(data.length)) {
          this.#inbox.push(() => op(raw));
          return;
        }
        this.#queuedProposals--;
        const fail = this.#unavailable();
        if (fail) return reject(fail);
        let r: { index: number; term: number };
        try {
          r = raw.propose(data);
        } catch (e) {
          if (this.fatalIfBroken(e)) return reject(new NodeError('commit_unknown', `the node stopped on an internal error (${(e as Error).message}); retry on another node`));
          this.#metrics.failed((e as RaftError).code ?? 'error');
          return reject(this.mapRaftError(e));
        }
        this.#waiters.addProposal(r.index, r.term, timeoutMs, resolve, reject);
      };
      if (this.#stopped) return;
      this.#queuedProposals++;
      this.run(op);
    });
  }

  /** Client proposals waiting: in the inbox (not yet given to the core), and proposed but not yet applied. */
  get pendingProposals(): number {
    return this.#queuedProposals + this.#waiters.pendingProposals;
  }

  /** Group commit's byte bound (BATCH_BYTES_MAX): once one proposal is deferred, the later ones are too (their order is kept). */
  #deferToNextBatch(bytes: number): boolean {
    if (!this.#batchFull && (this.#batchBytes === 0 || this.#batchBytes + bytes <= BATCH_BYTES_MAX)) {
      this.#batchBytes += bytes;
      return false;
    }
    this.#batchFull = true;
    return true;
  }

  readBarrier(timeoutMs: number): Promise<void> {
    const busy = this.#overloaded();
    if (busy) return Promise.reject(busy);
    return new Promise<void>((resolve, reject) => {
      this.run((raw) => {
        const fail = this.#unavailable();
        if (fail) return reject(fail);
        const ctx = this.#waiters.nextReadCtx();
        try {
          raw.readIndex(ctx);
        } catch (e) {
          if (this.fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message}); retry on another node`));
          return reject(this.mapRaftError(e));
        }
        this.#waiters.addRead(ctx, timeoutMs, resolve, reject);
      });
    });
  }

  /** Take a snapshot of the applied state now (and compact the log). */
  snapshotNow(): Promise<{ index: number }> {
    return new Promise((resolve, reject) => this.run(() => void this.#snapshots.take().then(resolve, reject)));
  }

  // ------------------------------------------------------------ the loop

  async #loop(): Promise<void> {
    try {
      for (;;) {
        if (this.#fatal) return;
        const ops = this.#inbox;
        this.#inbox = [];
        this.#batchBytes = 0;
        this.#batchFull = false;
        for (const op of ops) op();
        if (!this.#raw.hasReady()) {
          if (this.#inbox.length === 0) return;
          continue;
        }
        await this.#handleReady(this.#raw.ready());
      }
    } catch (e) {
      this.die(e as Error);
    } finally {
      this.#running = false;
      if (this.#inbox.length > 0 && !this.#fatal && !this.#stopped) {
        this.#running = true;
        this.#clock.soon(() => void this.#loop());
      }
    }
  }

  async #handleReady(rd: Ready): Promise<void> {
    // A leader whose term and vote are already durable may send its appends
    // before its own fsync (as etcd does): followers persist before they ack,
    // and the core counts the leader's own entries only after advance(), that
    // is after this fsync. Anything else (votes, acks, a new term) waits.
    const role = rd.softState?.role ?? this.#soft.role;
    const early = role === 'leader' && !rd.snapshot && (!rd.hardState || (rd.hardState.term === this.#durableTerm && rd.hardState.vote === this.#durableVote));
    if (early) this.#send(rd.messages);
    // 1. Persist.
    if (rd.snapshot) await this.#snapshots.install(rd.snapshot);
    if (rd.entries.length > 0 || rd.hardState || rd.mustSync) {
      const t0 = performance.now();
      await this.#store.save(rd.hardState, rd.entries, rd.mustSync);
      if (rd.mustSync) this.#metrics.fsyncLatency((performance.now() - t0) / 1000);
    }
    if (rd.hardState) {
      this.#durableTerm = rd.hardState.term;
      this.#durableVote = rd.hardState.vote;
      this.#term = rd.hardState.term;
    }
    // 2. Send.
    if (!early) this.#send(rd.messages);
    // 3. Apply.
    let slice = 0;
    for (const e of rd.committedEntries) {
      this.#apply(e);
      // An entry whose effect must be complete before the next one applies (a backup restored through the log).
      const hold = this.#sm.takeHold?.();
      if (hold !== undefined) await hold;
      if (++slice % APPLY_SLICE_ENTRIES === 0) await new Promise<void>((resolve) => this.#clock.soon(resolve));
    }
    this.#waiters.readsReady(rd.readStates, rd.droppedReads, this.#sm.appliedIndex);
    // 4. Advance.
    this.#raw.advance();
    if (rd.softState) {
      const prev = this.#soft;
      this.#soft = rd.softState;
      this.#hooks.onSoftState(prev, rd.softState);
    }
    this.#hooks.afterReady(rd);
    if (rd.snapshotRequest !== undefined) this.#snapshots.request();
  }

  #send(messages: readonly Message[]): void {
    const plain: Message[] = [];
    for (const m of messages) {
      if (m.type === 'snap') this.#snapshots.send(m);
      else plain.push(m);
    }
    if (plain.length > 0) this.#net.send(plain);
  }

  #apply(e: Entry): void {
    let result: ApplyResult | Promise<ApplyResult> | undefined;
    if (e.type === 'conf') {
      this.#hooks.onConfApplied(e.index, decodeConfEntry(e.data));
      // Membership entries hold nothing for any state machine: only the applied index moves.
      this.#sm.markApplied(e.index);
    } else {
      result = this.#sm.apply(e.index, e.data);
      // Applied off the loop: a rejection is a non-deterministic failure (I/O, disk full): stop.
      if (result instanceof Promise) result.catch((err: unknown) => this.die(err instanceof Error ? err : new Error(String(err))));
    }
    this.#waiters.applied(e, result);
  }

  #stepAll(msgs: Message[]): void {
    for (const m of msgs) {
      if (!this.#hooks.admit(m)) continue;
      try {
        this.#raw.step(m);
      } catch (e) {
        if (e instanceof RaftError && e.code !== 'invariant_violation') {
          this.#log.warn({ event: 'step_rejected', from: m.from, type: m.type, err: e.message }, `message from peer ${m.from} rejected: ${e.message}`);
        } else throw e;
      }
    }
  }

  // ------------------------------------------------------------ failure

  /** Stop serving for good: every waiter settles, the node's fatal path runs. */
  die(e: Error): void {
    if (this.#fatal) return;
    this.#fatal = e;
    this.#log.fatal({ event: 'node_failed', err: e.message, stack: e.stack }, `node stopped serving: ${e.message}`);
    this.#waiters.rejectProposals(() => new NodeError('commit_unknown', `the node failed (${e.message}); the write may or may not have been applied`));
    // A broken invariant or a failed fsync: this process must not go on.
    this.#hooks.onFatal(e);
  }

  /**
   * A broken invariant in the core (or anything the core throws that is not
   * one of its documented refusals) means this process can no longer be
   * trusted: stop it through the fatal path. Returns true when it did.
   */
  fatalIfBroken(e: unknown): boolean {
    if (e instanceof RaftError && e.code !== 'invariant_violation') return false;
    this.die(e instanceof Error ? e : new Error(String(e)));
    return true;
  }

  /** A core refusal as the node error the API maps to HTTP. */
  mapRaftError(e: unknown): Error {
    if (!(e instanceof RaftError)) return e as Error;
    switch (e.code) {
      case 'not_leader':
        return this.#hooks.notLeader();
      case 'overloaded':
        return new NodeError('overloaded', e.message, { retryAfterMs: 100 });
      case 'entry_too_large':
      case 'invalid_transfer':
      case 'transfer_in_progress':
      case 'conf_change_in_progress':
      case 'invalid_conf_change':
      case 'proposal_dropped':
        return new NodeError(e.code, e.message);
      default:
        // invariant_violation is fatal (fatalIfBroken) and never reaches a
        // client as such; anything else passes through as an internal error.
        return e;
    }
  }

  /** Client work beyond these bounds is refused at once (429, retry) rather than queued without limit. */
  #overloaded(): NodeError | undefined {
    if (this.#inbox.length >= MAX_INBOX_OPS) {
      return new NodeError('overloaded', `this node has ${this.#inbox.length} operations waiting for its loop (limit ${MAX_INBOX_OPS}); retry shortly`, { retryAfterMs: 100 });
    }
    if (this.#waiters.pendingReads >= MAX_PENDING_READS) {
      return new NodeError('overloaded', `this node has ${this.#waiters.pendingReads} linearizable reads waiting (limit ${MAX_PENDING_READS}); retry shortly, or read with consistency=stale`, { retryAfterMs: 100 });
    }
    return undefined;
  }

  #unavailable(): NodeError | undefined {
    if (this.#fatal) return new NodeError('storage_failed', `this node's storage failed (${this.#fatal.message}); restart it`);
    if (this.#stopped) return new NodeError('shutting_down', 'the node is shutting down; retry on another node');
    return undefined;
  }
}
