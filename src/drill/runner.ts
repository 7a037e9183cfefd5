// The drill runner (issue 13 "quorate drill"): one library, used by the CLI
// (`quorate drill`, src/cli/drill.ts) and by a node serving POST /v1/drills
// (src/api/routes-drills.ts), never by the round's target. It speaks only
// the HTTP API, through the client library.
//
// A round: wait until the cluster is healthy (and failover-safe with a
// failure tolerance >= 1 unless forced), pick the target, check it would
// carry out the fault (drills.enabled), start writers and readers, ask the
// target for the fault (POST /v1/cluster/drill/fault: it does it to itself),
// then watch the surviving nodes (detection, new leader), the workload (RTO:
// the first write acknowledged among those sent after the fault took
// effect), and the target (rejoin). Afterwards every acknowledged key is read
// back (RPO: acknowledged writes lost, must be 0), and so are the writes
// whose outcome stayed unknown (how many were applied is reported).
import { randomBytes } from 'node:crypto';
import { QuorateClient, QuorateHttpError, type ClusterStatus } from '../api/client.js';
import type { DrillFault, DrillFaultResult } from '../api/ports-drill.js';
import { summarize, type DrillReport, type DrillRoundReport } from './report.js';
import { Workload } from './workload.js';

export interface DrillRunOptions {
  /** API URLs of the cluster's nodes (one is enough: the others are found in its status). */
  readonly urls: readonly string[];
  /** An admin token. */
  readonly token: string | undefined;
  /** "leader", "random" or a node name. */
  readonly kill: string;
  readonly fault: DrillFault;
  readonly rounds: number;
  /** Pause between rounds (after a round settled, before the next fault). */
  readonly intervalMs: number;
  /** pause / isolate: how long the fault lasts. */
  readonly durationMs: number;
  /** Skip the failover-safety refusal. */
  readonly force: boolean;
  /** Who runs it, for the report ("cli", "node:NAME"). */
  readonly runner: string;
  /** A node that must never be the target (the node running the drill). */
  readonly exclude?: string;
  /** RTO target; default: drills.rtoTargetMs of the first target. */
  readonly rtoTargetMs?: number;
  readonly writers?: number;
  readonly readers?: number;
  /** How long a round may take to recover and rejoin (default 90 s). */
  readonly roundTimeoutMs?: number;
  /** How long to wait for a healthy cluster before a round (default 60 s). */
  readonly settleTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

/** The drill did not start (or stopped before a round): the cluster is not fit for it; the message says what to do. */
export class DrillRefusedError extends Error {
  readonly code = 'drill_refused';
  constructor(message: string) {
    super(message);
    this.name = 'DrillRefusedError';
  }
}

interface Member { readonly nodeName: string; readonly apiUrl: string; readonly voter: boolean }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const NON_VOTING = new Set(['observer', 'dr', 'removed']);
/** Deadline of one status call while waiting for a healthy cluster (a loaded node may be slow to answer; that is not "down"). */
const SETTLE_CALL_MS = 3000;

export class DrillRunner {
  readonly #o: DrillRunOptions;
  readonly #clients = new Map<string, QuorateClient>();
  #members: Member[] = [];
  readonly #log: (line: string) => void;

  constructor(o: DrillRunOptions) {
    if (o.urls.length === 0) throw new DrillRefusedError('no node URL given (--url)');
    if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new DrillRefusedError(`rounds must be 1..100, got ${o.rounds}`);
    if (o.fault === 'switchover' && o.kill !== 'leader') throw new DrillRefusedError(`a switchover drill targets the leader (the planned transfer moves leadership away from it): use --kill leader, not ${JSON.stringify(o.kill)}`);
    this.#o = o;
    this.#log = o.log ?? (() => undefined);
  }

