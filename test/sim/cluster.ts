// The deterministic cluster simulator (TigerBeetle's VOPR idea): N real
// RawNodes in one process, virtual time, one seed driving every choice —
// network, disk, faults, clients. Oracles run after every step; at the end
// the client history is checked for linearizability and the healed cluster
// for liveness and convergence. Same seed => same trace, bit for bit.
import { RawNode } from '../../src/raft/index.js';
import { NotLeader, RaftError } from '../../src/raft/errors.js';
import { SeededRandom } from '../../src/raft/prng.js';
import type { ConfChange, Entry, Membership, Message, MessageType, NodeId, RaftConfig, RaftRole, ReadState, Ready, TestMutation } from '../../src/raft/types.js';
import { SimDisk } from './disk.js';
import { EventQueue } from './heap.js';
import { KvMachine, encodeCommand, entryHash, mix, type Command } from './kv.js';
import { checkHistory, formatHistory, type HistoryEntry, type KvOp, type KvOutput } from './linearizability.js';
import { LogView } from './logview.js';

export type SimMutation = TestMutation | 'ackBeforePersist';
export const SIM_MUTATIONS: readonly SimMutation[] = ['voteWithoutLogCheck', 'commitPreviousTermByCounting', 'ignoreCommitQuorum', 'ackBeforePersist'];

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly mutation?: SimMutation;
  /** Print every event as it happens. */
  readonly trace?: boolean;
  /** Virtual ms of faults before everything heals. */
  readonly faultMs?: number;
  /** Virtual ms after healing by which a leader must exist and every client must complete an op. */
  readonly livenessMs?: number;
  /** Virtual ms after the clients stop by which every member must converge. */
  readonly convergeMs?: number;
  /** Steps (events) allowed before the run is declared a runaway (a message storm or livelock); default 500k, ~50x a normal seed. */
  readonly maxSteps?: number;
  readonly log?: (line: string) => void;
}

export interface Violation {
  readonly oracle: string;
  readonly message: string;
  readonly seed: number;
  readonly nodes: number;
  readonly mutation: SimMutation | undefined;
  readonly atMs: number;
  readonly step: number;
  readonly replay: string;
  readonly trace: readonly string[];
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly mutation: SimMutation | undefined;
  readonly steps: number;
  readonly virtualMs: number;
  readonly faults: Readonly<Record<string, number>>;
  readonly stats: Readonly<Record<string, number>>;
  readonly opsChecked: number;
  readonly indeterminateOps: number;
  readonly linearizability: string;
  readonly violation: Violation | undefined;
  readonly traceHash: string;
  readonly wallMs: number;
}

export function replayCommand(seed: number, nodes: number, mutation?: SimMutation): string {
  return `npm run sim -- --seed ${seed} --nodes ${nodes}${mutation ? ` --mutation ${mutation}` : ''} --trace`;
}

class SimViolation extends Error {
  readonly oracle: string;
  constructor(oracle: string, message: string) {
    super(message);
    this.oracle = oracle;
  }
}

const TICK_MS = 10;
const ELECTION_TICKS = 10;
const HEARTBEAT_TICKS = 2;
const CLIENT_TIMEOUT_MS = 1500;
const MSG_TYPES: readonly MessageType[] = ['app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow'];
const ROLES: readonly RaftRole[] = ['follower', 'preCandidate', 'candidate', 'leader'];

const posKey = (index: number, term: number): number => index * 1048576 + term;

interface SimNode {
  readonly id: NodeId;
  raft: RawNode | null;
  state: 'up' | 'down' | 'gone';
  pausedUntil: number;
  inc: number;
  readonly disk: SimDisk;
  sm: KvMachine;
  busy: boolean;
  readonly log: LogView;
  /** Snapshot bytes this node holds, by posKey(index, term). */
  snaps: Map<number, Uint8Array>;
  readonly incoming: Map<number, Uint8Array>;
  readonly proposals: Map<number, number>;
  /** ReadIndex ctx -> the client op (client id, op seq) that asked. */
  readonly reads: Map<number, { cid: number; seq: number }>;
  readWaiting: ReadState[];
  /** Inputs that arrived while the core was between ready() and advance() (the loop was blocked on fsync). */
  inbox: (() => void)[];
  /** Fault injection: crash right after persisting the current Ready, before sending its messages. */
  crashBeforeSend: boolean;
  /** Term and vote as last fsynced: a leader may send before its fsync only when these did not change (as src/node does). */
  durableTerm: number;
  durableVote: NodeId;
  /** This Ready's messages already went out before its fsync. */
  sentEarly: boolean;
  role: RaftRole;
  term: number;
  commit: number;
  readonly tickMs: number;
  readonly rng: SeededRandom;
}

interface PendingOp {
  readonly seq: number;
  readonly op: KvOp;
  readonly invokeAt: number;
  readonly cmdId: number;
  proposed: boolean;
}

interface SimClient {
  readonly id: number;
  guess: NodeId;
  op: PendingOp | null;
  seq: number;
  readonly lastSeen: Map<string, string | null>;
  /** Completed (determinate) an op invoked after the heal. */
  liveAfterHeal: boolean;
}

interface Weather {
  drop: number;
  dup: number;
  delayMaxMs: number;
}

const CALM: Weather = { drop: 0, dup: 0, delayMaxMs: 5 };

const FAULT_KINDS = ['crash', 'powerLoss', 'pause', 'partition', 'heal', 'weather', 'membership', 'transfer', 'burst', 'quiet'] as const;
type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * Swarm testing (Groce et al.): each seed draws its own fault mix and sizing,
 * some fault kinds switched off entirely, so different seeds stress different
 * corners instead of all averaging to the same weather.
 */
export interface SimProfile {
  readonly weights: Readonly<Record<FaultKind, number>>;
  readonly faultGapMs: number;
  readonly diskMaxMs: number;
  readonly maxMsgBytes: number;
  readonly maxInflightMsgs: number;
  readonly snapshotEntries: number;
  readonly trailingEntries: number;
  /** On a new leader: chance to cut it down (crash or isolate) within a few ms — short reigns, divergent tails (Figure 8). */
  readonly leaderKill: number;
  /** On a leader's commit advancing: chance to crash it at once, before it tells anyone. */
  readonly killOnCommit: number;
}

