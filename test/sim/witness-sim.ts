// The witness simulator: two or three data nodes in witness mode
// (src/coord/WITNESS.md) in virtual time, each the shipped core (RawNode with
// `witness: true`) driven by the shipped WitnessAgent, against a simulated
// witness that executes the pure transition function the Lua scripts are
// tested against (src/coord/witness-record.ts). One seed drives every choice.
//
// Faults: node crashes and restarts (everything a Ready persisted survives),
// partitions between nodes, message loss and delay, the witness unreachable
// from one node or from all (a script may be lost before it runs or run and
// lose its answer), the witness restarted with its data (new stamp) or
// without it (record lost); an operator confirms after a while, on the node
// with the most data, no sooner than one lease TTL after the witness changed.
//
// Clocks: each node's monotonic clock and the witness's clock (Redis TIME)
// run at their own rate, fixed per seed: (1+ρ)^u of real time with u in
// [−drift/2, drift/2] (ρ = CLOCK_RATE_BOUND), so with the default drift 1
// any two clocks run apart by at most the stated bound; half of the clocks
// sit at an end of the range. The leader's deadline (its clock), the lease's
// end in the witness (the witness's clock), the core's ticks and the
// silences the agent measures all use their own clock. drift > 1 breaks the
// assumption on purpose (a mutation check); drift 0 is one shared clock.
//
// Oracles: a node appointed leader holds every entry any node applied
// (no acknowledged write lost); applied entries agree index by index; one
// leader per epoch; a node that may act as leader (its deadline plus the
// stop budget not passed, by its clock) holds a live lease in the witness at
// that moment, by the witness's clock (I1, the lease oracle); the client history (writes and ReadIndex reads of
// registers) is linearizable; after the faults heal, writes commit again.
import { RawNode } from '../../src/raft/rawnode.js';
import { SeededRandom } from '../../src/raft/prng.js';
import type { Entry, Membership, Message, NodeId } from '../../src/raft/types.js';
import { RaftError } from '../../src/raft/errors.js';
import { CLOCK_RATE_BOUND } from '../../src/coord/redis-lease.js';
import { WitnessAgent, type AgentEffect, type AgentMutation, type CoreView } from '../../src/coord/witness-agent.js';
import { transition, type WitnessOp, type WitnessRecord, type WitnessResult } from '../../src/coord/witness-record.js';
import { handleReady, type CallerState } from '../support/raft.js';
import { checkHistory, type HistoryEntry, type KvOp } from './linearizability.js';
import { EventQueue } from './heap.js';

export type WitnessSimMutation = AgentMutation | 'promoteOutsideInSync';

export interface WitnessSimOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly degrade: boolean;
  readonly mutation?: WitnessSimMutation;
  readonly faultMs?: number;
  /** Clock-rate spread in units of the bound ρ: each clock runs at (1+ρ)^u of real time, u in [−drift/2, drift/2] (default 1; 0: no drift). */
  readonly drift?: number;
  readonly trace?: (line: string) => void;
  /** The linearizability search's state budget per key (default 200,000); past it the check gives up ('gaveUp'). */
  readonly maxStatesPerKey?: number;
}

export interface WitnessViolation {
  readonly oracle: 'lost-write' | 'state-machine' | 'two-leaders' | 'lease' | 'linearizability' | 'liveness';
  readonly seed: number;
  readonly message: string;
  readonly replay: string;
}

export interface WitnessSimResult {
  readonly seed: number;
  readonly violations: WitnessViolation[];
  readonly linearizability: 'linearizable' | 'violation' | 'gaveUp';
  readonly ops: number;
  readonly acked: number;
  readonly indeterminate: number;
  readonly appointments: number;
  readonly readsWithNodeDown: number;
  readonly faults: Record<string, number>;
  readonly virtualMs: number;
  /** The clock rates (real time = 1): the witness's, then node 1, 2, … */
  readonly clockRates: readonly number[];
}

const STEP_MS = 5;
const TICK_MS = 50;
const TTL_MS = 1000;
const WITNESS_TIMEOUT_MS = 300;
const STOP_BUDGET_MS = 50;
const HEAL_MS = 8000;
const enc = new TextEncoder();
const dec = new TextDecoder();

