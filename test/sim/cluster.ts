// The deterministic cluster simulator (TigerBeetle's VOPR idea): N shipped
// replicas in one process, virtual time, one seed driving every choice —
// network, disk, faults, clients. Each node is the agent's own `Replica`
// (src/node/replica.ts) over the agent's `WalStorage` on a simulated file
// system that loses unsynced writes and tears the last one at a crash
// (test/support/simfs.ts), the real `MachineRegistry` with the `KvStateMachine` in it, a simulated network and
// virtual time. Oracles run on what the nodes persist, send and apply; at the
// end the client history is checked for linearizability and the healed
// cluster for liveness and convergence. Same seed => same trace, bit for bit.
import { pino } from 'pino';
import { NONE, RawNode, applyConfChange, isVoting } from '../../src/raft/index.js';
import { RaftError } from '../../src/raft/errors.js';
import { SeededRandom } from '../../src/raft/prng.js';
import type { ConfEntry } from '../../src/raft/membership.js';
import type { ConfChange, Entry, HardState, MemberRole, Membership, Message, MessageType, NodeId, RaftConfig, RaftRole, Ready, SnapshotMeta, TestMutation } from '../../src/raft/types.js';
import { NodeError } from '../../src/node/errors.js';
import { MemberRegistry, type Announced } from '../../src/node/registry.js';
import { Replica, type Clock, type LogStore, type PeerNetwork, type ReplicaHooks, type StateMachine } from '../../src/node/replica.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { WalStorage } from '../../src/storage/wal.js';
import { KV_MACHINE_ID, createKvState, encodeCommand, type KvReader, type KvState, encodeEnvelope, encodeKvPayload, type ApplyResult, type Command } from '../../src/state/index.js';
import { SimCrashError, SimFs, skipHotPathDatasync } from '../support/simfs.js';
import { EventQueue } from './heap.js';
import { fnv, mix } from './hash.js';
import { checkHistory, formatHistory, type HistoryEntry, type KvOp, type KvOutput } from './linearizability.js';
import { LogView } from './logview.js';
import { GenOracles, membershipAtEnd } from './generations.js';
import { planSoleVoter, writeSoleVoter } from '../../src/node/generation.js';

/**
 * Planted bugs the oracles must catch: three in the core (RaftConfig.testMutation),
 * 'ackBeforePersist' in the node's log store (save() resolves before the write
 * is durable, so the replica acknowledges entries a crash then loses), and
 * 'walSkipsFsync' in the storage layer (the fdatasync of the WAL's hot path
 * does nothing, so the WAL acknowledges appends that are not durable).
 */
export type SimMutation = TestMutation | 'ackBeforePersist' | 'walSkipsFsync' | 'deliverCrossGeneration';
export const SIM_MUTATIONS: readonly SimMutation[] = ['voteWithoutLogCheck', 'commitPreviousTermByCounting', 'ignoreCommitQuorum', 'ackBeforePersist', 'walSkipsFsync', 'deliverCrossGeneration'];
const NODE_MUTATIONS: ReadonlySet<SimMutation> = new Set(['ackBeforePersist', 'walSkipsFsync', 'deliverCrossGeneration']);

/**
 * Scenarios beyond the fault mix: 'promote-dr' (a DR learner is promoted with
 * the shipped forced-new-cluster rewrite after the voters' site is lost; the
 * old site comes back with its old data), 'wipe' (nodes come back with an
 * empty data dir). 'mixed' draws per seed: most seeds none, some of each.
 */
export type SimScenario = 'none' | 'promote-dr' | 'wipe' | 'mixed';
export const SIM_SCENARIOS: readonly SimScenario[] = ['none', 'promote-dr', 'wipe', 'mixed'];

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly mutation?: SimMutation;
  /** Default 'none'. */
  readonly scenario?: SimScenario;
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
  readonly scenario: SimScenario;
  readonly atMs: number;
  readonly step: number;
  readonly replay: string;
  readonly trace: readonly string[];
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly mutation: SimMutation | undefined;
  /** The scenario this seed ran ('none', 'promote-dr' or 'wipe'; 'mixed' resolved). */
  readonly scenarioRun: Exclude<SimScenario, 'mixed'>;
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

export function replayCommand(seed: number, nodes: number, mutation?: SimMutation, scenario: SimScenario = 'none'): string {
  return `npm run sim -- --seed ${seed} --nodes ${nodes}${mutation ? ` --mutation ${mutation}` : ''} --scenario ${scenario} --trace`;
}

class SimViolation extends Error {
  readonly oracle: string;
  constructor(oracle: string, message: string) {
    super(message);
    this.oracle = oracle;
  }
}

const TICK_MS = 10;
/** Longer than any run: the simulator's clients time out first (CLIENT_TIMEOUT_MS). */
const REPLICA_TIMEOUT_MS = 600_000;
const DATA_DIR = '/data/raft';
const SILENT = pino({ level: 'silent' });
const NO_METRICS = { committed: () => undefined, failed: () => undefined, commitLatency: () => undefined, fsyncLatency: () => undefined };
const NEVER = new Promise<never>(() => undefined);
const ELECTION_TICKS = 10;
const HEARTBEAT_TICKS = 2;
const CLIENT_TIMEOUT_MS = 1500;
const MSG_TYPES: readonly MessageType[] = ['app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow'];
const ROLES: readonly RaftRole[] = ['follower', 'preCandidate', 'candidate', 'leader'];

const posKey = (index: number, term: number): number => index * 1048576 + term;

interface SimNode {
  readonly id: NodeId;
  state: 'up' | 'booting' | 'down' | 'gone';
  /** Its cluster generation (kept on its disk, in bootstrap.json): 0 until promoted. */
  gen: number;
  /** Promote at the next boot: the forced-new-cluster rewrite of its stopped data dir. */
  promote: boolean;
  pausedUntil: number;
  /** Bumped at every boot and crash: callbacks of an earlier incarnation are dropped. */
  inc: number;
  /** The node's disk: survives crashes (losing what was not durable). */
  fs: SimFs;
  /** Its data dir was wiped since it last started: what it wrote before is not on any disk. */
  wiped: boolean;
  /** 'wipe' seeds: the shipped MemberRegistry (incarnations, fencing, rejoining), as the agent wires it. */
  registry: MemberRegistry | null;
  /** Its data dir's incarnation (what its handshake announces). */
  incarnation: string | undefined;
  /** The role its config asks for (announced): set when a voting member is wiped, so the leader promotes it back once caught up. */
  wantRole: MemberRole | undefined;
  raft: RawNode | null;
  replica: Replica | null;
  /** The KV's reads, with the registry's applied index and whole-state checksum (simView). */
  kv: KvReader | null;
  /** What the node has written to its log (chain hashes), for log matching. */
  readonly log: LogView;
  /** The membership as of the applied index, computed by the simulator from the conf changes alone. */
  membership: Membership;
  /** Fault injection: crash right after persisting the current Ready, before sending its messages. */
  crashBeforeSend: boolean;
  /** A crash scheduled inside the file system (at one of the next operations) has not fired yet. */
  crashPending: boolean;
  /** 'ackBeforePersist': writes acknowledged but not yet on disk, in order. */
  lagging: Promise<void>;
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
  /** A write was handed to a replica and has not been refused: it may apply. */
  proposed: boolean;
  /** An attempt is in flight (waiting for the replica's answer). */
  busy: boolean;
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

const FAULT_KINDS = ['crash', 'powerLoss', 'pause', 'partition', 'heal', 'weather', 'membership', 'transfer', 'burst', 'quiet', 'manual'] as const;
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
  /** WAL segment size (small sizes exercise rollover and preallocation). */
  readonly segmentBytes: number;
  /** WalOptions.commitPersistEveryEntries. */
  readonly commitPersistEvery: number;
  /** Share of crashes that strike inside a file-system operation (mid-write) rather than between them. */
  readonly midOpCrash: number;
}