function drawProfile(r: SeededRandom): SimProfile {
  const w = (base: number): number => (r.chance(0.2) ? 0 : base * (0.25 + r.next()));
  if (r.chance(0.3)) {
    // "Figure 8" weather: leaders that reign for a few ms, each leaving a
    // divergent uncommitted tail, replicated in small chunks, while nodes
    // crash and return quickly. This is what old-term commit bugs need.
    return {
      weights: { crash: 10, powerLoss: 0, pause: 3, partition: 6, heal: 6, weather: 0, membership: 0, transfer: 4, burst: 12, quiet: 4 },
      faultGapMs: 100,
      diskMaxMs: 3,
      maxMsgBytes: 256,
      maxInflightMsgs: [2, 8][r.int(2)]!,
      snapshotEntries: 400,
      trailingEntries: 50,
      leaderKill: 0.5 + 0.4 * r.next(),
      killOnCommit: [0.1, 0.3][r.int(2)]!,
    };
  }
  return {
    weights: {
      crash: w(16),
      powerLoss: w(6),
      pause: w(10),
      partition: w(20),
      heal: 4 + w(8),
      weather: w(10),
      membership: w(15),
      transfer: w(8),
      burst: w(10),
      quiet: w(7),
    },
    faultGapMs: [60, 150, 300][r.int(3)]!,
    diskMaxMs: [3, 8, 25][r.int(3)]!,
    maxMsgBytes: [256, 1024, 8192][r.int(3)]!,
    maxInflightMsgs: [2, 8, 64][r.int(3)]!,
    snapshotEntries: [15, 40, 400][r.int(3)]!,
    trailingEntries: [0, 8, 50][r.int(3)]!,
    leaderKill: [0, 0.2, 0.6][r.int(3)]!,
    killOnCommit: [0, 0, 0.02][r.int(3)]!,
  };
}

export class Simulation {
  readonly opts: SimOptions;
  readonly seed: number;
  readonly mutation: SimMutation | undefined;
  readonly profile: SimProfile;
  now = 0;
  steps = 0;
  readonly #q = new EventQueue();
  readonly #netRng: SeededRandom;
  readonly #faultRng: SeededRandom;
  readonly #clientRng: SeededRandom;
  readonly #diskRng: SeededRandom;
  readonly #nodeRng: SeededRandom;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly #clients: SimClient[] = [];
  readonly #keys: string[] = [];
  readonly history: HistoryEntry[] = [];
  readonly faults: Record<string, number> = {};
  /** Things seen, not injected (e.g. a leader committing an older-term entry: only the mutation does that). */
  readonly stats: Record<string, number> = {};
  readonly #blocked = new Set<number>();
  #weather: Weather = { ...CALM };
  #nextId: NodeId;
  #nextCmd = 1;
  #nextCtx = 1;
  readonly #bootstrap: Membership;
  readonly #bootstrapBytes: Uint8Array;
  readonly #faultMs: number;
  readonly #livenessMs: number;
  readonly #convergeMs: number;
  readonly #maxSteps: number;
  #phase: 'faults' | 'liveness' | 'drain' | 'converge' | 'done' = 'faults';
  #healedAt = 0;
  #phaseDeadline = 0;
  readonly #removedIds = new Set<NodeId>();
  #traceHash = 0x811c9dc5;
  readonly #ring: string[] = [];
  #ringPos = 0;
  // Oracle state.
  readonly #leaderOfTerm = new Map<number, NodeId>();
  readonly #chainAt = new Map<number, number>();
  readonly #committedHash: number[] = [];
  #maxCommitted = 0;
  readonly #checkpoints: { index: number; term: number }[] = [];
  readonly #appliedAt = new Map<number, number>();
  readonly #digestAt = new Map<number, number>();

  constructor(opts: SimOptions) {
    if (![3, 5, 7].includes(opts.nodes) && !(opts.nodes >= 1 && opts.nodes <= 9)) throw new Error(`--nodes must be 1..9, got ${opts.nodes}`);
    this.opts = opts;
    this.seed = opts.seed >>> 0;
    this.mutation = opts.mutation;
    const root = new SeededRandom(this.seed);
    this.#netRng = root.fork();
    this.#faultRng = root.fork();
    this.#clientRng = root.fork();
    this.#diskRng = root.fork();
    this.#nodeRng = root.fork();
    this.profile = drawProfile(root.fork());
    this.#faultMs = opts.faultMs ?? 6000;
    this.#livenessMs = opts.livenessMs ?? 8000;
    this.#convergeMs = opts.convergeMs ?? 5000;
    this.#maxSteps = opts.maxSteps ?? 500_000;
    const ids = Array.from({ length: opts.nodes }, (_, i) => i + 1);
    this.#nextId = opts.nodes + 1;
    this.#bootstrap = { members: ids.map((id) => ({ id, role: 'voter' as const })), removed: [] };
    this.#bootstrapBytes = new KvMachine(this.#bootstrap).snapshotBytes();
    this.#chainAt.set(posKey(0, 0), 0);
    for (const id of ids) this.#addNode(id);
    const nKeys = 3 + this.#clientRng.int(3);
    for (let i = 0; i < nKeys; i++) this.#keys.push(`k${i}`);
    const nClients = 3 + this.#clientRng.int(3);
    for (let i = 1; i <= nClients; i++) {
      const c: SimClient = { id: i, guess: 1 + this.#clientRng.int(opts.nodes), op: null, seq: 0, lastSeen: new Map(), liveAfterHeal: false };
      this.#clients.push(c);
      this.#at(this.#clientRng.int(200), () => this.#issue(c));
    }
    this.#at(100 + this.#faultRng.int(300), () => this.#fault());
    this.#at(this.#faultMs, () => this.#heal());
  }

  // ---------------------------------------------------------------- events

  #at(at: number, run: () => void): void {
    this.#q.push(Math.max(at, this.now), run);
  }

  #trace(kind: string, ...xs: number[]): void {
    let h = this.#traceHash;
    for (let i = 0; i < kind.length; i++) h = Math.imul(h ^ kind.charCodeAt(i), 0x01000193) >>> 0;
    this.#traceHash = mix(h, this.now, ...xs);
    const line = `${this.now}ms #${this.steps} ${kind} ${xs.join(' ')}`;
    if (this.#ring.length < 80) this.#ring.push(line);
    else this.#ring[this.#ringPos++ % 80] = line;
    if (this.opts.trace) (this.opts.log ?? console.log)(line);
  }

  #traceTail(): string[] {
    if (this.#ring.length < 80) return [...this.#ring];
    const p = this.#ringPos % 80;
    return [...this.#ring.slice(p), ...this.#ring.slice(0, p)];
  }

  #fail(oracle: string, message: string): never {
    throw new SimViolation(oracle, message);
  }