  /** A client of exactly one node: quick calls, no failing over (what that node says is the point). */
  #one(url: string, timeoutMs = 1000): QuorateClient {
    const k = `${url} ${timeoutMs}`;
    let c = this.#clients.get(k);
    if (c === undefined) {
      c = new QuorateClient({ urls: [url], ...(this.#o.token !== undefined ? { token: this.#o.token } : {}), timeoutMs, busyRetries: 0, commitUnknownRetries: 0 });
      this.#clients.set(k, c);
    }
    return c;
  }

  #all(timeoutMs = 10_000): QuorateClient {
    const urls = this.#members.length > 0 ? this.#members.map((m) => m.apiUrl) : [...this.#o.urls];
    return new QuorateClient({ urls, ...(this.#o.token !== undefined ? { token: this.#o.token } : {}), timeoutMs });
  }

  /** A node's status, or undefined when it does not answer within timeoutMs (short while a round is measured, longer while settling). */
  async #status(url: string, timeoutMs = 800): Promise<ClusterStatus | undefined> {
    try {
      return await this.#one(url, timeoutMs).clusterStatus();
    } catch {
      return undefined;
    }
  }

  async #refreshMembers(): Promise<void> {
    for (const url of [...this.#members.map((m) => m.apiUrl), ...this.#o.urls]) {
      const st = await this.#status(url, SETTLE_CALL_MS);
      const peers = st?.peers;
      if (!Array.isArray(peers)) continue;
      const members = peers.flatMap((p) => (typeof p.nodeName === 'string' && typeof p['apiUrl'] === 'string' ? [{ nodeName: p.nodeName, apiUrl: (p['apiUrl'] as string).replace(/\/$/, ''), voter: !NON_VOTING.has(String(p.role)) }] : []));
      if (members.length > 0) {
        this.#members = members;
        return;
      }
    }
    throw new DrillRefusedError(`no node answered at ${this.#o.urls.join(', ')} with the cluster's members; is the cluster running, and is the token an admin token?`);
  }

  #member(name: string): Member {
    const m = this.#members.find((x) => x.nodeName === name);
    if (m === undefined) throw new DrillRefusedError(`no member named ${JSON.stringify(name)} (members: ${this.#members.map((x) => x.nodeName).join(', ')}); use --kill leader, random or a member's name`);
    return m;
  }

  /**
   * The leader's status once every member answers and is healthy from the
   * leader's view, and the cluster is failover-safe with a failure tolerance
   * >= 1; refused when that does not come within the wait. Forced: only a
   * leader that answers is needed.
   */
  async #settle(): Promise<{ leader: Member; status: ClusterStatus }> {
    const deadline = Date.now() + (this.#o.settleTimeoutMs ?? 60_000);
    let why = 'no node answered';
    for (;;) {
      await this.#refreshMembers().catch((e: Error) => { why = e.message; });
      const ready = await this.#healthy(this.#o.force).catch((e: Error) => { why = e.message; return undefined; });
      if (ready !== undefined) {
        if (this.#o.force) return ready;
        const h = await this.#one(ready.leader.apiUrl, 3000).health('cluster').catch(() => undefined);
        const safe = h?.['failoverSafe'] === true;
        const tolerance = typeof h?.['failureTolerance'] === 'number' ? h['failureTolerance'] : 0;
        if (safe && tolerance >= 1) return ready;
        why = `the cluster is not failover-safe with a failure tolerance >= 1 (failoverSafe ${String(safe)}, failureTolerance ${tolerance} on the leader ${ready.leader.nodeName})`;
      }
      if (Date.now() > deadline) throw new DrillRefusedError(`${why}; a drill would put the cluster at risk. Fix it first (\`quorate status\`), or pass --force to run anyway`);
      await sleep(250);
    }
  }

  async #healthy(leaderOnly: boolean): Promise<{ leader: Member; status: ClusterStatus }> {
    const views = await Promise.all(this.#members.map(async (m) => ({ m, st: await this.#status(m.apiUrl, SETTLE_CALL_MS) })));
    const up = views.filter((v) => v.st !== undefined);
    const down = views.filter((v) => v.st === undefined).map((v) => v.m.nodeName);
    if (!leaderOnly && down.length > 0) throw new Error(`${down.join(', ')} did not answer`);
    const leaderName = up.map((v) => v.st!.leader).find((l) => typeof l === 'string');
    if (typeof leaderName !== 'string') throw new Error('no leader is known');
    const lv = views.find((v) => v.m.nodeName === leaderName);
    if (lv?.st?.raftRole !== 'leader') throw new Error(`${leaderName} is not leading yet`);
    if (leaderOnly) return { leader: lv.m, status: lv.st };
    const disagree = up.filter((v) => v.st!.leader !== leaderName).map((v) => v.m.nodeName);
    if (disagree.length > 0) throw new Error(`${disagree.join(', ')} do not follow ${leaderName} yet`);
    const unhealthy = (lv.st.peers ?? []).filter((p) => p['status'] !== 'healthy').map((p) => `${p.nodeName} (${String(p['status'])})`);
    if (unhealthy.length > 0) throw new Error(`not every member is healthy: ${unhealthy.join(', ')}`);
    return { leader: lv.m, status: lv.st };
  }

  async #pickTarget(s: { leader: Member; status: ClusterStatus }, notes: string[]): Promise<{ target: Member; leader: Member; status: ClusterStatus }> {
    const ex = this.#o.exclude;
    const kill = this.#o.kill;
    if (kill === 'leader') {
      if (s.leader.nodeName !== ex) return { target: s.leader, ...s };
      // The runner never faults itself: hand leadership to another voter first (not measured).
      this.#log(`${ex} runs this drill and leads: handing leadership to another voter before the round`);
      // A voter that lagged for a moment after the settle is refused (target_not_caught_up): settle and ask
      // again within the settle wait, as an operator would, rather than fail the round before it starts.
      const deadline = Date.now() + (this.#o.settleTimeoutMs ?? 60_000);
      for (;;) {
        try {
          await this.#one(s.leader.apiUrl, 30_000).switchover();
          break;
        } catch (e) {
          if (!(e instanceof QuorateHttpError && e.code === 'target_not_caught_up') || Date.now() > deadline) throw e;
          this.#log(`the handover waits for a caught-up voter: ${e.message}`);
          await sleep(250);
          s = await this.#settle();
          if (s.leader.nodeName !== ex) return { target: s.leader, ...s };
        }
      }
      notes.push(`${ex} (running the drill) led at the start of the round and handed leadership away first`);
      const again = await this.#settle();
      return { target: again.leader, ...again };
    }
    if (kill === 'random') {
      const pool = this.#members.filter((m) => m.voter && m.nodeName !== ex);
      if (pool.length === 0) throw new DrillRefusedError('no voter other than the node running the drill to fault');
      return { target: pool[Math.floor(Math.random() * pool.length)]!, ...s };
    }
    const t = this.#member(kill);
    if (t.nodeName === ex) throw new DrillRefusedError(`${ex} runs this drill and cannot be its target; run it from another node or the CLI`);
    return { target: t, ...s };
  }

  async #fault(target: Member, dryRun: boolean): Promise<DrillFaultResult> {
    const body = { fault: this.#o.fault, durationMs: this.#o.durationMs, dryRun };
    const r = await this.#one(target.apiUrl, this.#o.fault === 'switchover' ? 30_000 : 5000).request<DrillFaultResult>('POST', '/v1/cluster/drill/fault', { body });
    return r.body;
  }

  async run(): Promise<DrillReport> {
    const startedAt = new Date().toISOString();
    const id = `${startedAt.replace(/[-:]/g, '').replace(/\..*$/, '')}-${randomBytes(3).toString('hex')}`;
    await this.#refreshMembers();
    const rounds: DrillRoundReport[] = [];
    let rtoTargetMs = this.#o.rtoTargetMs;
    let stopped: string | undefined;
    for (let round = 1; round <= this.#o.rounds; round++) {
      if (round > 1 && this.#o.intervalMs > 0) {
        this.#log(`waiting ${this.#o.intervalMs} ms before round ${round}`);
        await sleep(this.#o.intervalMs);
      }
      const notes: string[] = [];
      let r: DrillRoundReport;
      try {
        const { target, leader, status } = await this.#pickTarget(await this.#settle(), notes);
        // Every target must allow faults (drills.enabled); the first one also gives the RTO target.
        const dry = await this.#fault(target, true);
        rtoTargetMs ??= dry.rtoTargetMs;
        this.#log(`round ${round}: ${this.#o.fault} of ${target.nodeName}${target.nodeName === leader.nodeName ? ' (the leader)' : ''}`);
        r = await this.#round(round, id, target, leader, status, notes, rtoTargetMs);
      } catch (e) {
        // Nothing to report yet: the caller gets the error. Later: the report of the rounds run, failed.
        if (rounds.length === 0) throw e;
        stopped = `round ${round} did not run: ${(e as Error).message}`;
        this.#log(stopped);
        break;
      }
      rounds.push(r);
      this.#log(`round ${round}: RTO ${r.rtoMs ?? '-'} ms, new leader ${r.newLeaderMs ?? '-'} ms, lost ${r.lost}, unknown ${r.writesUnknown}, rejoin ${r.rejoinMs ?? '-'} ms: ${r.passed ? 'ok' : 'FAILED'}`);
    }
    const target = rtoTargetMs ?? 15_000;
    return {
      id, runner: this.#o.runner, startedAt, finishedAt: new Date().toISOString(), kill: this.#o.kill, fault: this.#o.fault,
      durationMs: this.#o.fault === 'pause' || this.#o.fault === 'isolate' ? this.#o.durationMs : 0, intervalMs: this.#o.intervalMs, rtoTargetMs: target, forced: this.#o.force, rounds, summary: summarize(rounds, target, stopped === undefined ? [] : [stopped]),
    };
  }

  async #round(round: number, id: string, target: Member, leader: Member, before: ClusterStatus, notes: string[], rtoTargetMs: number): Promise<DrillRoundReport> {
    const wasLeader = target.nodeName === leader.nodeName;
    const termBefore = typeof before.term === 'number' ? before.term : 0;
    const work = new Workload({ urls: this.#members.map((m) => m.apiUrl), token: this.#o.token, prefix: `quorate-drill/${id}/r${round}`, writers: this.#o.writers ?? 2, readers: this.#o.readers ?? 1, callTimeoutMs: 2000 });
    work.start();
    // Warm up: writes are acknowledged before the fault.
    const warm = Date.now() + 5000;
    while (work.acked.length < 10 && Date.now() < warm) await sleep(20);
    await sleep(200);
    let faultAt: number;
    try {
      const sent = Date.now();
      await this.#fault(target, false);
      // crash, pause, isolate take effect when the target answers; a switchover starts when it is asked.
      faultAt = this.#o.fault === 'switchover' ? sent : Date.now();
    } catch (e) {
      await work.stop();
      throw e;
    }
    const survivors = this.#members.filter((m) => m.nodeName !== target.nodeName);
    let detectAt: number | undefined;
    let newLeaderAt: number | undefined;
    let leaderAfter: string | null = null;
    let termAfter: number | null = null;
    let rejoinAt: number | undefined;
    let catchUpTo: number | undefined;
    const deadline = faultAt + (this.#o.roundTimeoutMs ?? 90_000);
    const faultEnds = faultAt + (this.#o.fault === 'pause' || this.#o.fault === 'isolate' ? this.#o.durationMs : 0);
    const rtoOf = (): number | undefined => {
      let best: number | undefined;
      for (const w of work.acked) if (w.sentAt >= faultAt && (best === undefined || w.ackAt < best)) best = w.ackAt;
      return best;
    };
    while (Date.now() < deadline) {
      const views = await Promise.all(survivors.map(async (m) => ({ m, st: await this.#status(m.apiUrl) })));
      const now = Date.now();
      for (const { st } of views) {
        if (st === undefined) continue;
        if (wasLeader) {
          if (detectAt === undefined && st.leader !== leader.nodeName) detectAt = now;
          if (newLeaderAt === undefined && typeof st.leader === 'string' && st.leader !== leader.nodeName && (st.term ?? 0) > termBefore) {
            newLeaderAt = now;
            leaderAfter = st.leader;
            termAfter = st.term ?? null;
          }
        } else if (st.raftRole === 'leader') {
          const p = (st.peers ?? []).find((x) => x.nodeName === target.nodeName);
          if (detectAt === undefined && p !== undefined && p['status'] === 'unreachable') detectAt = now;
          if (newLeaderAt === undefined && st.nodeName !== leader.nodeName) {
            newLeaderAt = now;
            leaderAfter = st.nodeName ?? null;
            termAfter = st.term ?? null;
          }
        }
      }
      // Rejoin: the target answers, follows a leader, and has applied what the leader had committed when it came back.
      if (rejoinAt === undefined && now >= faultEnds) {
        const ts = await this.#status(target.apiUrl);
        if (ts !== undefined && typeof ts.leader === 'string' && (ts.raftRole === 'follower' || ts.raftRole === 'leader')) {
          if (catchUpTo === undefined) {
            const ls = await this.#status(this.#member(ts.leader).apiUrl);
            if (typeof ls?.commitIndex === 'number') catchUpTo = ls.commitIndex;
          }
          if (catchUpTo !== undefined && typeof ts.appliedIndex === 'number' && ts.appliedIndex >= catchUpTo) rejoinAt = Date.now();
        }
      }
      const leaderKnown = !wasLeader || newLeaderAt !== undefined;
      if (rejoinAt !== undefined && rtoOf() !== undefined && leaderKnown && Date.now() >= faultEnds + 500) break;
      await sleep(50);
    }
    // Let the workload run a moment after recovery, then stop it.
    await sleep(300);
    await work.stop();
    if (leaderAfter === null) {
      const s = await this.#healthy(true).catch(() => undefined);
      if (s !== undefined) {
        leaderAfter = s.leader.nodeName;
        termAfter = typeof s.status.term === 'number' ? s.status.term : null;
      }
    }
    const readBack = await this.#readBack(`quorate-drill/${id}/r${round}/`);
    let lost = 0;
    for (const w of work.acked) if (readBack.get(w.key) !== w.value) lost++;
    const unknownApplied = work.unknown.filter((u) => readBack.get(u.key) === u.value).length;
    const rtoAt = rtoOf();
    const readOk = work.reads.filter((r) => r.sentAt >= faultAt).map((r) => r.okAt);
    const rel = (t: number | undefined): number | null => (t === undefined ? null : t - faultAt);
    const rtoMs = rel(rtoAt);
    if (rejoinAt === undefined) notes.push(`${target.nodeName} did not rejoin within ${Math.round((this.#o.roundTimeoutMs ?? 90_000) / 1000)} s (is it restarted after a crash? systemd Restart=always, \`quorate demo\`)`);
    if (wasLeader && newLeaderAt === undefined) notes.push('no new leader was seen');
    const passed = rtoMs !== null && rtoMs <= rtoTargetMs && lost === 0;
    return {
      round, target: target.nodeName, targetWasLeader: wasLeader, leaderBefore: leader.nodeName, termBefore, leaderAfter, termAfter,
      faultAt: new Date(faultAt).toISOString(), detectMs: rel(detectAt), newLeaderMs: rel(newLeaderAt), rtoMs,
      readRecoveryMs: readOk.length > 0 ? Math.min(...readOk) - faultAt : null,
      writesAcked: work.acked.length, writesUnknown: work.unknown.length, unknownApplied, writesFailed: work.failed,
      readsOk: work.reads.length, readsFailed: work.readsFailed, lost, rejoinMs: rel(rejoinAt), passed, notes,
    };
  }

  /** Every key under `prefix`, read linearizably (pages of 10000), as key → value. */
  async #readBack(prefix: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const client = this.#all(30_000);
    let startAfter: string | undefined;
    for (;;) {
      const r = await client.request<{ items?: { key: string; value: string }[]; more?: boolean }>('GET', '/v1/kv', { query: { prefix, limit: 10_000, startAfter } });
      const items = r.body.items ?? [];
      for (const it of items) out.set(it.key, it.value);
      if (r.body.more !== true || items.length === 0) return out;
      startAfter = items[items.length - 1]!.key;
    }
  }
}

/** Runs a drill and keeps its report in the cluster (POST /v1/drills/reports); `recorded` says whether that worked. */
export async function runDrill(o: DrillRunOptions): Promise<{ report: DrillReport; recorded: boolean; recordError?: string }> {
  const runner = new DrillRunner(o);
  const report = await runner.run();
  try {
    const client = new QuorateClient({ urls: [...o.urls], ...(o.token !== undefined ? { token: o.token } : {}), timeoutMs: 15_000 });
    await client.request('POST', '/v1/drills/reports', { body: { report }, write: true });
    return { report, recorded: true };
  } catch (e) {
    return { report, recorded: false, recordError: e instanceof QuorateHttpError ? `${e.code}: ${e.message}` : (e as Error).message };
  }
}