function drawProfile(r: SeededRandom): SimProfile {
  const w = (base: number): number => (r.chance(0.2) ? 0 : base * (0.25 + r.next()));
  if (r.chance(0.3)) {
    // "Figure 8" weather: leaders that reign for a few ms, each leaving a
    // divergent uncommitted tail, replicated in small chunks, while nodes
    // crash and return quickly. This is what old-term commit bugs need.
    return {
      weights: { crash: 10, powerLoss: 0, pause: 3, partition: 6, heal: 6, weather: 0, membership: 0, transfer: 4, burst: 12, quiet: 4, manual: 0 },
      faultGapMs: 100,
      diskMaxMs: 3,
      maxMsgBytes: 256,
      maxInflightMsgs: [2, 8][r.int(2)]!,
      snapshotEntries: 400,
      trailingEntries: 50,
      leaderKill: 0.5 + 0.4 * r.next(),
      killOnCommit: [0.1, 0.3][r.int(2)]!,
      segmentBytes: 16 * 1024,
      commitPersistEvery: [0, 1024][r.int(2)]!,
      midOpCrash: 0.3,
    };
  }
  const p: SimProfile = {
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
      manual: 0, // drawn last (below), so that seeds without it keep their traces
    },
    faultGapMs: [60, 150, 300][r.int(3)]!,
    diskMaxMs: [3, 8, 25][r.int(3)]!,
    maxMsgBytes: [256, 1024, 8192][r.int(3)]!,
    maxInflightMsgs: [2, 8, 64][r.int(3)]!,
    snapshotEntries: [15, 40, 400][r.int(3)]!,
    trailingEntries: [0, 8, 50][r.int(3)]!,
    leaderKill: [0, 0.2, 0.6][r.int(3)]!,
    killOnCommit: [0, 0, 0.02][r.int(3)]!,
    segmentBytes: [8 * 1024, 64 * 1024, 1024 * 1024][r.int(3)]!,
    commitPersistEvery: [0, 16, 1024][r.int(3)]!,
    midOpCrash: [0, 0.3, 0.7][r.int(3)]!,
  };
  // Manual-failover periods (cluster.failover "manual", or paused): half the seeds.
  if (r.chance(0.5)) (p.weights as Record<FaultKind, number>).manual = 4 + 8 * r.next();
  return p;
}