  run(): SimResult {
    const t0 = performance.now();
    let violation: Violation | undefined;
    let lin = 'not checked';
    try {
      for (;;) {
        const ev = this.#q.pop();
        if (ev === undefined) this.#fail('liveness', 'event queue ran dry');
        this.now = ev.at;
        if (++this.steps > this.#maxSteps) {
          this.#fail('liveness', `runaway: ${this.#maxSteps} steps by ${this.now}ms virtual (a message storm or livelock); ${this.#livenessReport()}`);
        }
        ev.run();
        if (this.#phase === 'done') break;
        if ((this.#phase === 'liveness' || this.#phase === 'drain' || this.#phase === 'converge') && this.now > this.#phaseDeadline) {
          this.#fail('liveness', this.#livenessReport());
        }
      }
      const res = checkHistory(this.history, { maxStatesPerKey: 3_000_000 });
      lin = res.result;
      if (res.result === 'violation') this.#fail('linearizability', `${res.detail}\n${formatHistory(res.history)}`);
      if (res.result === 'gaveUp') lin = `gaveUp: ${res.detail}`;
    } catch (e) {
      const oracle = e instanceof SimViolation ? e.oracle : e instanceof RaftError ? `core-${e.code}` : 'exception';
      const message = e instanceof Error ? (e instanceof SimViolation ? e.message : `${e.name}: ${e.message}\n${e.stack ?? ''}`) : String(e);
      violation = {
        oracle,
        message,
        seed: this.seed,
        nodes: this.opts.nodes,
        mutation: this.mutation,
        atMs: this.now,
        step: this.steps,
        replay: replayCommand(this.seed, this.opts.nodes, this.mutation),
        trace: this.#traceTail(),
      };
    }
    return {
      seed: this.seed,
      nodes: this.opts.nodes,
      mutation: this.mutation,
      steps: this.steps,
      virtualMs: this.now,
      faults: { ...this.faults },
      stats: { ...this.stats },
      opsChecked: this.history.length,
      indeterminateOps: this.history.filter((h) => h.returnAt === undefined).length,
      linearizability: lin,
      violation,
      traceHash: (this.#traceHash >>> 0).toString(16).padStart(8, '0'),
      wallMs: Math.round(performance.now() - t0),
    };
  }

  // ------------------------------------------------------------ node layer

  #config(id: NodeId, rng: SeededRandom): RaftConfig {
    const base = {
      id,
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: HEARTBEAT_TICKS,
      random: rng.fork(),
      preVote: true,
      checkQuorum: true,
      readOnly: 'safe' as const,
      maxInflightMsgs: this.profile.maxInflightMsgs,
      maxMsgBytes: this.profile.maxMsgBytes,
      snapshotEntries: this.profile.snapshotEntries,
      trailingEntries: this.profile.trailingEntries,
    };
    const m = this.mutation;
    return m !== undefined && m !== 'ackBeforePersist' ? { ...base, testMutation: m } : base;
  }

  #addNode(id: NodeId): SimNode {
    const rng = this.#nodeRng.fork();
    const n: SimNode = {
      id,
      raft: null,
      state: 'down',
      pausedUntil: 0,
      inc: 0,
      disk: new SimDisk({ index: 0, term: 0, membership: this.#bootstrap }, this.#bootstrapBytes),
      sm: new KvMachine(this.#bootstrap),
      busy: false,
      log: new LogView(),
      snaps: new Map([[posKey(0, 0), this.#bootstrapBytes]]),
      incoming: new Map(),
      proposals: new Map(),
      reads: new Map(),
      readWaiting: [],
      inbox: [],
      crashBeforeSend: false,
      durableTerm: 0,
      durableVote: 0,
      sentEarly: false,
      role: 'follower',
      term: 0,
      commit: 0,
      tickMs: TICK_MS - 1 + rng.int(3),
      rng,
    };
    this.nodes.set(id, n);
    this.#start(n);
    return n;
  }

  /** Boots (or reboots) a node from its durable state. */
  #start(n: SimNode): void {
    const st = n.disk.recover();
    const d = n.disk.durable;
    n.sm = KvMachine.fromSnapshot(d.snapshotBytes);
    if (n.sm.applied !== d.snapshot.index) this.#fail('sim', `node ${n.id}: snapshot bytes at ${n.sm.applied} but meta at ${d.snapshot.index}`);
    this.#checkDigest(n);
    const base = this.#chainAt.get(posKey(d.snapshot.index, d.snapshot.term));
    if (base === undefined) this.#fail('log-matching', `node ${n.id} recovered a snapshot at (${d.snapshot.index}, ${d.snapshot.term}) that no log ever held`);
    n.log.reset(d.snapshot.index, d.snapshot.term, base);
    for (const e of st.entries) this.#logWrite(n, e);
    n.snaps = new Map([[posKey(d.snapshot.index, d.snapshot.term), d.snapshotBytes]]);
    n.raft = new RawNode(this.#config(n.id, n.rng), st);
    n.state = 'up';
    n.inc++;
    n.busy = false;
    n.role = 'follower';
    n.term = st.hardState.term;
    n.durableTerm = st.hardState.term;
    n.durableVote = st.hardState.vote;
    const s = n.raft.status();
    if (s.commit < st.hardState.commit) this.#fail('commit-monotonic', `node ${n.id} restarted with commit ${s.commit} below its durable commit ${st.hardState.commit}`);
    n.commit = s.commit;
    this.#trace('start', n.id, n.inc, st.hardState.term, st.hardState.commit, d.snapshot.index, n.log.lastIndex);
    const inc = n.inc;
    this.#at(this.now + n.rng.int(n.tickMs), () => this.#tick(n, inc));
    this.#pump(n);
  }

  #alive(n: SimNode | undefined, inc?: number): n is SimNode & { raft: RawNode } {
    return n !== undefined && n.state === 'up' && n.raft !== null && (inc === undefined || n.inc === inc);
  }

  /** Defers `run` while the node is paused; returns true if it did. */
  #deferIfPaused(n: SimNode, run: () => void): boolean {
    if (n.pausedUntil <= this.now) return false;
    this.#at(n.pausedUntil + n.rng.int(3), run);
    return true;
  }

  #tick(n: SimNode, inc: number): void {
    if (!this.#alive(n, inc)) return;
    if (this.#deferIfPaused(n, () => this.#tick(n, inc))) return;
    this.#exec(n, () => {
      this.#trace('tick', n.id);
      n.raft!.tick();
    });
    this.#at(this.now + n.tickMs + (n.rng.chance(0.2) ? n.rng.int(3) - 1 : 0), () => this.#tick(n, inc));
  }

  /** Runs `fn` against the core now, or queues it while the node's loop is blocked on an fsync. */
  #exec(n: SimNode, fn: () => void): void {
    if (!this.#alive(n)) return;
    n.inbox.push(fn);
    if (!n.busy) this.#pump(n);
  }

  /** Drives Ready processing: persist -> (sync) -> send -> apply -> advance; then queued inputs. */
  #pump(n: SimNode): void {
    for (;;) {
      if (!this.#alive(n) || n.busy || n.pausedUntil > this.now) break;
      if (!n.raft.hasReady()) {
        const f = n.inbox.shift();
        if (f === undefined) break;
        f();
        continue;
      }
      const rd = n.raft.ready();
      // The node layer's leader fast path (src/node/node.ts): a leader whose term
      // and vote are already durable sends its appends before its own fsync.
      const early =
        (rd.softState?.role ?? n.role) === 'leader' &&
        rd.snapshot === undefined &&
        (rd.hardState === undefined || (rd.hardState.term === n.durableTerm && rd.hardState.vote === n.durableVote));
      n.sentEarly = early || this.mutation === 'ackBeforePersist';
      if (early) this.#send(n, rd.messages);
      this.#persist(n, rd);
      if (n.crashBeforeSend) {
        n.crashBeforeSend = false;
        this.#crash(n, 100 + this.#faultRng.int(1500), 'killOnCommit');
        break;
      }
      if (this.mutation === 'ackBeforePersist' && !early) this.#send(n, rd.messages);
      if (rd.mustSync) {
        n.busy = true;
        const inc = n.inc;
        const done = (): void => {
          if (!this.#alive(n, inc)) return;
          if (this.#deferIfPaused(n, done)) return;
          this.#trace('sync', n.id, n.disk.pending.length);
          n.disk.sync();
          if (rd.hardState) {
            n.durableTerm = rd.hardState.term;
            n.durableVote = rd.hardState.vote;
          }
          n.busy = false;
          this.#finish(n, rd);
          this.#pump(n);
        };
        this.#at(this.now + 1 + this.#diskRng.int(this.profile.diskMaxMs), done);
        break;
      }
      this.#finish(n, rd);
    }
    if (this.#alive(n)) this.#observe(n);
  }

  #persist(n: SimNode & { raft: RawNode }, rd: Ready): void {
    if (rd.softState) n.role = rd.softState.role;
    if (rd.snapshot) {
      const s = rd.snapshot;
      const key = posKey(s.index, s.term);
      const bytes = n.incoming.get(key);
      if (bytes === undefined) this.#fail('sim', `node ${n.id} must install snapshot (${s.index}, ${s.term}) but no bytes arrived for it`);
      const base = this.#chainAt.get(key);
      if (base === undefined) this.#fail('log-matching', `node ${n.id} installs a snapshot at (${s.index}, ${s.term}) that no log ever held`);
      n.disk.write({ kind: 'snapshot', meta: s, bytes });
      n.sm = KvMachine.fromSnapshot(bytes);
      if (n.sm.applied !== s.index || JSON.stringify(n.sm.membership) !== JSON.stringify(s.membership)) {
        this.#fail(
          'snapshot-meta',
          `node ${n.id}: snapshot meta (${s.index}, ${s.term}) membership ${JSON.stringify(s.membership)} but its state is at ${n.sm.applied} with membership ${JSON.stringify(n.sm.membership)}`,
        );
      }
      n.log.reset(s.index, s.term, base);
      n.snaps.set(key, bytes);
      n.incoming.clear();
      this.#trace('install', n.id, s.index, s.term);
      this.#checkDigest(n);
    }
    if (rd.entries.length > 0) {
      n.disk.write({ kind: 'entries', entries: rd.entries });
      for (const e of rd.entries) this.#logWrite(n, e);
    }
    if (rd.hardState) {
      const hs = rd.hardState;
      n.disk.write({ kind: 'hardState', hardState: hs });
      if (hs.commit < n.commit) this.#fail('commit-monotonic', `node ${n.id} commit went from ${n.commit} back to ${hs.commit}`);
      if (hs.term < n.term) this.#fail('term-monotonic', `node ${n.id} term went from ${n.term} back to ${hs.term}`);
      if (n.role === 'leader' && hs.commit > n.commit) {
        if (n.log.termAt(hs.commit) !== hs.term) {
          this.stats['oldTermCommit'] = (this.stats['oldTermCommit'] ?? 0) + 1;
          const t = n.log.termAt(hs.commit)!;
          for (const o of this.nodes.values()) {
            const ot = o.log.termAt(hs.commit);
            if (o !== n && ot !== undefined && ot > t && o.log.lastIndex >= hs.commit) {
              this.stats['oldTermCommitDiverged'] = (this.stats['oldTermCommitDiverged'] ?? 0) + 1;
              break;
            }
          }
        }
        // Crash between persisting this Ready and sending its messages: nobody hears of the new commit.
        if (this.#phase === 'faults' && this.#faultRng.chance(this.profile.killOnCommit)) n.crashBeforeSend = true;
      }
      n.commit = hs.commit;
      n.term = hs.term;
      this.#observeCommit(n, hs.commit);
    }
    if (n.role === 'leader') this.#checkLeaderCompleteness(n);
  }

  #finish(n: SimNode, rd: Ready): void {
    if (!this.#alive(n)) return;
    if (!n.sentEarly) this.#send(n, rd.messages);
    // The core asks for a snapshot at its applied index as of ready(): capture
    // the state machine before this Ready's entries are applied.
    let snap: { index: number; term: number; membership: Membership; bytes: Uint8Array } | undefined;
    if (rd.snapshotRequest !== undefined) {
      const index = rd.snapshotRequest;
      const term = n.log.termAt(index);
      if (n.sm.applied !== index || term === undefined) {
        this.#fail('sim', `node ${n.id}: snapshotRequest ${index} but applied is ${n.sm.applied} (log [${n.log.baseIndex}, ${n.log.lastIndex}])`);
      }
      snap = { index, term, membership: n.sm.membership, bytes: n.sm.snapshotBytes() };
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      this.#observeCommit(n, last.index);
      for (const e of rd.committedEntries) this.#apply(n, e);
    }
    for (const rs of rd.readStates) n.readWaiting.push(rs);
    for (const ctx of rd.droppedReads) {
      const who = n.reads.get(ctx);
      n.reads.delete(ctx);
      if (who !== undefined) this.#readFailed(who.cid, who.seq);
    }
    this.#serveReads(n);
    n.raft!.advance();
    if (snap !== undefined) {
      n.disk.saveSnapshot({ index: snap.index, term: snap.term, membership: snap.membership }, snap.bytes);
      // Keep the previous one too: a 'snap' message in flight may name it.
      const keep = [...n.snaps.entries()].slice(-1);
      n.snaps = new Map([...keep, [posKey(snap.index, snap.term), snap.bytes]]);
      n.raft!.snapshotTaken(snap.index);
      n.log.compact(snap.index);
      this.#trace('snapshot', n.id, snap.index, snap.term);
    }
  }

  #apply(n: SimNode, e: Entry): void {
    if (e.index <= n.sm.applied) return; // covered by an installed snapshot
    const h = entryHash(e);
    const prev = this.#appliedAt.get(e.index);
    if (prev === undefined) this.#appliedAt.set(e.index, h);
    else if (prev !== h) this.#fail('state-machine-safety', `node ${n.id} applied a different entry at index ${e.index} (term ${e.term}) than another node did`);
    if (n.log.termAt(e.index) !== undefined && n.log.termAt(e.index) !== e.term) {
      this.#fail('state-machine-safety', `node ${n.id} applied entry ${e.index} of term ${e.term} but its log has term ${n.log.termAt(e.index)}`);
    }
    const res = n.sm.apply(e);
    if (n.sm.confMismatch !== undefined) this.#fail('membership', `node ${n.id}: ${n.sm.confMismatch}`);
    this.#checkDigest(n);
    if (e.type === 'conf') this.#onConfApplied(n, e);
    if (res !== undefined) {
      const cid = n.proposals.get(res.id);
      if (cid !== undefined) {
        n.proposals.delete(res.id);
        this.#respondWrite(cid, res.id, res.ok);
      }
    }
  }

  #checkDigest(n: SimNode): void {
    const d = n.sm.digest();
    const prev = this.#digestAt.get(n.sm.applied);
    if (prev === undefined) this.#digestAt.set(n.sm.applied, d);
    else if (prev !== d) this.#fail('state-machine-safety', `node ${n.id} state machine at applied ${n.sm.applied} differs from another node's at the same index`);
  }

  #onConfApplied(n: SimNode, _e: Entry): void {
    // Decommission nodes whose removal has been applied somewhere.
    for (const id of n.sm.membership.removed) {
      if (this.#removedIds.has(id)) continue;
      this.#removedIds.add(id);
      this.#at(this.now + 300, () => {
        const r = this.nodes.get(id);
        if (r === undefined || r.state === 'gone') return;
        r.state = 'gone';
        r.raft = null;
        r.inc++;
        this.#trace('decommission', id);
      });
    }
  }

  #serveReads(n: SimNode): void {
    if (n.readWaiting.length === 0) return;
    const still: ReadState[] = [];
    for (const rs of n.readWaiting) {
      if (rs.index > n.sm.applied) {
        still.push(rs);
        continue;
      }
      const who = n.reads.get(rs.ctx);
      n.reads.delete(rs.ctx);
      if (who !== undefined) this.#respondRead(who.cid, who.seq, rs.ctx, n);
    }
    n.readWaiting = still;
  }

  // --------------------------------------------------------------- network

  #linkKey(from: NodeId, to: NodeId): number {
    return from * 4096 + to;
  }