interface SimNode extends CallerState {
  readonly id: NodeId;
  up: boolean;
  agent: WitnessAgent;
  /** Durable: this node has seen (or is creating) a witness record. */
  sawRecord: boolean;
  /** This node's clock rate (its clock reads rate × real time). */
  readonly rate: number;
  /** The last lease this node held: its epoch, and until when (its clock) its leader work may still be stopping: deadline + stop budget. */
  acting: { epoch: number; until: number } | undefined;
  /** When each peer was last heard from, by this node's clock. */
  lastHeard: Map<NodeId, number>;
  witnessCut: boolean;
  nextTick: number;
  inflight: { op: WitnessOp; sentAt: number; seq: number } | undefined;
  pendingWrites: Map<string, number>;
  pendingReads: Map<number, { op: number; index: number | undefined }>;
}

export function runWitnessSim(o: WitnessSimOptions): WitnessSimResult {
  const rng = new SeededRandom(o.seed * 2654435761 % 4294967296 + 1);
  const rnd = (a: number, b: number) => a + Math.floor(rng.next() * (b - a + 1));
  const chance = (p: number) => rng.next() < p;
  const faultMs = o.faultMs ?? 8000;
  const drift = o.drift ?? 1;
  // The rates come from their own generator, so the fault and client schedules match those of drift 0 seed for seed.
  const clockRng = new SeededRandom(o.seed * 40503 % 4294967296 + 7);
  const clockRate = () => {
    const u = clockRng.next() < 0.5 ? (clockRng.next() < 0.5 ? -0.5 : 0.5) : clockRng.next() - 0.5;
    return Math.pow(1 + CLOCK_RATE_BOUND, u * drift);
  };
  const witnessRate = clockRate();
  const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
  const membership: Membership = { members: ids.map((id) => ({ id, role: 'voter' as const })), removed: [] };
  const violations: WitnessViolation[] = [];
  const replay = `npm run sim:witness -- --seed ${o.seed} --nodes ${o.nodes}${o.degrade ? ' --degrade' : ''}${o.drift !== undefined && o.drift !== 1 ? ` --drift ${o.drift}` : ''}${o.mutation ? ` --mutation ${o.mutation}` : ''} --trace`;
  const violate = (oracle: WitnessViolation['oracle'], message: string) => {
    if (violations.some((v) => v.oracle === oracle)) return;
    violations.push({ oracle, seed: o.seed, message, replay });
    trace(`VIOLATION ${oracle}: ${message}`);
  };
  const faults: Record<string, number> = {};
  const fault = (k: string) => { faults[k] = (faults[k] ?? 0) + 1; };
  let now = 0;
  const trace = (s: string) => o.trace?.(`${String(now).padStart(6)} ${s}`);
  const events = new EventQueue();
  const at = (t: number, run: () => void) => { events.push(t, run); };

  // ------------------------------------------------------------ witness
  let record: WitnessRecord | undefined;
  let stamp = 'redis-1';
  let stampSeq = 1;
  let witnessDownForAll = false;
  /** The witness's clock (Redis TIME). */
  const wnow = () => now * witnessRate;
  /** Every lease the witness granted, `epoch:leader` → its end by the witness's clock (the lease oracle; kept when the record is lost). */
  const leases = new Map<string, number>();
  const exec = (op: WitnessOp): WitnessResult => {
    let r = transition(record, op, wnow(), stamp);
    if (o.mutation === 'promoteOutsideInSync' && op.op === 'acquire' && !r.ok && r.refused === 'not_in_sync' && record) {
      // The broken acquire lets the caller in (and so into the set).
      r = transition({ ...record, insync: [...record.insync, op.me].sort((x, y) => x - y) }, op, wnow(), stamp);
    }
    if (r.ok) record = r.record;
    if (r.ok && (op.op === 'acquire' || op.op === 'renew' || op.op === 'release')) leases.set(`${op.op === 'acquire' ? r.record.epoch : op.epoch}:${op.me}`, r.record.expires);
    return r;
  };

  // ------------------------------------------------------------ nodes
  const agentFor = (id: NodeId) => new WitnessAgent({
    id, voters: ids, ttlMs: TTL_MS, renewMs: 250, pollMs: 200, stopBudgetMs: STOP_BUDGET_MS,
    degrade: o.degrade, degradeAfterMs: 600,
    ...(o.mutation && o.mutation !== 'promoteOutsideInSync' ? { mutation: o.mutation } : {}),
  });
  const rawFor = (n: Pick<CallerState, 'hardState' | 'snapshot' | 'entries'>, id: NodeId) => new RawNode(
    { id, electionTicks: 10, heartbeatTicks: 2, random: new SeededRandom(o.seed * 31 + id), witness: true, snapshotEntries: 1_000_000 },
    { hardState: n.hardState, snapshot: n.snapshot, entries: n.entries },
  );
  const nodes = new Map<NodeId, SimNode>();
  /** A node's clock now. */
  const local = (n: Pick<SimNode, 'rate'>) => now * n.rate;
  for (const id of ids) {
    const base = { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership }, entries: [] as Entry[] };
    nodes.set(id, {
      ...base, id, raw: rawFor(base, id), applied: [], snapshotData: [], incoming: [], up: true, agent: agentFor(id), sawRecord: false, rate: clockRate(), acting: undefined,
      lastHeard: new Map(), witnessCut: false, nextTick: rnd(0, TICK_MS), inflight: undefined, pendingWrites: new Map(), pendingReads: new Map(),
    });
  }
  const cut = new Set<string>();
  let dropRate = 0;

  // ------------------------------------------------------------ clients and oracles
  const history: { client: number; op: KvOp; output: HistoryEntry['output']; invokeAt: number; returnAt: number | undefined }[] = [];
  const committed = new Map<number, { term: number; data: string }>();
  const leaderOfEpoch = new Map<number, NodeId>();
  let appointments = 0;
  let acked = 0;
  let lastAckAt = -1;
  let readCtx = 0;
  /** Linearizable reads answered while some node was down (in the default mode: by a leader whose in-sync set was shrunk to itself). */
  let readsWithNodeDown = 0;

  const apply = (n: SimNode, from: number) => {
    for (const e of n.applied.slice(from)) {
      const d = dec.decode(e.data);
      const prev = committed.get(e.index);
      if (prev && (prev.term !== e.term || prev.data !== d)) violate('state-machine', `node ${n.id} applied ${e.term}/${e.index} ${d}; another node applied ${prev.term}/${e.index} ${prev.data}`);
      if (!prev) committed.set(e.index, { term: e.term, data: d });
      const key = `${e.index}:${e.term}`;
      const opIdx = n.pendingWrites.get(key);
      if (opIdx !== undefined) {
        n.pendingWrites.delete(key);
        const h = history[opIdx]!;
        h.output = { kind: 'ok' };
        h.returnAt = now;
        acked++;
        lastAckAt = now;
      }
    }
  };
  const valueOf = (n: SimNode, key: string, upTo: number): string | null => {
    let v: string | null = null;
    for (const e of n.applied) {
      if (e.index > upTo) break;
      const w = JSON.parse(dec.decode(e.data)) as { k: string; v: string };
      if (w.k === key) v = w.v;
    }
    return v;
  };
  const failPending = (n: SimNode) => {
    // Outcome unknown: the history keeps them open (indeterminate).
    n.pendingWrites.clear();
    n.pendingReads.clear();
  };

  const effect = (n: SimNode, e: AgentEffect) => {
    trace(`n${n.id} ${e.kind} ${JSON.stringify(e)}`);
    try {
      if (e.kind === 'appoint') {
        n.raw.appoint(e.epoch, e.inSync);
        appointments++;
        for (const [i, c] of committed) {
          const mine = n.raw.entry(i);
          if (!mine || mine.term !== c.term) violate('lost-write', `node ${n.id} appointed leader at epoch ${e.epoch} (in-sync ${e.inSync.join(',')}) lacks committed entry ${c.term}/${i} ${c.data} (its log ends at ${n.raw.status().lastIndex})`);
        }
      } else if (e.kind === 'commitSet') {
        if (n.raw.softState().role === 'leader') n.raw.setCommitSet(e.ids, e.inSync);
      } else {
        n.raw.stepDown();
        failPending(n);
      }
    } catch (err) {
      if (!(err instanceof RaftError) || err.code === 'invariant_violation') throw err;
      trace(`n${n.id} ${e.kind} refused: ${err.message}`);
    }
  };

  const coreView = (n: SimNode): CoreView => {
    const st = n.raw.status();
    const leader = st.role === 'leader';
    return {
      leader, term: st.term, commit: st.commit,
      fresh: n.id === 1 && !n.sawRecord && st.term === 0 && st.lastIndex === 0,
      peers: leader ? st.progress.map((p) => ({ id: p.id, match: p.match, silentMs: local(n) - (n.lastHeard.get(p.id) ?? -Infinity) })) : [],
    };
  };

  let witnessSeq = 0;
  const sendWitness = (n: SimNode, op: WitnessOp) => {
    const sentAt = local(n);
    const seq = ++witnessSeq;
    n.inflight = { op, sentAt, seq };
    if (op.op === 'create') n.sawRecord = true;
    const answer = (res: WitnessResult | undefined) => {
      if (!n.up || n.inflight?.seq !== seq) return;
      n.inflight = undefined;
      if (res?.record) n.sawRecord = true;
      trace(`n${n.id} witness ${op.op} -> ${res ? (res.ok ? `ok epoch=${res.record.epoch} leader=${res.record.leader} insync=${res.record.insync.join(',')}` : res.refused) : 'no answer'}`);
      for (const e of n.agent.result(op, res, sentAt, local(n), coreView(n))) effect(n, e);
    };
    const reachable = () => !n.witnessCut && !witnessDownForAll;
    at(now + Math.ceil(WITNESS_TIMEOUT_MS / n.rate), () => answer(undefined));
    if (!reachable() || chance(0.02)) {
      // Lost on the way there, or run and its answer lost on the way back.
      if (chance(0.5)) at(now + rnd(1, 40), () => { if (reachable()) exec(op); });
      return;
    }
    at(now + rnd(1, 20), () => {
      if (!reachable()) return;
      const res = exec(op);
      at(now + rnd(1, chance(0.1) ? 400 : 20), () => { if (reachable()) answer(res); });
    });
  };

  const driveNode = (n: SimNode) => {
    if (!n.up) return;
    while (local(n) >= n.nextTick) {
      n.raw.tick();
      n.nextTick += TICK_MS;
    }
    const { op, effects } = n.agent.next(local(n), coreView(n));
    for (const e of effects) effect(n, e);
    if (op) sendWitness(n, op);
    while (n.raw.hasReady()) {
      const rd = n.raw.ready();
      const before = n.applied.length;
      const out: Message[] = [];
      handleReady(n, rd, out);
      apply(n, before);
      // One leader per epoch, counted when a leader acts (its term is durable and its messages leave):
      // an appointment whose node crashed before persisting it had no effect, and Redis may reissue its epoch after losing it.
      const ss = n.raw.softState();
      if (ss.role === 'leader' && out.length > 0) {
        const term = n.hardState.term;
        const other = leaderOfEpoch.get(term);
        if (other !== undefined && other !== n.id) violate('two-leaders', `nodes ${other} and ${n.id} both acted as leader at epoch ${term}`);
        leaderOfEpoch.set(term, n.id);
      }
      for (const r of rd.readStates) {
        const p = n.pendingReads.get(r.ctx);
        if (p) p.index = r.index;
      }
      for (const ctx of rd.droppedReads) n.pendingReads.delete(ctx);
      for (const m of out) send(m);
    }
    for (const [ctx, p] of n.pendingReads) {
      if (p.index === undefined || n.raw.status().applied < p.index) continue;
      n.pendingReads.delete(ctx);
      const h = history[p.op]!;
      const key = (h.op as { key: string }).key;
      h.output = { kind: 'read', value: valueOf(n, key, n.raw.status().applied) };
      h.returnAt = now;
      if ([...nodes.values()].some((x) => !x.up)) readsWithNodeDown++;
    }
  };

  const send = (m: Message) => {
    if (cut.has(`${m.from}-${m.to}`) || chance(dropRate)) return;
    at(now + rnd(1, chance(0.05) ? 120 : 15), () => {
      const dst = nodes.get(m.to)!;
      if (!dst.up || cut.has(`${m.from}-${m.to}`)) return;
      dst.lastHeard.set(m.from, local(dst));
      dst.raw.step(m);
    });
  };

  const crash = (n: SimNode) => {
    if (!n.up) return;
    n.up = false;
    failPending(n);
    n.inflight = undefined;
    n.acting = undefined;
    trace(`n${n.id} crashed`);
  };
  const restart = (n: SimNode) => {
    if (n.up) return;
    n.raw = rawFor(n, n.id);
    n.agent = agentFor(n.id);
    n.applied = n.applied.filter((e) => e.index <= n.hardState.commit);
    n.lastHeard = new Map();
    n.nextTick = local(n) + rnd(0, TICK_MS);
    n.up = true;
    trace(`n${n.id} restarted term=${n.hardState.term} commit=${n.hardState.commit} log=${n.entries.length}`);
  };
  const operatorConfirm = () => {
    if (record !== undefined && record.stamp === stamp) return;
    // The operator picks the node with the most data (highest last term, then index) and confirms there.
    let best = nodes.get(1)!;
    const key = (n: SimNode) => { const l = n.entries[n.entries.length - 1]; return [l?.term ?? 0, l?.index ?? 0] as const; };
    for (const n of nodes.values()) { const [t, i] = key(n); const [bt, bi] = key(best); if (t > bt || (t === bt && i > bi)) best = n; }
    const floor = Math.max(...[...nodes.values()].map((n) => n.hardState.term));
    // Confirm itself keeps every node from taking the lease for one TTL (an old leader cut off from the witness may
    // act until its deadline): the operator may confirm at once.
    exec({ op: 'confirm', me: best.id, floor, ttl: TTL_MS });
    trace(`operator: witness confirm on n${best.id} (floor ${floor})`);
  };

  /**
   * I1: a node whose deadline plus stop budget has not passed by its clock
   * (its leader work may still be stopping) holds a live lease in the
   * witness, by the witness's clock.
   */
  const checkLease = (n: SimNode): boolean => {
    if (!n.up) return false;
    const d = n.agent.deadline();
    // Its leader work may take the stop budget to stop: after the deadline, or after the agent let go of the lease earlier.
    if (d !== undefined) n.acting = { epoch: n.agent.epoch, until: d + STOP_BUDGET_MS };
    else if (n.acting !== undefined) n.acting.until = Math.min(n.acting.until, local(n) + STOP_BUDGET_MS);
    if (n.acting === undefined || local(n) >= n.acting.until) return false;
    const { epoch, until } = n.acting;
    const end = leases.get(`${epoch}:${n.id}`);
    if (end === undefined || wnow() >= end) {
      violate('lease', `node ${n.id} may still act as leader at epoch ${epoch} (its clock ${local(n).toFixed(1)} < deadline + stop budget ${until.toFixed(1)}) but its lease ${end === undefined ? 'was never granted' : `ended in the witness at ${end.toFixed(1)} (witness clock now ${wnow().toFixed(1)})`}; clock rates: witness ${witnessRate.toFixed(5)}, node ${n.rate.toFixed(5)}`);
    }
    return true;
  };

  // ------------------------------------------------------------ schedule
  let client = 0;
  const issue = () => {
    const leaders = [...nodes.values()].filter((n) => n.up && n.raw.softState().role === 'leader');
    const n = leaders.length > 0 ? leaders[rnd(0, leaders.length - 1)]! : undefined;
    if (!n) return;
    const key = `k${rnd(1, 8)}`;
    const c = client++;
    if (chance(0.7)) {
      const value = `v${c}`;
      try {
        const r = n.raw.propose(enc.encode(JSON.stringify({ k: key, v: value })));
        history.push({ client: c, op: { kind: 'write', key, value }, output: undefined, invokeAt: now, returnAt: undefined });
        n.pendingWrites.set(`${r.index}:${r.term}`, history.length - 1);
      } catch (e) { if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e; }
    } else {
      try {
        const ctx = ++readCtx;
        n.raw.readIndex(ctx);
        history.push({ client: c, op: { kind: 'read', key }, output: undefined, invokeAt: now, returnAt: undefined });
        n.pendingReads.set(ctx, { op: history.length - 1, index: undefined });
      } catch (e) { if (!(e instanceof RaftError) || e.code === 'invariant_violation') throw e; }
    }
  };

  const injectFault = () => {
    const n = nodes.get(rnd(1, o.nodes))!;
    const other = nodes.get(rnd(1, o.nodes))!;
    const k = rnd(0, 99);
    if (k < 22) { fault('crash'); crash(n); at(now + rnd(200, 2500), () => restart(n)); }
    else if (k < 42 && n !== other) {
      fault('partition');
      const both = chance(0.7);
      cut.add(`${n.id}-${other.id}`); if (both) cut.add(`${other.id}-${n.id}`);
      at(now + rnd(300, 3000), () => { cut.delete(`${n.id}-${other.id}`); cut.delete(`${other.id}-${n.id}`); });
    } else if (k < 65) { fault('witness-cut'); n.witnessCut = true; at(now + rnd(300, 3000), () => { n.witnessCut = false; }); }
    else if (k < 72) { fault('witness-down'); witnessDownForAll = true; at(now + rnd(300, 2500), () => { witnessDownForAll = false; }); }
    else if (k < 82) { fault('loss'); dropRate = 0.2; at(now + rnd(300, 2000), () => { dropRate = 0; }); }
    else if (k < 85) { fault('witness-lost'); record = undefined; stamp = `redis-${++stampSeq}`; at(now + rnd(1000, 3000), operatorConfirm); }
    else if (k < 88) { fault('witness-restart'); stamp = `redis-${++stampSeq}`; at(now + rnd(1000, 3000), operatorConfirm); }
    else { fault('crash-pair'); crash(n); crash(other); at(now + rnd(200, 2000), () => restart(n)); at(now + rnd(200, 2000), () => restart(other)); }
  };

  for (let t = rnd(300, 600); t < faultMs; t += rnd(150, 600)) at(t, injectFault);
  const end = faultMs + HEAL_MS;
  at(faultMs, () => {
    cut.clear(); dropRate = 0; witnessDownForAll = false;
    for (const n of nodes.values()) { n.witnessCut = false; restart(n); }
    operatorConfirm();
    trace('healed');
  });

  // ------------------------------------------------------------ run
  let nextClient = 0;
  for (now = 0; now <= end; now += STEP_MS) {
    // Timed events due now (added during the run too), in time order, FIFO on ties.
    for (let t = events.peekAt(); t !== undefined && t <= now; t = events.peekAt()) events.pop()!.run();
    for (const n of nodes.values()) driveNode(n);
    const acting = [...nodes.values()].filter(checkLease);
    if (acting.length > 1) violate('two-leaders', `nodes ${acting.map((n) => `${n.id} (epoch ${n.acting!.epoch})`).join(' and ')} may both act as leader at real time ${now}`);
    if (now >= nextClient) { issue(); nextClient = now + rnd(5, 40); }
  }

  if (lastAckAt < faultMs + HEAL_MS / 2) violate('liveness', `no write acknowledged in the second half of the ${HEAL_MS} ms after the faults healed (last at ${lastAckAt}; record ${JSON.stringify(record)})`);
  const lin = checkHistory(history, { maxStatesPerKey: o.maxStatesPerKey ?? 200_000 });
  if (lin.result === 'violation') violate('linearizability', `key ${lin.key}: the history is not linearizable: ${lin.detail}`);
  return { seed: o.seed, violations, linearizability: lin.result, ops: history.length, acked, indeterminate: history.filter((h) => h.returnAt === undefined).length, appointments, readsWithNodeDown, faults, virtualMs: end, clockRates: [witnessRate, ...[...nodes.values()].map((n) => n.rate)] };
}