export class Simulation {
  readonly opts: SimOptions;
  readonly seed: number;
  readonly mutation: SimMutation | undefined;
  readonly profile: SimProfile;
  now = 0;
  steps = 0;
  readonly #q = new EventQueue();
  /** Checks received snapshots (either format), as a node's registry does; keeps no state. */
  readonly #validator = createKvState().registry;
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
  #bootstrap: Membership;
  readonly #faultMs: number;
  readonly #livenessMs: number;
  readonly #convergeMs: number;
  readonly #maxSteps: number;
  #phase: 'faults' | 'liveness' | 'drain' | 'converge' | 'done' = 'faults';
  /** A manual-failover period: no node campaigns on its own; the simulated operator runs failover. */
  #manual = false;
  #healedAt = 0;
  #phaseDeadline = 0;
  readonly #removedIds = new Set<NodeId>();
  #traceHash = 0x811c9dc5;
  readonly #ring: string[] = [];
  #ringPos = 0;
  /** The first failure raised inside a replica's asynchronous work (rethrown by the event loop). */
  #asyncFailure: unknown;
  #over = false;
  // Oracle state.
  /** Per cluster generation (./generations.ts); index = generation. */
  readonly #gens: GenOracles[] = [new GenOracles(0)];
  #curGen = 0;
  readonly scenarioRun: Exclude<SimScenario, 'mixed'>;
  readonly #scenarioOpt: SimScenario;
  /** The DR learner of the 'promote-dr' scenario (0: none). */
  #drId = 0;
  /** Client histories of earlier generations, each checked on its own. */
  readonly #pastHistories: HistoryEntry[][] = [];
  /** WAL incarnation id → deterministic name ('wipe' seeds). */
  readonly #incarnations = new Map<string, string>();
  /** setMember entries counted in the stats (by index). */
  readonly #seenConf = new Set<number>();

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
    this.#scenarioOpt = opts.scenario ?? 'none';
    this.scenarioRun = this.#scenarioOpt !== 'mixed' ? this.#scenarioOpt : drawScenario(root.fork());
    if (this.scenarioRun === 'promote-dr') {
      this.#drId = this.#nextId++;
      this.#bootstrap = { members: [...this.#bootstrap.members, { id: this.#drId, role: 'learner' }], removed: [] };
      ids.push(this.#drId);
      const at = Math.round(this.#faultMs * (0.25 + 0.35 * this.#faultRng.next()));
      this.#at(at, () => this.#loseSite());
    }
    if (this.scenarioRun === 'wipe') this.#at(500 + this.#faultRng.int(1000), () => this.#wipeTick());
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
    if (this.#over) return;
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

  /** Records a failure raised in asynchronous work; the event loop rethrows it after the current step. */
  #failLater(e: unknown): void {
    if (this.#asyncFailure === undefined) this.#asyncFailure = e;
  }

  async run(): Promise<SimResult> {
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
        // Let the replicas' promise continuations (their loops resuming after
        // a write, waiters settling) run before virtual time moves on. Nothing
        // in a simulated node does real I/O, so this is deterministic.
        await drainMicrotasks();
        if (this.#asyncFailure !== undefined) throw this.#asyncFailure;
        if (this.#phase === 'done') break;
        if ((this.#phase === 'liveness' || this.#phase === 'drain' || this.#phase === 'converge') && this.now > this.#phaseDeadline) {
          this.#fail('liveness', this.#livenessReport());
        }
      }
      // One history per cluster generation: a promotion may lose what the old
      // generation acknowledged after the DR node's log (its documented lag);
      // the new one starts from the promoted node's state.
      const segments = [...this.#pastHistories, this.#genHistory()];
      lin = 'linearizable';
      for (const [i, h] of segments.entries()) {
        const res = checkHistory(h, { maxStatesPerKey: 3_000_000 });
        const which = segments.length > 1 ? ` (generation ${i})` : '';
        if (res.result === 'violation') this.#fail('linearizability', `${res.detail}${which}\n${formatHistory(res.history)}`);
        if (res.result === 'gaveUp') lin = `gaveUp: ${res.detail}${which}`;
        else if (lin === 'linearizable') lin = res.result;
      }
    } catch (e) {
      const oracle = e instanceof SimViolation ? e.oracle : e instanceof RaftError ? `core-${e.code}` : 'exception';
      const message = e instanceof Error ? (e instanceof SimViolation ? e.message : `${e.name}: ${e.message}\n${e.stack ?? ''}`) : String(e);
      violation = {
        oracle,
        message,
        seed: this.seed,
        nodes: this.opts.nodes,
        mutation: this.mutation,
        scenario: this.#scenarioOpt,
        atMs: this.now,
        step: this.steps,
        replay: replayCommand(this.seed, this.opts.nodes, this.mutation, this.#scenarioOpt),
        trace: this.#traceTail(),
      };
    } finally {
      // Abandon every replica: nothing they still have queued may run.
      this.#over = true;
      for (const n of this.nodes.values()) n.inc++;
    }
    return {
      seed: this.seed,
      nodes: this.opts.nodes,
      mutation: this.mutation,
      scenarioRun: this.scenarioRun,
      steps: this.steps,
      virtualMs: this.now,
      faults: { ...this.faults },
      stats: { ...this.stats },
      opsChecked: this.history.length + this.#pastHistories.reduce((a, h) => a + h.length, 0),
      indeterminateOps: [this.history, ...this.#pastHistories].reduce((a, h) => a + h.filter((x) => x.returnAt === undefined).length, 0),
      linearizability: lin,
      violation,
      traceHash: (this.#traceHash >>> 0).toString(16).padStart(8, '0'),
      wallMs: Math.round(performance.now() - t0),
    };
  }

  /** The oracle state of node n's generation. */
  #o(n: SimNode): GenOracles {
    return this.#gens[n.gen]!;
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
    return m !== undefined && !NODE_MUTATIONS.has(m) ? { ...base, testMutation: m as TestMutation } : base;
  }

  #addNode(id: NodeId): SimNode {
    const rng = this.#nodeRng.fork();
    const n: SimNode = {
      id,
      state: 'down',
      gen: this.#curGen,
      promote: false,
      registry: null,
      incarnation: undefined,
      wantRole: undefined,
      pausedUntil: 0,
      inc: 0,
      fs: new SimFs(),
      wiped: false,
      raft: null,
      replica: null,
      kv: null,
      log: new LogView(),
      membership: this.#bootstrap,
      crashBeforeSend: false,
      crashPending: false,
      lagging: Promise.resolve(),
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

  /** Boots (or reboots) a node from its disk: the agent's recovery, then the agent's replica. */
  #start(n: SimNode): void {
    n.inc++;
    n.state = 'booting';
    n.fs.cancelCrash();
    n.fs.reboot();
    n.crashPending = false;
    n.lagging = Promise.resolve();
    const inc = n.inc;
    void this.#boot(n, inc).catch((e: unknown) => {
      if (e instanceof SimCrashError) return; // the disk crashed under recovery: #crash() restarts it
      // The history is crash-only: recovery must never find damage.
      this.#failLater(e instanceof SimViolation ? e : new SimViolation('recovery', `node ${n.id} cannot recover its disk after crashes alone: ${(e as Error).message}`));
    });
  }

  async #boot(n: SimNode, inc: number): Promise<void> {
    if (n.promote) await this.#forceNewCluster(n, inc);
    if (n.inc !== inc) return;
    // As in a cluster mid-upgrade: even nodes write legacy (QKVS 2) snapshots, odd ones composite (QSMS); every node reads both.
    const replicated = createKvState({ clusterFeatureLevel: () => (n.id % 2 === 0 ? 1 : 2) });
    const fs: StorageFs = this.mutation === 'walSkipsFsync' ? skipHotPathDatasync(n.fs) : n.fs;
    const { storage, state } = await WalStorage.open(DATA_DIR, {
      fs,
      segmentBytesMax: this.profile.segmentBytes,
      commitPersistEveryEntries: this.profile.commitPersistEvery,
      validateSnapshot: (chunks) => replicated.registry.validate(chunks),
    });
    if (n.inc !== inc) return;
    for (const w of state.warnings) this.#trace(`recovery-warning ${w.replace(/\s+/g, '_').slice(0, 60)}`, n.id);
    if (state.snapshot) await replicated.registry.restore(state.openSnapshot());
    const kv = simView(replicated);
    if (n.inc !== inc) return;
    const snap: SnapshotMeta = state.snapshot ?? { index: 0, term: 0, membership: this.#bootstrap };
    if (kv.appliedIndex !== snap.index) this.#fail('snapshot-meta', `node ${n.id}: recovered snapshot meta at ${snap.index} but its state is at ${kv.appliedIndex}`);
    this.#checkDigest(n, kv, true);
    const base = this.#o(n).chainAt.get(posKey(snap.index, snap.term));
    if (base === undefined) this.#fail('log-matching', `node ${n.id} recovered a snapshot at (${snap.index}, ${snap.term}) that no log ever held`);
    n.log.reset(snap.index, snap.term, base);
    // Only from its own disk can the simulator tell which terms it never made durable.
    if (n.wiped) n.wiped = false;
    else this.#o(n).forgetLostTerms(n.id, state.hardState.term);
    for (const e of state.entries) this.#logWrite(n, e);
    n.membership = snap.membership;
    const wipe = this.scenarioRun === 'wipe';
    // The WAL's incarnation ids are random: the simulator names them in the order it first sees them, so that a seed replays exactly.
    const incarnation = wipe ? this.#incarnationName(state.incarnation) : undefined;
    n.incarnation = incarnation;
    const cfg = this.#config(n.id, n.rng);
    const raft = new RawNode(incarnation !== undefined ? { ...cfg, incarnation } : cfg, { hardState: state.hardState, snapshot: snap, entries: state.entries, applied: snap.index });
    n.registry = incarnation !== undefined ? this.#memberRegistry(n, incarnation) : null;
    const s = raft.status();
    if (s.commit < state.hardState.commit) this.#fail('commit-monotonic', `node ${n.id} restarted with commit ${s.commit} below its durable commit ${state.hardState.commit}`);
    n.raft = raft;
    n.kv = kv;
    n.state = 'up';
    n.role = 'follower';
    n.term = state.hardState.term;
    n.commit = s.commit;
    n.replica = new Replica({
      raw: raft,
      log: this.#logStore(n, inc, storage),
      net: this.#network(n, inc),
      sm: this.#stateMachine(n, replicated, kv),
      clock: this.#clock(n, inc),
      tickMs: n.tickMs,
      logger: SILENT,
      metrics: NO_METRICS,
      hooks: this.#hooks(n, inc),
      lastSnapshot: state.snapshot,
    });
    this.#trace('start', n.id, n.inc, state.hardState.term, state.hardState.commit, snap.index, n.log.lastIndex);
    if (this.#manual) raft.setAutoCampaign(false);
    n.replica.start();
    if (n.registry !== null) this.#joinRegistry(n, inc, n.registry);
    // Its peers' connections to it come up: a leader among them heartbeats it at once.
    for (const o of this.nodes.values()) {
      if (o !== n && this.#alive(o)) this.#onNode(o, o.inc, this.now + 1, () => o.replica!.peerConnected(n.id));
    }
  }

  #alive(n: SimNode | undefined, inc?: number): n is SimNode & { raft: RawNode; replica: Replica; kv: KvReader } {
    return n !== undefined && n.state === 'up' && n.replica !== null && (inc === undefined || n.inc === inc);
  }

  /** Defers `run` while the node is paused; returns true if it did. */
  #deferIfPaused(n: SimNode, run: () => void): boolean {
    if (n.pausedUntil <= this.now) return false;
    this.#at(n.pausedUntil + n.rng.int(3), run);
    return true;
  }

  /** Runs `fn` at `at` if incarnation `inc` of the node is still up, later if it is paused then. */
  #onNode(n: SimNode, inc: number, at: number, fn: () => void): void {
    const go = (): void => {
      if (!this.#alive(n, inc)) return;
      if (this.#deferIfPaused(n, go)) return;
      fn();
    };
    this.#at(at, go);
  }

  // The replica's ports, per incarnation: everything an earlier incarnation
  // (crashed, its promises abandoned) still tries to do is dropped.

  #clock(n: SimNode, inc: number): Clock {
    return {
      every: (ms, fn) => {
        let on = true;
        const loop = (): void => {
          if (!on) return;
          fn();
          this.#onNode(n, inc, this.now + ms + (n.rng.chance(0.2) ? n.rng.int(3) - 1 : 0), loop);
        };
        this.#onNode(n, inc, this.now + n.rng.int(ms), loop);
        return () => void (on = false);
      },
      after: (ms, fn) => {
        let on = true;
        this.#onNode(n, inc, this.now + ms, () => on && fn());
        return () => void (on = false);
      },
      soon: (fn) => this.#onNode(n, inc, this.now, fn),
    };
  }

  #hooks(n: SimNode, inc: number): ReplicaHooks {
    return {
      admit: n.registry === null ? () => true : ((r) => (m) => r.admit(m))(n.registry),
      onSoftState: (_prev, next) => {
        n.role = next.role;
      },
      afterReady: n.registry === null ? () => this.#observe(n, inc) : ((r) => (rd: Ready) => {
        this.#observe(n, inc);
        this.#registryAfterReady(n, inc, r, rd);
      })(n.registry),
      onConfApplied: (index, ce) => this.#onConfApplied(n, index, ce),
      onFatal: (e) => this.#nodeFailed(n, inc, e),
      notLeader: () => Object.assign(new NodeError('not_leader', 'not the leader'), { lead: n.raft?.status().lead ?? NONE }),
      nameOf: (id) => `n${id}`,
    };
  }

  /** A replica stopped on an error: a crash of its disk, an oracle, or a real failure (a violation). */
  #nodeFailed(n: SimNode, inc: number, e: Error): void {
    if (n.inc !== inc) return;
    if (n.fs.down) {
      // A crash scheduled inside the file system fired in the middle of an operation.
      this.#down(n, 20 + this.#faultRng.int(1500), 'midOpCrash');
      return;
    }
    this.#failLater(e instanceof SimViolation ? e : new SimViolation('node-failed', `node ${n.id} stopped: ${e.message}\n${e.stack ?? ''}`));
  }

  #logStore(n: SimNode, inc: number, wal: WalStorage): LogStore {
    return {
      save: async (hs, entries, mustSync) => {
        this.#persisting(n, hs, entries);
        if (this.mutation === 'ackBeforePersist') {
          // Planted bug: acknowledge now, write (and sync) after the disk's latency.
          const delay = 1 + this.#diskRng.int(this.profile.diskMaxMs);
          n.lagging = n.lagging.then(() => new Promise<void>((r) => this.#onNode(n, inc, this.now + delay, r))).then(() => wal.save(hs, entries, mustSync));
          n.lagging.catch(() => undefined);
        } else {
          // The disk is busy for a while: a crash meanwhile loses the write.
          if (mustSync) await new Promise<void>((r) => this.#onNode(n, inc, this.now + 1 + this.#diskRng.int(this.profile.diskMaxMs), r));
          await wal.save(hs, entries, mustSync);
        }
        if (n.inc !== inc) return NEVER;
        if (n.crashBeforeSend) {
          // Persisted a Ready that advances the leader's commit; crash before its messages go out.
          n.crashBeforeSend = false;
          this.#crash(n, 100 + this.#faultRng.int(1500), 'killOnCommit');
          return NEVER;
        }
      },
      readSnapshot: (meta) => wal.readSnapshot(meta),
      saveSnapshot: async (meta, chunks, onProgress) => {
        const r = await wal.saveSnapshot(meta, chunks, onProgress);
        this.#trace('snapshot', n.id, meta.index, meta.term);
        return r;
      },
      installSnapshot: async (meta, chunks, onProgress) => {
        const base = this.#o(n).chainAt.get(posKey(meta.index, meta.term));
        if (base === undefined) this.#fail('log-matching', `node ${n.id} installs a snapshot at (${meta.index}, ${meta.term}) that no log ever held`);
        const r = await wal.installSnapshot(meta, chunks, onProgress);
        n.log.reset(meta.index, meta.term, base);
        n.membership = meta.membership;
        this.#trace('install', n.id, meta.index, meta.term);
        return r;
      },
      compact: async (index) => {
        const r = await wal.compact(index);
        n.log.compact(index);
        return r;
      },
    };
  }

  /** Oracles on what a node is about to persist (the log it writes, its hard state). */
  #persisting(n: SimNode, hs: HardState | undefined, entries: readonly Entry[]): void {
    if (!this.#alive(n)) return;
    n.role = n.raft.status().role;
    for (const e of entries) this.#logWrite(n, e);
    if (hs) {
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
        if (this.#phase === 'faults' && this.#faultRng.chance(this.profile.killOnCommit)) n.crashBeforeSend = true;
      }
      n.commit = hs.commit;
      n.term = hs.term;
      this.#observeCommit(n, hs.commit);
    }
    if (n.role === 'leader') this.#checkLeaderCompleteness(n);
  }

  #stateMachine(n: SimNode, replicated: KvState, kv: KvReader): StateMachine {
    const registry = replicated.registry;
    return {
      get appliedIndex() {
        return registry.appliedIndex;
      },
      apply: (index, data) => {
        const h = mix(fnv(data), index);
        const prev = this.#o(n).appliedAt.get(index);
        if (prev === undefined) this.#o(n).appliedAt.set(index, h);
        else if (prev !== h) this.#fail('state-machine-safety', `node ${n.id} applied a different entry at index ${index} than another node did`);
        const committed = this.#o(n).committedHash[index];
        const mine = n.log.hashAt(index);
        if (committed !== undefined && mine !== undefined && committed !== mine) {
          this.#fail('state-machine-safety', `node ${n.id} applies entry ${index}, which is not the entry committed there`);
        }
        const r = registry.apply(index, data);
        this.#checkDigest(n, kv);
        return r;
      },
      markApplied: (index) => {
        // A membership entry: it moves the applied index, nothing else.
        const prev = this.#o(n).appliedAt.get(index);
        if (prev === undefined) this.#o(n).appliedAt.set(index, -1);
        else if (prev !== -1) this.#fail('state-machine-safety', `node ${n.id} applied a membership entry at index ${index} where another node applied a command`);
        registry.markApplied(index);
        this.#checkDigest(n, kv);
        const g = this.#o(n);
        if (g.forced?.index === index && g.initial === undefined) g.initial = new Map(this.#keys.map((k) => [k, kv.get(k)?.value ?? null]));
      },
      snapshot: () => registry.snapshot(),
      restore: async (chunks) => {
        await registry.restore(chunks);
        this.#checkDigest(n, kv, true);
      },
    };
  }

  /**
   * State-machine safety: equal state at equal applied index on every node. A
   * cheap digest of the keys at every index; the registry's full checksum (over its
   * record, sessions and clock included, and each machine's section hash) every 32nd index and
   * at convergence.
   */
  #checkDigest(n: SimNode, kv: KvReader, full = kv.appliedIndex % 32 === 0): void {
    let h = mix(0x811c9dc5, kv.appliedIndex, kv.revision);
    let after: string | undefined;
    for (;;) {
      const page = kv.range('', 1000, after);
      for (const r of page.records) {
        for (let i = 0; i < r.key.length; i++) h = Math.imul(h ^ r.key.charCodeAt(i), 0x01000193) >>> 0;
        for (let i = 0; i < r.value.length; i++) h = Math.imul(h ^ r.value.charCodeAt(i), 0x01000193) >>> 0;
        h = mix(h, r.createRevision, r.modRevision, r.version);
      }
      if (!page.more || page.records.length === 0) break;
      after = page.records[page.records.length - 1]!.key;
    }
    this.#sameAt(n, kv.appliedIndex, `${h}`);
    if (full) this.#sameAt(n, -kv.appliedIndex - 1, kv.checksum());
  }

  #sameAt(n: SimNode, key: number, d: string): void {
    const prev = this.#o(n).digestAt.get(key);
    if (prev === undefined) this.#o(n).digestAt.set(key, d);
    else if (prev !== d) this.#fail('state-machine-safety', `node ${n.id} state machine at applied ${key < 0 ? -key - 1 : key} differs from another node's at the same index`);
  }


  #onConfApplied(n: SimNode, index: number, ce: ConfEntry): void {
    // The entry carries the resulting membership; recompute it from the
    // change as a cross-check of the core's membership bookkeeping.
    let mine: Membership | undefined;
    try {
      mine = applyConfChange(n.membership, ce.change);
    } catch {
      mine = undefined;
    }
    // The forced rewrite's entry (a new generation's first) is not a single change of the one before it.
    const forced = this.#o(n).forced;
    if (forced !== undefined && forced.index === index) mine = forced.membership;
    if (mine === undefined || JSON.stringify(mine) !== JSON.stringify(ce.membership)) {
      this.#fail(
        'membership',
        `node ${n.id}: conf entry ${index} (${JSON.stringify(ce.change)}) carries membership ${JSON.stringify(ce.membership)} but applying the change to ${JSON.stringify(n.membership)} gives ${mine === undefined ? 'an invalid change' : JSON.stringify(mine)}`,
      );
    }
    n.membership = ce.membership;
    if (ce.change.op === 'setMember' && !this.#seenConf.has(index)) {
      this.#seenConf.add(index);
      const k = ce.change.member.catchUpTo !== undefined ? 'rejoinGated' : 'memberRecorded';
      this.stats[k] = (this.stats[k] ?? 0) + 1;
    }
    // Decommission nodes whose removal has been applied somewhere.
    for (const id of ce.membership.removed) {
      if (this.#removedIds.has(id) || this.nodes.get(id)?.gen !== n.gen) continue;
      this.#removedIds.add(id);
      this.#at(this.now + 300, () => {
        const r = this.nodes.get(id);
        // A removal in one generation says nothing of the nodes of another (the old site after a promotion).
        if (r === undefined || r.state === 'gone' || r.gen !== n.gen) return;
        r.state = 'gone';
        r.raft = null;
        r.replica = null;
        r.kv = null;
        r.inc++;
        this.#trace('decommission', id);
      });
    }
  }

  // --------------------------------------------------------------- network

  #linkKey(from: NodeId, to: NodeId): number {
    return from * 4096 + to;
  }

  #network(n: SimNode, inc: number): PeerNetwork {
    return {
      send: (msgs) => {
        if (this.#alive(n, inc)) this.#send(n, msgs);
      },
      sendSnapshot: async (_to, msg, chunks) => {
        // The stream is read from the sender's disk at once (no virtual time
        // passes), then travels as one message.
        const parts: Uint8Array[] = [];
        for await (const c of chunks) parts.push(c);
        return new Promise<void>((resolve, reject) => {
          if (!this.#alive(n, inc)) return; // abandoned with its replica
          this.#sendSnapshot(n, msg, Buffer.concat(parts), resolve, reject);
        });
      },
    };
  }

  #send(n: SimNode, msgs: readonly Message[]): void {
    for (const m of msgs) {
      const copies = this.#netRng.chance(this.#weather.dup) ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        if (this.#netRng.chance(this.#weather.drop)) {
          this.#trace('drop', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
          continue;
        }
        const delay = 1 + this.#netRng.int(this.#weather.delayMaxMs);
        this.#at(this.now + delay, () => this.#deliver(m));
      }
    }
  }

  #sendSnapshot(n: SimNode, m: Message, data: Uint8Array, resolve: () => void, reject: (e: Error) => void): void {
    if (this.#netRng.chance(this.#weather.drop)) {
      this.#trace('drop', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
      this.#at(this.now + 1, () => reject(new Error('snapshot stream lost')));
      return;
    }
    const delay = 1 + this.#netRng.int(this.#weather.delayMaxMs);
    const deliver = (): void => {
      const t = this.nodes.get(m.to);
      if (!this.#alive(t) || this.#blocked.has(this.#linkKey(m.from, m.to)) || this.#gated(this.nodes.get(m.from), t)) {
        this.#trace('lost', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
        reject(new Error('snapshot stream broken'));
        return;
      }
      if (this.#deferIfPaused(t, deliver)) return;
      if (t.gen !== this.nodes.get(m.from)?.gen) this.#crossGeneration(m, t);
      this.#trace('deliver', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index, m.entries.length, m.commit, m.reject ? 1 : 0);
      const source = {
        bytes: data.length,
        read: async function* (): AsyncGenerator<Uint8Array> {
          // In chunks, as the transport delivers it.
          for (let i = 0; i < data.length; i += 4096) yield data.subarray(i, Math.min(data.length, i + 4096));
        },
        discard: () => Promise.resolve(),
      };
      t.replica.receiveSnapshot(m.from, m.snapshot!, source, m, (chunks) => this.#validator.validate(chunks));
      resolve();
    };
    this.#at(this.now + delay, deliver);
  }

  #deliver(m: Message): void {
    const t = this.nodes.get(m.to);
    const from = this.nodes.get(m.from);
    const fromInc = from?.inc ?? 0;
    if (!this.#alive(t) || this.#blocked.has(this.#linkKey(m.from, m.to)) || this.#gated(from, t)) {
      // The sender's transport sees the connection fail (a silent 'drop' above it does not).
      this.#trace('lost', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index);
      if (from !== undefined && this.#alive(from, fromInc) && this.#netRng.chance(0.5)) {
        this.#onNode(from, fromInc, this.now + 1, () => from.replica!.run((raw) => raw.reportUnreachable(m.to)));
      }
      return;
    }
    if (this.#deferIfPaused(t, () => this.#deliver(m))) return;
    if (t.gen !== from?.gen) this.#crossGeneration(m, t);
    this.#trace('deliver', MSG_TYPES.indexOf(m.type), m.from, m.to, m.term, m.index, m.entries.length, m.commit, m.reject ? 1 : 0);
    t.replica.receive([m]);
  }

  // --------------------------------------------------------------- oracles

  #logWrite(n: SimNode, e: Entry): void {
    const h = n.log.append(e);
    if (h === undefined) this.#fail('log-matching', `node ${n.id} wrote entry ${e.index} after its last index ${n.log.lastIndex} (gap)`);
    if (h !== undefined && !this.#o(n).recordWrite(n.id, e.index, e.term, h)) {
      this.#fail('log-matching', `node ${n.id} has entry (${e.index}, ${e.term}) but its log up to there differs from another node's that has the same entry`);
    }
  }

  /** A node says `commit` is committed: record it, and check it agrees with what was committed before. */
  #observeCommit(n: SimNode, commit: number): void {
    if (commit <= n.log.baseIndex && commit <= this.#o(n).maxCommitted) return; // inside its snapshot
    if (commit > n.log.lastIndex) this.#fail('commit', `node ${n.id} commits ${commit} beyond its last log index ${n.log.lastIndex}`);
    if (commit <= this.#o(n).maxCommitted) {
      const want = this.#o(n).committedHash[commit];
      const have = n.log.hashAt(commit);
      if (want !== undefined && have !== undefined && want !== have) {
        this.#fail('state-machine-safety', `node ${n.id} treats a different entry as committed at index ${commit} than was committed before`);
      }
      return;
    }
    const from = Math.max(this.#o(n).maxCommitted + 1, n.log.baseIndex);
    if (this.#o(n).maxCommitted > 0 && this.#o(n).maxCommitted >= n.log.baseIndex) {
      const want = this.#o(n).committedHash[this.#o(n).maxCommitted];
      const have = n.log.hashAt(this.#o(n).maxCommitted);
      if (want !== undefined && have !== undefined && want !== have) {
        this.#fail('leader-completeness', `node ${n.id} commits up to ${commit} on a log that lacks the entry committed at ${this.#o(n).maxCommitted}`);
      }
    }
    for (let i = from; i <= commit; i++) {
      const h = n.log.hashAt(i);
      if (h !== undefined) this.#o(n).committedHash[i] = h;
    }
    this.#o(n).maxCommitted = commit;
    this.#o(n).checkpoints.push({ index: commit, term: n.term });
    this.#trace('committed', n.id, commit, n.term);
    for (const o of this.nodes.values()) if (o.role === 'leader' && o.gen === n.gen && this.#alive(o)) this.#checkLeaderCompleteness(o);
  }

  /** Leader completeness: a leader of term T holds every entry committed in a term below T. */
  #checkLeaderCompleteness(n: SimNode): void {
    for (let i = this.#o(n).checkpoints.length - 1; i >= 0; i--) {
      const cp = this.#o(n).checkpoints[i]!;
      if (cp.term >= n.term) continue;
      if (cp.index <= n.log.baseIndex) return;
      const have = n.log.hashAt(cp.index);
      const want = this.#o(n).committedHash[cp.index];
      if (have === undefined || (want !== undefined && have !== want)) {
        this.#fail(
          'leader-completeness',
          `leader ${n.id} of term ${n.term} lacks the entry committed at index ${cp.index} in term ${cp.term} (its log ends at ${n.log.lastIndex})`,
        );
      }
      return;
    }
  }

  /** After each Ready: election safety (one leader per term, ever) and commit monotonic. */
  #observe(n: SimNode, inc: number): void {
    if (!this.#alive(n, inc)) return;
    const s = n.raft.status();
    n.role = s.role;
    if (s.role === 'leader') {
      const prev = this.#o(n).leaderOfTerm.get(s.term);
      if (prev === undefined) {
        this.#o(n).leaderOfTerm.set(s.term, n.id);
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
    c.op = { seq, op, invokeAt: this.now, proposed: false, busy: false };
    this.#trace('invoke', c.id, seq, op.kind === 'read' ? 0 : op.kind === 'write' ? 1 : 2);
    this.#at(this.now + CLIENT_TIMEOUT_MS, () => this.#timeout(c, seq));
    this.#attempt(c, seq);
  }

  #retry(c: SimClient, seq: number, afterMs: number, newGuess: NodeId): void {
    c.guess = newGuess > 0 ? newGuess : this.#randomNodeId();
    this.#at(this.now + afterMs, () => this.#attempt(c, seq));
  }

  #randomNodeId(): NodeId {
    const ids = [...this.nodes.values()].filter((n) => n.state === 'up' && n.gen === this.#curGen).map((n) => n.id);
    return ids.length === 0 ? 1 : ids[this.#clientRng.int(ids.length)]!;
  }

  #attempt(c: SimClient, seq: number): void {
    const p = c.op;
    if (p === null || p.seq !== seq || p.busy) return;
    const n = this.nodes.get(c.guess);
    // Clients talk to the current generation only (after a promotion the operator points them at the DR site).
    if (!this.#alive(n) || n.gen !== this.#curGen) return this.#retry(c, seq, 5 + this.#clientRng.int(20), 0);
    if (n.pausedUntil > this.now) return this.#retry(c, seq, 100, 0);
    const inc = n.inc;
    p.busy = true;
    const refused = (e: unknown): void => {
      if (c.op !== p) return;
      p.busy = false;
      if (!(e instanceof NodeError)) return this.#failLater(e);
      const lead = (e as NodeError & { lead?: NodeId }).lead ?? 0;
      this.#retry(c, seq, (e.code === 'not_leader' ? 5 : 20) + this.#clientRng.int(20), e.code === 'not_leader' ? lead : 0);
    };
    if (p.op.kind === 'read') {
      const key = p.op.key;
      this.#trace('readIndex', c.id, n.id);
      n.replica.readBarrier(REPLICA_TIMEOUT_MS).then(() => {
        // Read the node's state as of now (it applied at least the read index).
        if (!this.#alive(n, inc) || c.op !== p) return;
        const value = n.kv.get(key)?.value ?? null;
        this.#trace('readServed', c.id, n.id, n.kv.appliedIndex);
        this.#at(this.now + 1 + this.#clientRng.int(5), () => {
          if (c.op === p) this.#complete(c, { kind: 'read', value });
        });
      }, refused);
      return;
    }
    const op = p.op;
    const command: Command =
      op.kind === 'write'
        ? { type: 'put', key: op.key, value: op.value }
        : {
            type: 'txn',
            compare: [op.expected === null ? { key: op.key, target: 'exists', op: '=', value: false } : { key: op.key, target: 'value', op: '=', value: op.expected }],
            success: [{ type: 'put', key: op.key, value: op.value }],
            failure: [],
          };
    p.proposed = true;
    this.#trace('propose', c.id, n.id, seq);
    n.replica.propose(this.#encode(command), REPLICA_TIMEOUT_MS).then((res: ApplyResult) => {
      if (c.op !== p) return;
      const ok = 'succeeded' in res ? res.succeeded : !('error' in res);
      if ('error' in res) this.#failLater(new SimViolation('sim', `client ${c.id}: command refused by the state machine: ${JSON.stringify(res)}`));
      this.#at(this.now + 1 + this.#clientRng.int(5), () => {
        if (c.op === p) this.#complete(c, ok ? { kind: 'ok' } : { kind: 'fail' });
      });
    }, (e: unknown) => {
      // Refused before it reached the log, or overwritten there (never applied):
      // either way it did not take effect; commit_unknown leaves it uncertain.
      if (e instanceof NodeError && e.code === 'commit_unknown') return;
      if (c.op === p) p.proposed = false;
      refused(e);
    });
  }

  /**
   * An entry as a leader would write it: the previous release's format 1 or
   * this release's envelope (format 2), mixed, as in a cluster mid-upgrade.
   */
  #encode(command: Command): Uint8Array {
    return this.#clientRng.chance(0.5)
      ? encodeEnvelope({ machine: KV_MACHINE_ID, at: this.now, payload: encodeKvPayload(command) })
      : encodeCommand({ at: this.now, command });
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

  #count(kind: string): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + 1;
  }

  #leader(): (SimNode & { raft: RawNode; replica: Replica; kv: KvReader }) | undefined {
    let best: (SimNode & { raft: RawNode; replica: Replica; kv: KvReader }) | undefined;
    for (const n of this.nodes.values()) {
      if (this.#alive(n) && n.gen === this.#curGen && n.role === 'leader' && n.pausedUntil <= this.now && (best === undefined || n.term > best.term)) best = n;
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
        if (leader) leader.replica.run((raw) => this.#membershipChange(leader, raw));
        return;
      case 'transfer':
        if (leader) leader.replica.run((raw) => this.#transfer(leader, raw));
        return;
      case 'burst': {
        // A burst of background writes (not in the checked history): long uncommitted tails to lose.
        const target = (this.#curGen > 0 && r.chance(0.4) ? this.#oldLeader() : undefined) ?? leader ?? pick();
        if (target !== undefined) this.#burst(target, 5 + r.int(40));
        return;
      }
      case 'quiet':
        return;
      case 'manual':
        if (!this.#manual) this.#manualPeriod(100 + r.int(2500));
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
    if (!this.#alive(target)) return;
    this.#count('burst');
    target.replica.run((raw) => {
      for (let i = 0; i < k; i++) {
        try {
          raw.propose(this.#encode({ type: 'put', key: '_bulk', value: `b${i}` }));
        } catch (e) {
          if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
          break;
        }
      }
      this.#trace('burst', target.id, k);
    });
  }

  #crash(n: SimNode, downMs: number, kind: string): void {
    if (n.state !== 'up' || n.crashPending) return;
    if (kind === 'crash' && this.#faultRng.chance(this.profile.midOpCrash)) {
      // Strike inside one of the next file-system operations (a write half
      // done, a rename not yet durable); if the node does not touch its disk
      // soon, crash it between operations instead.
      n.crashPending = true;
      const inc = n.inc;
      n.fs.scheduleCrash(this.#faultRng.int(6), this.#diskRng.fork());
      this.#at(this.now + 30, () => {
        if (n.inc !== inc || n.state !== 'up') return;
        n.crashPending = false;
        if (n.fs.down) return this.#down(n, downMs, 'midOpCrash');
        n.fs.cancelCrash();
        this.#crash(n, downMs, kind);
      });
      return;
    }
    n.fs.crash(this.#diskRng);
    this.#down(n, downMs, kind);
  }

  /** The node's process is gone (its disk already crashed): everything it had in memory is lost. */
  #down(n: SimNode, downMs: number, kind: string): void {
    if (n.state !== 'up') return;
    const rep = n.fs.lastCrash;
    n.state = 'down';
    n.raft = null;
    n.replica = null;
    n.kv = null;
    n.inc++;
    n.pausedUntil = 0;
    n.role = 'follower';
    n.crashPending = false;
    n.crashBeforeSend = false;
    this.#count(kind);
    if (rep && rep.tornWrites > 0) this.#count('tornWrite');
    this.#trace(kind, n.id, rep?.lostFileOps ?? 0, rep?.tornWrites ?? 0);
    // Peers whose connection to it reset may pre-vote at once.
    for (const o of this.nodes.values()) {
      if (this.#alive(o) && o.raft.status().lead === n.id && this.#faultRng.chance(0.5)) {
        const oi = o.inc;
        this.#onNode(o, oi, this.now + 1 + this.#faultRng.int(5), () => o.replica!.peerReset(n.id));
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

  #membershipChange(leader: SimNode, raft: RawNode): void {
    const r = this.#faultRng;
    const mem = raft.status().membership;
    const voting = mem.members.filter((m) => m.role !== 'learner');
    // The DR node stays a learner of the old generation (never promoted or removed by the cluster).
    const dr = (id: NodeId): boolean => id === this.#drId && this.#curGen === 0;
    // A rejoining learner (catchUpTo) is the leader's to promote once caught up (src/node/registry.ts), never the operator's.
    const learners = mem.members.filter((m) => m.role === 'learner' && !dr(m.id) && m.catchUpTo === undefined);
    const removable = mem.members.filter((m) => m.id !== leader.id && !dr(m.id) && (m.role === 'learner' || voting.length > Math.max(3, this.opts.nodes - 1)));
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
      raft.proposeConfChange(cc);
      this.#count(`conf-${cc.op}`);
      this.#trace('confChange', leader.id, cc.op === 'add' ? 0 : cc.op === 'remove' ? 1 : 2, cc.id);
      if (fresh !== undefined) this.#addNode(fresh);
    } catch (e) {
      if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
      this.#count('confRefused');
      this.#trace('confRefused', leader.id, cc.id);
    }
  }

  #transfer(leader: SimNode, raft: RawNode): void {
    const r = this.#faultRng;
    const voters = raft
      .status()
      .membership.members.filter((m) => m.role === 'voter' && m.id !== leader.id)
      .map((m) => m.id);
    if (voters.length === 0) return;
    const to = voters[r.int(voters.length)]!;
    try {
      raft.transferLeadership(to);
      this.#count('transfer');
      this.#trace('transfer', leader.id, to);
    } catch (e) {
      if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e;
      this.#count('transferRefused');
    }
  }

  // ------------------------------------------- generations ('promote-dr')

  /** The network refuses a message between generations, as the transport's handshake does (unless the planted bug delivers it). */
  #gated(from: SimNode | undefined, to: SimNode): boolean {
    if (from === undefined || from.gen === to.gen || this.mutation === 'deliverCrossGeneration') return false;
    this.stats['generationRefused'] = (this.stats['generationRefused'] ?? 0) + 1;
    return true;
  }

  /** Oracle: no message crosses generations (only the planted bug gets here; the other oracles must then catch its damage). */
  #crossGeneration(m: Message, to: SimNode): void {
    if (this.mutation !== 'deliverCrossGeneration') {
      this.#fail('generation-gate', `node ${to.id} (generation ${to.gen}) received ${m.type} from node ${m.from} of generation ${this.nodes.get(m.from)?.gen}`);
    }
    this.stats['crossGenerationDelivered'] = (this.stats['crossGenerationDelivered'] ?? 0) + 1;
  }

  /** The highest-term leader of an older generation (the old site after a promotion). */
  #oldLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (this.#alive(n) && n.gen < this.#curGen && n.role === 'leader' && n.pausedUntil <= this.now && (best === undefined || n.term > best.term)) best = n;
    }
    return best;
  }

  /** 'promote-dr': the voters' site is lost (power loss, or cut off from the DR node); the operator then promotes the DR node. */
  #loseSite(): void {
    if (this.#phase !== 'faults') return;
    const r = this.#faultRng;
    const dr = this.nodes.get(this.#drId)!;
    const site = [...this.nodes.values()].filter((n) => n !== dr && n.gen === dr.gen && n.state === 'up');
    if (r.chance(0.5)) {
      // Power loss at the primary site; it comes back later with its old data.
      for (const n of site) {
        n.fs.cancelCrash();
        if (!n.fs.down) n.fs.crash(this.#diskRng);
        this.#down(n, 200 + r.int(3000), 'siteLost');
      }
    } else {
      // The DR site is cut off; the primary site keeps running (and may elect, with higher terms).
      for (const n of site) {
        this.#blocked.add(this.#linkKey(n.id, dr.id));
        this.#blocked.add(this.#linkKey(dr.id, n.id));
      }
      this.#count('siteCutOff');
      this.#trace('siteCutOff', dr.id);
    }
    this.#at(this.now + 20 + r.int(300), () => this.#promote(dr));
  }

  /**
   * `quorate promote-dr --confirm` (src/node/promotion.ts; its reachability
   * check is an operator aid, as --force): the DR node's process stops (a
   * clean stop: what it wrote stays in the page cache), the shipped rewrite
   * runs on its data dir, it starts again as the only voter of a new generation.
   */
  #promote(dr: SimNode): void {
    if (dr.state === 'gone' || this.#phase === 'done') return;
    dr.inc++;
    dr.state = 'down';
    dr.raft = null;
    dr.replica = null;
    dr.kv = null;
    dr.pausedUntil = 0;
    dr.role = 'follower';
    dr.crashPending = false;
    dr.crashBeforeSend = false;
    dr.promote = true;
    this.#count('promoteDr');
    this.#trace('promoteDr', dr.id);
    this.#start(dr);
  }

  /** The rewrite of src/node/generation.ts (forceNewCluster) on the node's SimFs, with the oracles of the new generation. */
  async #forceNewCluster(n: SimNode, inc: number): Promise<void> {
    n.promote = false;
    const { storage, state } = await WalStorage.open(DATA_DIR, {
      fs: n.fs,
      segmentBytesMax: this.profile.segmentBytes,
      commitPersistEveryEntries: this.profile.commitPersistEvery,
      validateSnapshot: (chunks) => this.#validator.validate(chunks),
    });
    try {
      if (n.inc !== inc) return; // abandoned (cannot happen within one step; kept for safety)
      const last = state.entries.at(-1);
      const lastIndex = last?.index ?? state.snapshot?.index ?? 0;
      const plan = planSoleVoter(membershipAtEnd(state, this.#bootstrap), n.id, state.hardState, lastIndex, last?.term ?? state.snapshot?.term ?? 0);
      const baseHash = this.#o(n).chainAt.get(posKey(state.snapshot?.index ?? 0, state.snapshot?.term ?? 0));
      if (baseHash === undefined) this.#fail('log-matching', `node ${n.id} recovered a snapshot that no log ever held`);
      // 1. The generation first (bootstrap.json): from here on it talks to no node of the old one.
      const g = new GenOracles(this.now);
      this.#gens.push(g);
      n.gen = this.#gens.length - 1;
      this.#curGen = n.gen;
      g.seed(state, baseHash, plan.entry);
      // 2., 3. The conf entry, then the commit index naming it.
      await writeSoleVoter(storage, plan);
      const notKnownCommitted = lastIndex - Math.min(state.hardState.commit, lastIndex);
      this.stats['promotedNotKnownCommitted'] = (this.stats['promotedNotKnownCommitted'] ?? 0) + notKnownCommitted;
      this.#trace('forcedNewCluster', n.id, n.gen, plan.entry.index, plan.entry.term, notKnownCommitted);
      this.#newGenerationClients(n);
    } finally {
      await storage.close();
    }
  }

  /** The operator points the clients at the promoted node: the old generation's history ends (ops in flight there are indeterminate). */
  #newGenerationClients(dr: SimNode): void {
    const moved: SimClient[] = [];
    for (const c of this.#clients) {
      c.guess = dr.id;
      c.lastSeen.clear();
      const p = c.op;
      if (p === null) continue;
      if (p.proposed) this.history.push({ client: c.id, op: p.op, output: undefined, invokeAt: p.invokeAt, returnAt: undefined });
      c.op = null;
      moved.push(c);
    }
    this.#pastHistories.push(this.history.splice(0));
    for (const c of moved) this.#next(c);
  }

  /** The current generation's client history, after writes that set its initial state (the promoted node's, at the forced entry). */
  #genHistory(): HistoryEntry[] {
    if (this.#curGen === 0) return this.history;
    const g = this.#gens[this.#curGen]!;
    if (g.initial === undefined) {
      if (this.history.some((h) => h.returnAt !== undefined)) this.#fail('sim', `generation ${this.#curGen} answered clients before any node applied its forced entry`);
      return this.history;
    }
    const init: HistoryEntry[] = [];
    for (const [key, value] of g.initial) {
      if (value !== null) init.push({ client: 0, op: { kind: 'write', key, value }, output: { kind: 'ok' }, invokeAt: g.since - 2, returnAt: g.since - 1 });
    }
    return [...init, ...this.history];
  }

  // ------------------------------------------- wiped nodes ('wipe')

  #incarnationName(walId: string): string {
    let name = this.#incarnations.get(walId);
    if (name === undefined) this.#incarnations.set(walId, (name = `inc${this.#incarnations.size + 1}`));
    return name;
  }

  #memberRegistry(n: SimNode, incarnation: string): MemberRegistry {
    return new MemberRegistry({
      selfId: n.id,
      self: this.#said(n, incarnation),
      members: new Map(this.#bootstrap.members.map((m) => [m.id, `sim${m.id}:7000`])),
      logger: SILENT,
      configuredRole: n.wantRole ?? 'voter',
      fatalIfBroken: (e) => n.replica?.fatalIfBroken(e) ?? false,
      featureLevel: 2,
    });
  }

  #said(n: SimNode, incarnation = n.incarnation): Announced {
    return { nodeName: `n${n.id}`, apiUrl: undefined, role: n.wantRole, incarnation };
  }

  /** As node.ts wires the registry: refresh at start, periodic reconciliation, and a handshake with every peer up. */
  #joinRegistry(n: SimNode, inc: number, reg: MemberRegistry): void {
    if (!this.#alive(n, inc)) return;
    const replica = n.replica;
    replica.run((raw) => reg.refresh(raw));
    this.#clock(n, inc).every(500, () => reg.queueReconcile(replica));
    for (const o of this.nodes.values()) {
      if (o === n || !this.#alive(o) || o.gen !== n.gen || o.registry === null) continue;
      this.#handshake(n, o);
      this.#handshake(o, n);
    }
  }

  /** `a` dials `b`: b hears a's hello (what a announces); a hears b's ack, with the incarnation b records for a. */
  #handshake(a: SimNode & { replica: Replica }, b: SimNode & { replica: Replica }): void {
    const ra = a.registry!;
    const rb = b.registry!;
    rb.announce(a.id, this.#said(a));
    rb.queueReconcile(b.replica);
    const known = rb.record(a.id)?.incarnation;
    if (known !== undefined && known !== a.incarnation) {
      this.#trace('rejoining', a.id, b.id);
      this.stats['rejoiningMarked'] = (this.stats['rejoiningMarked'] ?? 0) + 1;
      a.replica.run((raw) => ra.markRejoining(raw, b.id, known));
    }
  }

  /** node.ts #afterReady: membership records refreshed, reconciliation queued on the leader. */
  #registryAfterReady(n: SimNode, inc: number, reg: MemberRegistry, rd: Ready): void {
    if (!this.#alive(n, inc)) return;
    if (rd.snapshot || rd.entries.some((e) => e.type === 'conf')) reg.refresh(n.raft);
    if (rd.softState?.role === 'leader' || rd.committedEntries.some((e) => e.type === 'conf')) reg.dirty = true;
    if (n.replica.soft.role === 'leader' && reg.dirty && rd.committedEntries.length > 0) reg.queueReconcile(n.replica);
  }

  /**
   * The operator wipes a node's data dir (and it restarts with an empty one),
   * as docs/operations.md allows: only once the cluster is healthy (the leader's
   * committed membership records the node's incarnation, nobody is rejoining).
   */
  #wipeTick(): void {
    if (this.#phase !== 'faults') return;
    const r = this.#faultRng;
    this.#at(this.now + 200 + r.int(800), () => this.#wipeTick());
    const leader = this.#leader();
    if (leader === undefined) return;
    const mem = leader.membership;
    if (mem.members.some((m) => m.catchUpTo !== undefined)) return;
    // Healthy as `quorate status` shows it: every member is up, and every member has applied the record of every member's incarnation.
    const healthy = mem.members.every((m) => {
      const x = this.nodes.get(m.id);
      if (x === undefined || x.state !== 'up' || x.incarnation === undefined) return false;
      return mem.members.every((o) => this.nodes.get(o.id)!.membership.members.find((y) => y.id === m.id)?.incarnation === x.incarnation);
    });
    // And only where the other voters are a quorum without it: an amnesiac voter's vote cannot count, so
    // wiping one of two voters leaves no quorum until the leader has recorded it (forced recovery is the way out).
    const voters = mem.members.filter((m) => isVoting(m.role)).length;
    if (!healthy || voters < 3) return;
    const ok = mem.members.filter((m) => !isVoting(m.role) || voters - 1 >= Math.floor(voters / 2) + 1);
    if (ok.length === 0) return;
    const m = ok[r.int(ok.length)]!;
    const n = this.nodes.get(m.id)!;
    n.wantRole = isVoting(m.role) ? m.role : undefined;
    if (n.state === 'up') {
      n.fs.cancelCrash();
      if (!n.fs.down) n.fs.crash(this.#diskRng);
      this.#down(n, 20 + r.int(1000), 'wipe');
    } else this.#count('wipe');
    n.fs = new SimFs();
    n.wiped = true;
    n.incarnation = undefined;
    this.#trace('wiped', n.id, n.state === 'down' ? 1 : 0);
  }

  // ------------------------------------------------------- heal, liveness

  /**
   * Failover mode "manual" (or a paused cluster) for a while: no node starts
   * an election on its own (RawNode.setAutoCampaign(false)); a leader that
   * loses its quorum still steps down. The simulated operator notices that
   * no leader is known and runs `quorate failover` on a random voter, which
   * campaigns; Raft's vote rule still decides, so it can lose.
   */
  #manualPeriod(ms: number): void {
    this.#manual = true;
    this.#count('manual');
    this.#trace('manual', ms);
    for (const n of this.nodes.values()) if (this.#alive(n)) n.replica.run((raw) => raw.setAutoCampaign(false));
    const until = this.now + ms;
    const operator = (): void => {
      if (!this.#manual) return;
      if (this.now >= until || this.#phase !== 'faults') return this.#automatic();
      if (this.#leader() === undefined) {
        const voters = this.#upNodes().filter((n) => this.#alive(n) && n.raft.membership().members.some((m) => m.id === n.id && m.role === 'voter'));
        const v = voters.length > 0 ? voters[this.#faultRng.int(voters.length)] : undefined;
        if (v !== undefined && this.#alive(v)) {
          this.#count('manualFailover');
          this.#trace('operatorFailover', v.id);
          v.replica.run((raw) => raw.campaign());
        }
      }
      this.#at(this.now + 100 + this.#faultRng.int(300), operator);
    };
    this.#at(this.now + 100 + this.#faultRng.int(300), operator);
  }

  #automatic(): void {
    if (!this.#manual) return;
    this.#manual = false;
    this.#trace('automatic');
    for (const n of this.nodes.values()) if (this.#alive(n)) n.replica.run((raw) => raw.setAutoCampaign(true));
  }

  #heal(): void {
    this.#automatic();
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
    if (leader !== undefined) {
      const s = leader.raft.status();
      const members = s.membership.members;
      const digest = leader.kv.checksum();
      const ok = members.every((m) => {
        const n = this.nodes.get(m.id);
        return this.#alive(n) && n.kv.appliedIndex === s.commit && n.kv.checksum() === digest;
      });
      if (ok && leader.kv.appliedIndex === s.commit) {
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
        return `n${n.id}:${n.state}${s ? `/${s.role} t${s.term} c${s.commit} a${n.kv!.appliedIndex} last${s.lastIndex}${prs}` : ''}`;
      })
      .join(' ');
    const clients = this.#clients.map((c) => `c${c.id}:${c.op ? `${c.op.op.kind}@${c.op.invokeAt}` : 'idle'}${c.liveAfterHeal ? '+' : '-'}`).join(' ');
    return `phase ${this.#phase} missed its deadline ${this.#phaseDeadline}ms (healed at ${this.#healedAt}ms); nodes ${nodes}; clients ${clients}`;
  }
}

/** 'mixed': most seeds run no scenario, about one in eight each scenario. */
function drawScenario(r: SeededRandom): Exclude<SimScenario, 'mixed'> {
  const p = r.next();
  return p < 0.125 ? 'promote-dr' : p < 0.25 ? 'wipe' : 'none';
}

export function runSeed(opts: SimOptions): Promise<SimResult> {
  return new Simulation(opts).run();
}

/** Resolves once every queued promise continuation has run (a macrotask comes after all microtasks). */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
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

/** What the simulator reads of a node's state: the KV's reads, the registry's applied index, and the registry's checksum (the whole state: sessions and clock too). */
function simView(s: KvState): KvReader {
  return { ...s.reader, get appliedIndex() { return s.registry.appliedIndex; }, get revision() { return s.kv.revision; }, checksum: () => s.registry.checksum() };
}