  #send(n: SimNode, msgs: readonly Message[]): void {
    for (const m of msgs) {
      let bytes: Uint8Array | undefined;
      if (m.type === 'snap') {
        if (m.snapshot === undefined) this.#fail('sim', `node ${n.id} sent a snap message without snapshot meta`);
        bytes = n.snaps.get(posKey(m.snapshot.index, m.snapshot.term));
        if (bytes === undefined) this.#fail('sim', `node ${n.id} sent snapshot (${m.snapshot.index}, ${m.snapshot.term}) it does not hold`);
      }
      const copies = this.#netRng.chance(this.#weather.dup) ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        if (this.#netRng.chance(this.#weather.drop)) {
          this.#trace('drop', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
          if (m.type === 'snap') this.#reportSnapshot(m.from, n.inc, m.to, false);
          continue;
        }
        const delay = 1 + this.#netRng.int(this.#weather.delayMaxMs);
        this.#at(this.now + delay, () => this.#deliver(m, bytes));
      }
    }
  }

  #deliver(m: Message, bytes: Uint8Array | undefined): void {
    const t = this.nodes.get(m.to);
    const from = this.nodes.get(m.from);
    const fromInc = from?.inc ?? 0;
    if (!this.#alive(t) || this.#blocked.has(this.#linkKey(m.from, m.to))) {
      // The sender's transport sees the connection fail (a silent 'drop' above it does not).
      this.#trace('lost', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
      if (m.type === 'snap') this.#reportSnapshot(m.from, fromInc, m.to, false);
      else if (from !== undefined && this.#alive(from, fromInc) && this.#netRng.chance(0.5)) {
        this.#at(this.now + 1, () => {
          if (this.#alive(from, fromInc) && from.pausedUntil <= this.now) this.#exec(from, () => from.raft!.reportUnreachable(m.to));
        });
      }
      return;
    }
    if (this.#deferIfPaused(t, () => this.#deliver(m, bytes))) return;
    this.#trace('deliver', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index, m.entries.length, m.commit, m.reject ? 1 : 0);
    if (bytes !== undefined && m.snapshot !== undefined) t.incoming.set(posKey(m.snapshot.index, m.snapshot.term), bytes);
    this.#exec(t, () => t.raft!.step(m));
    if (m.type === 'snap') this.#reportSnapshot(m.from, fromInc, m.to, true);
  }

  #reportSnapshot(from: NodeId, inc: number, to: NodeId, ok: boolean): void {
    this.#at(this.now + 1, () => {
      const n = this.nodes.get(from);
      if (!this.#alive(n, inc)) return;
      if (this.#deferIfPaused(n, () => this.#reportSnapshot(from, inc, to, ok))) return;
      this.#exec(n, () => {
        this.#trace('reportSnapshot', from, to, ok ? 1 : 0);
        n.raft!.reportSnapshot(to, ok);
      });
    });
  }

  // --------------------------------------------------------------- oracles

  #logWrite(n: SimNode, e: Entry): void {
    const h = n.log.append(e);
    if (h === undefined) this.#fail('log-matching', `node ${n.id} wrote entry ${e.index} after its last index ${n.log.lastIndex} (gap)`);
    const key = posKey(e.index, e.term);
    const g = this.#chainAt.get(key);
    if (g === undefined) this.#chainAt.set(key, h);
    else if (g !== h) {
      this.#fail('log-matching', `node ${n.id} has entry (${e.index}, ${e.term}) but its log up to there differs from another node's that has the same entry`);
    }
  }

  /** A node says `commit` is committed: record it, and check it agrees with what was committed before. */
  #observeCommit(n: SimNode, commit: number): void {
    if (commit <= n.log.baseIndex && commit <= this.#maxCommitted) return; // inside its snapshot
    if (commit > n.log.lastIndex) this.#fail('commit', `node ${n.id} commits ${commit} beyond its last log index ${n.log.lastIndex}`);
    if (commit <= this.#maxCommitted) {
      const want = this.#committedHash[commit];
      const have = n.log.hashAt(commit);
      if (want !== undefined && have !== undefined && want !== have) {
        this.#fail('state-machine-safety', `node ${n.id} treats a different entry as committed at index ${commit} than was committed before`);
      }
      return;
    }
    const from = Math.max(this.#maxCommitted + 1, n.log.baseIndex);
    if (this.#maxCommitted > 0 && this.#maxCommitted >= n.log.baseIndex) {
      const want = this.#committedHash[this.#maxCommitted];
      const have = n.log.hashAt(this.#maxCommitted);
      if (want !== undefined && have !== undefined && want !== have) {
        this.#fail('leader-completeness', `node ${n.id} commits up to ${commit} on a log that lacks the entry committed at ${this.#maxCommitted}`);
      }
    }
    for (let i = from; i <= commit; i++) {
      const h = n.log.hashAt(i);
      if (h !== undefined) this.#committedHash[i] = h;
    }
    this.#maxCommitted = commit;
    this.#checkpoints.push({ index: commit, term: n.term });
    this.#trace('committed', n.id, commit, n.term);
    for (const o of this.nodes.values()) if (o.role === 'leader' && !o.busy && this.#alive(o)) this.#checkLeaderCompleteness(o);
  }

  /** Leader completeness: a leader of term T holds every entry committed in a term below T. */
  #checkLeaderCompleteness(n: SimNode): void {
    for (let i = this.#checkpoints.length - 1; i >= 0; i--) {
      const cp = this.#checkpoints[i]!;
      if (cp.term >= n.term) continue;
      if (cp.index <= n.log.baseIndex) return;
      const have = n.log.hashAt(cp.index);
      const want = this.#committedHash[cp.index];
      if (have === undefined || (want !== undefined && have !== want)) {
        this.#fail(
          'leader-completeness',
          `leader ${n.id} of term ${n.term} lacks the entry committed at index ${cp.index} in term ${cp.term} (its log ends at ${n.log.lastIndex})`,
        );
      }
      return;
    }
  }

  /** Polls the core's role: election safety (one leader per term, ever). */
  #observe(n: SimNode & { raft: RawNode }): void {
    const s = n.raft.status();
    if (s.role === 'leader') {
      const prev = this.#leaderOfTerm.get(s.term);
      if (prev === undefined) {
        this.#leaderOfTerm.set(s.term, n.id);
        this.#trace('leader', n.id, s.term, ROLES.indexOf(s.role));
        this.#maybeKillLeader(n);
      } else if (prev !== n.id) {
        this.#fail('election-safety', `nodes ${prev} and ${n.id} both led term ${s.term}`);
      }
    }
    if (s.commit < n.commit) this.#fail('commit-monotonic', `node ${n.id} commit went from ${n.commit} back to ${s.commit}`);
  }

  // --------------------------------------------------------------- clients

  #issue(c: SimClient): void {
    if (this.#phase === 'drain' || this.#phase === 'converge' || this.#phase === 'done') return;
    const r = this.#clientRng;
    const key = this.#keys[r.int(this.#keys.length)]!;
    const seq = ++c.seq;
    const value = `c${c.id}.${seq}`;
    const p = r.next();
    let op: KvOp;
    if (p < 0.4) op = { kind: 'read', key };
    else if (p < 0.75) op = { kind: 'write', key, value };
    else {
      const seen = c.lastSeen.get(key);
      op = { kind: 'cas', key, expected: r.chance(0.2) || seen === undefined ? null : seen, value };
    }
    c.op = { seq, op, invokeAt: this.now, cmdId: this.#nextCmd++, proposed: false };
    this.#trace('invoke', c.id, seq, op.kind === 'read' ? 0 : op.kind === 'write' ? 1 : 2);
    this.#at(this.now + CLIENT_TIMEOUT_MS, () => this.#timeout(c, seq));
    this.#attempt(c, seq);
  }

  #retry(c: SimClient, seq: number, afterMs: number, newGuess: NodeId): void {
    c.guess = newGuess > 0 ? newGuess : this.#randomNodeId();
    this.#at(this.now + afterMs, () => this.#attempt(c, seq));
  }

  #randomNodeId(): NodeId {
    const ids = [...this.nodes.values()].filter((n) => n.state === 'up').map((n) => n.id);
    return ids.length === 0 ? 1 : ids[this.#clientRng.int(ids.length)]!;
  }

  #attempt(c: SimClient, seq: number): void {
    const p = c.op;
    if (p === null || p.seq !== seq || p.proposed) return;
    const n = this.nodes.get(c.guess);
    if (!this.#alive(n)) return this.#retry(c, seq, 5 + this.#clientRng.int(20), 0);
    if (n.pausedUntil > this.now) return this.#retry(c, seq, 100, 0);
    this.#exec(n, () => this.#attemptOn(c, seq, n));
  }

  #attemptOn(c: SimClient, seq: number, n: SimNode & { raft: RawNode }): void {
    const p = c.op;
    if (p === null || p.seq !== seq || p.proposed) return;
    try {
      if (p.op.kind === 'read') {
        const ctx = this.#nextCtx++;
        n.reads.set(ctx, { cid: c.id, seq });
        n.raft.readIndex(ctx);
        this.#trace('readIndex', c.id, n.id, ctx);
      } else {
        const cmd: Command =
          p.op.kind === 'write'
            ? { id: p.cmdId, kind: 'write', key: p.op.key, value: p.op.value }
            : { id: p.cmdId, kind: 'cas', key: p.op.key, expected: p.op.expected, value: p.op.value };
        n.raft.propose(encodeCommand(cmd));
        p.proposed = true;
        n.proposals.set(p.cmdId, c.id);
        this.#trace('propose', c.id, n.id, p.cmdId);
      }
    } catch (e) {
      if (e instanceof NotLeader) return this.#retry(c, seq, 5 + this.#clientRng.int(20), e.leaderHint);
      if (e instanceof RaftError && e.code !== 'invariant_violation') return this.#retry(c, seq, 20 + this.#clientRng.int(40), c.guess);
      throw e;
    }
  }

  #complete(c: SimClient, output: KvOutput): void {
    const p = c.op!;
    this.history.push({ client: c.id, op: p.op, output, invokeAt: p.invokeAt, returnAt: this.now });
    if (output.kind === 'read') c.lastSeen.set(p.op.key, output.value);
    else if (output.kind === 'ok' && p.op.kind !== 'read') c.lastSeen.set(p.op.key, p.op.value);
    if (this.#phase === 'liveness' && p.invokeAt >= this.#healedAt) c.liveAfterHeal = true;
    c.op = null;
    this.#trace('return', c.id, p.seq, output.kind === 'fail' ? 0 : 1);
    this.#next(c);
  }

  #next(c: SimClient): void {
    if (this.#phase === 'liveness' && this.#clients.every((x) => x.liveAfterHeal)) {
      this.#phase = 'drain';
      this.#phaseDeadline = this.now + CLIENT_TIMEOUT_MS + 500;
      this.#trace('phase-drain');
    }
    if (this.#phase === 'drain' && this.#clients.every((x) => x.op === null)) {
      this.#phase = 'converge';
      this.#phaseDeadline = this.now + this.#convergeMs;
      this.#trace('phase-converge');
      this.#at(this.now + 10, () => this.#checkConverged());
      return;
    }
    this.#at(this.now + this.#clientRng.int(30), () => this.#issue(c));
  }

  #respondWrite(cid: number, cmdId: number, ok: boolean): void {
    this.#at(this.now + 1 + this.#clientRng.int(5), () => {
      const c = this.#clients[cid - 1]!;
      if (c.op === null || c.op.cmdId !== cmdId) return;
      this.#complete(c, ok ? { kind: 'ok' } : { kind: 'fail' });
    });
  }

  #respondRead(cid: number, seq: number, ctx: number, n: SimNode): void {
    const c = this.#clients[cid - 1]!;
    const p = c.op;
    // The op that asked may have timed out meanwhile: never answer a later op with this read.
    if (p === null || p.seq !== seq || p.op.kind !== 'read') return;
    const value = n.sm.get(p.op.key);
    this.#trace('readServed', cid, n.id, ctx, n.sm.applied);
    this.#at(this.now + 1 + this.#clientRng.int(5), () => {
      if (c.op === null || c.op.seq !== seq) return;
      this.#complete(c, { kind: 'read', value });
    });
  }

  #readFailed(cid: number, seq: number): void {
    const c = this.#clients[cid - 1]!;
    const p = c.op;
    if (p === null || p.seq !== seq || p.op.kind !== 'read') return;
    this.#retry(c, p.seq, 10 + this.#clientRng.int(20), 0);
  }

  #timeout(c: SimClient, seq: number): void {
    const p = c.op;
    if (p === null || p.seq !== seq) return;
    // A proposed write may still commit: its outcome is unknown. A read or an
    // unproposed write changed nothing and is left out of the history.
    if (p.proposed) this.history.push({ client: c.id, op: p.op, output: undefined, invokeAt: p.invokeAt, returnAt: undefined });
    this.#trace('timeout', c.id, seq, p.proposed ? 1 : 0);
    c.op = null;
    this.#next(c);
  }

  // ---------------------------------------------------------------- faults

  #count(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  #leader(): (SimNode & { raft: RawNode }) | undefined {
    let best: (SimNode & { raft: RawNode }) | undefined;
    for (const n of this.nodes.values()) {
      if (this.#alive(n) && n.role === 'leader' && n.pausedUntil <= this.now && (best === undefined || n.term > best.term)) best = n;
    }
    return best;
  }

  #upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.state === 'up');
  }

  #fault(): void {
    if (this.#phase !== 'faults') return;
    const r = this.#faultRng;
    const prof = this.profile;
    this.#at(this.now + 10 + r.int(2 * prof.faultGapMs), () => this.#fault());
    const up = this.#upNodes();
    const leader = this.#leader();
    const pick = (): SimNode | undefined => (leader !== undefined && r.chance(0.5) ? leader : up[r.int(up.length)]);
    let x = r.next() * FAULT_KINDS.reduce((a, k) => a + prof.weights[k], 0);
    let kind: FaultKind = 'quiet';
    for (const k of FAULT_KINDS) {
      x -= prof.weights[k];
      if (x < 0) {
        kind = k;
        break;
      }
    }
    switch (kind) {
      case 'crash': {
        const n = pick();
        if (n) this.#crash(n, 20 + r.int(1500), 'crash');
        return;
      }
      case 'powerLoss': {
        // A majority (or all) at once: unsynced writes gone everywhere.
        const k = Math.min(up.length, Math.ceil(up.length / 2) + r.int(2));
        const victims = [...up];
        for (let i = 0; i < k && victims.length > 0; i++) {
          const v = victims.splice(r.int(victims.length), 1)[0]!;
          this.#crash(v, 20 + r.int(800), 'powerLoss');
        }
        return;
      }
      case 'pause': {
        const n = pick();
        if (n && n.pausedUntil <= this.now) {
          n.pausedUntil = this.now + 100 + r.int(1500);
          this.#count('pause');
          this.#trace('pause', n.id, n.pausedUntil);
        }
        return;
      }
      case 'partition':
        this.#partition(up, leader);
        return;
      case 'heal':
        this.#blocked.clear();
        this.#count('heal');
        this.#trace('heal');
        return;
      case 'weather':
        this.#weather = { drop: [0, 0.01, 0.05, 0.2][r.int(4)]!, dup: [0, 0.02, 0.1][r.int(3)]!, delayMaxMs: [5, 20, 80][r.int(3)]! };
        this.#count('weather');
        this.#trace('weather', this.#weather.drop * 100, this.#weather.dup * 100, this.#weather.delayMaxMs);
        return;
      case 'membership':
        if (leader) this.#exec(leader, () => this.#membershipChange(leader));
        return;
      case 'transfer':
        if (leader) this.#exec(leader, () => this.#transfer(leader));
        return;
      case 'burst': {
        // A burst of background writes (not in the checked history): long uncommitted tails to lose.
        const target = leader ?? pick();
        if (target !== undefined) this.#burst(target, 5 + r.int(40));
        return;
      }
      case 'quiet':
        return;
    }
  }

  #maybeKillLeader(n: SimNode): void {
    const r = this.#faultRng;
    if (this.#phase !== 'faults' || !r.chance(this.profile.leaderKill)) return;
    const inc = n.inc;
    const burst = r.chance(0.5) ? 5 + r.int(30) : 0;
    if (burst > 0) this.#at(this.now, () => this.#burst(n, burst));
    this.#at(this.now + 1 + r.int(r.chance(0.5) ? 6 : 40), () => {
      if (this.#phase !== 'faults' || !this.#alive(n, inc)) return;
      if (r.chance(0.3)) return this.#crash(n, 50 + r.int(600), 'leaderKill');
      // Isolations overlap and heal one by one, so a cut-off leader can stay
      // cut off while the one before it returns (Figure 8 needs exactly that).
      const links: number[] = [];
      for (const o of this.nodes.keys()) {
        if (o === n.id) continue;
        links.push(this.#linkKey(o, n.id), this.#linkKey(n.id, o));
      }
      for (const k of links) this.#blocked.add(k);
      this.#count('leaderIsolate');
      this.#trace('leaderIsolate', n.id);
      this.#at(this.now + 100 + r.int(700), () => {
        for (const k of links) this.#blocked.delete(k);
        this.#trace('isolationHealed', n.id);
      });
    });
  }

  #burst(target: SimNode, k: number): void {
    this.#count('burst');
    this.#exec(target, () => {
      for (let i = 0; i < k; i++) {
        try {
          target.raft!.propose(encodeCommand({ id: this.#nextCmd++, kind: 'write', key: '_bulk', value: `b${i}` }));
        } catch (e) {
          if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
          break;
        }
      }
      this.#trace('burst', target.id, k);
    });
  }

  #crash(n: SimNode, downMs: number, kind: string): void {
    if (n.state !== 'up') return;
    const rep = n.disk.crash(this.#diskRng, 0.5);
    n.state = 'down';
    n.raft = null;
    n.inc++;
    n.busy = false;
    n.pausedUntil = 0;
    n.role = 'follower';
    n.proposals.clear();
    n.reads.clear();
    n.readWaiting = [];
    n.incoming.clear();
    n.inbox = [];
    this.#count(kind);
    if (rep.torn) this.#count('tornWrite');
    this.#trace(kind, n.id, rep.lostWrites, rep.torn ? 1 : 0);
    // Peers whose connection to it reset may pre-vote at once.
    for (const o of this.nodes.values()) {
      if (this.#alive(o) && o.raft.status().lead === n.id && this.#faultRng.chance(0.5)) {
        this.#at(this.now + 1 + this.#faultRng.int(5), () => {
          if (this.#alive(o) && o.pausedUntil <= this.now) this.#exec(o, () => o.raft!.leaderUnreachable());
        });
      }
    }
    const inc = n.inc;
    this.#at(this.now + downMs, () => {
      if (n.state === 'down' && n.inc === inc) this.#start(n);
    });
  }

  #partition(up: SimNode[], leader: SimNode | undefined): void {
    const r = this.#faultRng;
    const ids = up.map((n) => n.id);
    if (ids.length < 2) return;
    this.#blocked.clear();
    const block = (a: NodeId, b: NodeId): void => void this.#blocked.add(this.#linkKey(a, b));
    const kind = r.int(4);
    // Side A: the leader alone (often) or a random subset.
    const shuffled = [...ids];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    let cut = 1 + r.int(ids.length - 1);
    if (leader !== undefined && r.chance(0.4)) {
      shuffled.splice(shuffled.indexOf(leader.id), 1);
      shuffled.unshift(leader.id);
      cut = 1 + r.int(Math.max(1, Math.floor(ids.length / 2)));
    }
    const a = shuffled.slice(0, cut);
    const b = shuffled.slice(cut);
    if (kind === 0 || kind === 3) {
      // Symmetric (kind 3: plus a bridge node that sees both sides).
      const bridge = kind === 3 && b.length > 1 ? b.pop() : undefined;
      for (const x of a) {
        for (const y of b) {
          block(x, y);
          block(y, x);
        }
      }
      this.#count(bridge === undefined ? 'partition' : 'bridgePartition');
      this.#trace(bridge === undefined ? 'partition' : 'bridge', a.length, b.length, bridge ?? 0, ...a);
    } else {
      // One-way: A cannot reach B (kind 1) or B cannot reach A (kind 2).
      for (const x of a) for (const y of b) block(kind === 1 ? x : y, kind === 1 ? y : x);
      this.#count('oneWayPartition');
      this.#trace('oneWay', kind, a.length, b.length, ...a);
    }
    if (r.chance(0.6)) {
      const snapshot = new Set(this.#blocked);
      this.#at(this.now + 200 + r.int(2500), () => {
        if ([...snapshot].every((k) => this.#blocked.has(k)) && snapshot.size === this.#blocked.size) {
          this.#blocked.clear();
          this.#trace('autoHeal');
        }
      });
    }
  }

  #membershipChange(leader: SimNode & { raft: RawNode }): void {
    const r = this.#faultRng;
    const mem = leader.raft.status().membership;
    const voting = mem.members.filter((m) => m.role !== 'learner');
    const learners = mem.members.filter((m) => m.role === 'learner');
    const removable = mem.members.filter((m) => m.id !== leader.id && (m.role === 'learner' || voting.length > Math.max(3, this.opts.nodes - 1)));
    let cc: ConfChange;
    let fresh: NodeId | undefined;
    const p = r.next();
    if (learners.length > 0 && p < 0.4) {
      const l = learners[r.int(learners.length)]!;
      cc = { op: 'setRole', id: l.id, role: r.chance(0.3) ? 'observer' : 'voter' };
    } else if (removable.length > 0 && (p < 0.7 || voting.length > this.opts.nodes + 1)) {
      cc = { op: 'remove', id: removable[r.int(removable.length)]!.id };
    } else if (mem.members.length < this.opts.nodes + 3) {
      fresh = this.#nextId++;
      cc = { op: 'add', id: fresh, role: 'learner' };
    } else return;
    try {
      leader.raft.proposeConfChange(cc);
      this.#count(`conf-${cc.op}`);
      this.#trace('confChange', leader.id, cc.op === 'add' ? 0 : cc.op === 'remove' ? 1 : 2, cc.id);
      if (fresh !== undefined) this.#addNode(fresh);
    } catch (e) {
      if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
      this.#count('confRefused');
      this.#trace('confRefused', leader.id, cc.id);
    }
  }

  #transfer(leader: SimNode & { raft: RawNode }): void {
    const r = this.#faultRng;
    const voters = leader.raft
      .status()
      .membership.members.filter((m) => m.role === 'voter' && m.id !== leader.id)
      .map((m) => m.id);
    if (voters.length === 0) return;
    const to = voters[r.int(voters.length)]!;
    try {
      leader.raft.transferLeadership(to);
      this.#count('transfer');
      this.#trace('transfer', leader.id, to);
    } catch (e) {
      if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
      this.#count('transferRefused');
    }
  }

  // ------------------------------------------------------- heal, liveness

  #heal(): void {
    this.#phase = 'liveness';
    this.#healedAt = this.now;
    this.#phaseDeadline = this.now + this.#livenessMs;
    this.#blocked.clear();
    this.#weather = { ...CALM };
    for (const n of this.nodes.values()) {
      if (n.state === 'down') this.#start(n);
      else if (n.pausedUntil > this.now) n.pausedUntil = this.now;
    }
    this.#trace('phase-heal');
  }

  #checkConverged(): void {
    if (this.#phase !== 'converge') return;
    const leader = this.#leader();
    if (leader !== undefined && !leader.busy) {
      const s = leader.raft.status();
      const members = s.membership.members;
      const ok = members.every((m) => {
        const n = this.nodes.get(m.id);
        return this.#alive(n) && n.sm.applied === s.commit && n.sm.digest() === leader.sm.digest();
      });
      if (ok && leader.sm.applied === s.commit) {
        this.#phase = 'done';
        this.#trace('converged', s.commit);
        return;
      }
    }
    this.#at(this.now + 20, () => this.#checkConverged());
  }

  #livenessReport(): string {
    const nodes = [...this.nodes.values()]
      .map((n) => {
        const s = this.#alive(n) ? n.raft.status() : undefined;
        const prs = s && s.role === 'leader' ? ` progress[${s.progress.map((p) => `${p.id}:${p.state} m${p.match} n${p.next}${p.recentActive ? '' : ' inactive'}`).join(', ')}] first${s.firstIndex}` : '';
        return `n${n.id}:${n.state}${s ? `/${s.role} t${s.term} c${s.commit} a${n.sm.applied} last${s.lastIndex}${prs}` : ''}`;
      })
      .join(' ');
    const clients = this.#clients.map((c) => `c${c.id}:${c.op ? `${c.op.op.kind}@${c.op.invokeAt}` : 'idle'}${c.liveAfterHeal ? '+' : '-'}`).join(' ');
    return `phase ${this.#phase} missed its deadline ${this.#phaseDeadline}ms (healed at ${this.#healedAt}ms); nodes ${nodes}; clients ${clients}`;
  }
}

export function runSeed(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}

export function formatViolation(v: Violation): string {
  return [
    `VIOLATION [${v.oracle}] seed=${v.seed} nodes=${v.nodes}${v.mutation ? ` mutation=${v.mutation}` : ''} at ${v.atMs}ms step ${v.step}`,
    v.message,
    `replay: ${v.replay}`,
    'last events:',
    ...v.trace.map((l) => `  ${l}`),
  ].join('\n');
}
