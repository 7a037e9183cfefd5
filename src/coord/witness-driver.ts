// The witness in a running node (`cluster.coordination: "redis"` with
// `database.mode: "local-sync"`; design: ./WITNESS.md): the pure
// WitnessAgent (./witness-agent.ts) driven in real time, its scripts run on
// Redis (./witness.ts) one at a time, its core inputs (appoint, commit set,
// step down) applied inside the replica's loop together with the view they
// were decided on. Monotonic time only (performance.now).
import { performance } from 'node:perf_hooks';
import { existsSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { RaftError, type RawNode } from '../raft/index.js';
import { parseRedisConnectionString } from './redis-conn.js';
import { RedisLink } from './redis-link.js';
import { RedisWitness, WitnessPersistenceError } from './witness.js';
import { WitnessAgent, type AgentEffect, type AgentStatus, type CoreView } from './witness-agent.js';
import type { WitnessOp, WitnessResult } from './witness-record.js';

const STEP_MS = 50;
const PERSISTENCE_LOG_MS = 10_000;

export interface WitnessDriverOptions {
  readonly config: QuorateConfig;
  readonly logger: Logger;
  readonly nodeId: number;
  readonly voters: readonly number[];
  readonly tickMs: number;
  /** Runs `op` inside the replica's loop (Replica.run). */
  readonly run: (op: (raw: RawNode) => void) => void;
}

export interface WitnessView extends AgentStatus {
  readonly redisConnected: boolean;
  /** The Redis witness's persistence refusal, if any. */
  readonly problem: string | undefined;
}

/** True when this config runs the witness (two or more data nodes, Redis as the witness). */
export function usesWitness(config: QuorateConfig): boolean {
  return config.cluster.coordination === 'redis' && config.database.mode === 'local-sync';
}

export class WitnessDriver {
  readonly #o: WitnessDriverOptions;
  readonly #log: Logger;
  readonly #link: RedisLink;
  readonly #witness: RedisWitness;
  readonly #agent: WitnessAgent;
  readonly #seenFile: string;
  #saw: boolean;
  #persistenceOk = false;
  #problem: string | undefined;
  #problemLoggedAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #lastWaiting: string | undefined;

  constructor(o: WitnessDriverOptions) {
    this.#o = o;
    const c = o.config;
    this.#log = o.logger;
    const target = parseRedisConnectionString(c.redis.connectionString, c.redis.tlsEnabled);
    const renewMs = c.cluster.leaderRenewalIntervalSeconds * 1000;
    this.#link = new RedisLink(target, o.logger, { commandTimeoutMs: Math.min(1000, renewMs), name: `quorate-witness-${c.node.nodeName}` });
    this.#witness = new RedisWitness(this.#link.client, c.redis.keyPrefix, target.display);
    this.#agent = new WitnessAgent({
      id: o.nodeId, voters: o.voters, ttlMs: c.cluster.leaderLockTtlSeconds * 1000, renewMs, pollMs: Math.min(renewMs, 500),
      stopBudgetMs: 500, degrade: c.database.inSyncDegrade, degradeAfterMs: c.cluster.electionTimeoutMs,
    });
    this.#seenFile = join(c.node.dataDir, 'witness-seen');
    this.#saw = existsSync(this.#seenFile);
  }

  start(): void {
    void this.#link.open().finally(() => this.#schedule(0));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    const st = this.#agent.status();
    if (st.leading) {
      await this.#inLoop((raw) => raw.stepDown());
      try {
        await this.#witness.run({ op: 'release', me: this.#o.nodeId, epoch: st.epoch });
        this.#log.info({ event: 'witness_released', epoch: st.epoch }, `released the witness lease (epoch ${st.epoch})`);
      } catch {
        // It expires by its TTL.
      }
    }
    await this.#link.close();
  }

  /** Leader-only work with external effects asks this at the moment it acts. */
  mayAct(): boolean {
    return this.#agent.mayAct(performance.now());
  }

  /** The step-down deadline of the lease this node holds (performance.now() time), or undefined when it holds none. */
  leaseDeadline(): number | undefined {
    return this.#agent.deadline();
  }

  view(): WitnessView {
    return { ...this.#agent.status(), redisConnected: this.#link.connected, problem: this.#problem };
  }

  /**
   * The operator's `quorate witness confirm` on this node: trust (or recreate)
   * the record, with the epoch floor at least this node's term and `minEpoch`
   * (the other node's term when it cannot be asked: WITNESS.md).
   */
  async confirm(minEpoch = 0): Promise<{ epoch: number; inSync: readonly number[] }> {
    const term = await this.#inLoop((raw) => raw.status().term);
    const r = await this.#witness.run({ op: 'confirm', me: this.#o.nodeId, floor: Math.max(term, minEpoch), ttl: this.#o.config.cluster.leaderLockTtlSeconds * 1000 });
    if (!r.ok) throw new Error(`the witness refused confirm (${r.refused})`);
    this.#markSeen();
    this.#log.warn({ event: 'witness_confirmed', epoch: r.record.epoch, inSync: r.record.insync }, `an operator confirmed the witness record on this node: epoch ${r.record.epoch}, in-sync set ${r.record.insync.join(',')}`);
    return { epoch: r.record.epoch, inSync: r.record.insync };
  }

  // ------------------------------------------------------------ loop

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#step().finally(() => this.#schedule(STEP_MS)), ms);
    this.#timer.unref();
  }

  async #step(): Promise<void> {
    if (!this.#persistenceOk && !(await this.#checkPersistence())) return;
    const op = await this.#inLoop((raw) => {
      const { op: next, effects } = this.#agent.next(performance.now(), this.#coreView(raw));
      this.#apply(raw, effects);
      return next;
    });
    if (op === undefined || this.#stopped) return;
    // Not awaited: the next steps still check the step-down deadline while the script is in flight
    // (the agent runs one script at a time).
    void this.#runScript(op).catch((e: unknown) => this.#log.error({ event: 'witness_failed', err: (e as Error).message }, `the witness driver failed: ${(e as Error).message}`));
  }

  async #runScript(op: WitnessOp): Promise<void> {
    if (op.op === 'create') this.#markSeen();
    const sentAt = performance.now();
    let res: WitnessResult | undefined;
    try {
      res = await this.#witness.run(op);
      this.#link.succeeded();
    } catch (e) {
      this.#link.failed(e, this.#agent.leading ? 'the leader cannot renew its witness lease; it steps down before the lease can expire unless a renewal succeeds' : 'this node cannot take the witness lease until it reaches Redis');
    }
    if (res?.record && !this.#saw) this.#markSeen();
    await this.#inLoop((raw) => this.#apply(raw, this.#agent.result(op, res, sentAt, performance.now(), this.#coreView(raw))));
    this.#logResult(op, res);
  }

  async #checkPersistence(): Promise<boolean> {
    try {
      await this.#witness.checkPersistence();
      this.#persistenceOk = true;
      this.#problem = undefined;
      this.#link.succeeded();
      return true;
    } catch (e) {
      if (e instanceof WitnessPersistenceError) {
        this.#problem = e.message;
        const now = performance.now();
        if (now - this.#problemLoggedAt >= PERSISTENCE_LOG_MS) {
          this.#problemLoggedAt = now;
          this.#log.error({ event: 'witness_refused' }, e.message);
        }
      } else {
        this.#link.failed(e, 'this node cannot check the witness\'s persistence until it reaches Redis');
      }
      return false;
    }
  }

  #coreView(raw: RawNode): CoreView {
    const st = raw.status();
    const leader = st.role === 'leader';
    const first = Math.min(...this.#o.voters);
    return {
      leader, term: st.term, commit: st.commit,
      fresh: this.#o.nodeId === first && !this.#saw && st.term === 0 && st.lastIndex === 0,
      peers: leader ? st.progress.map((p) => ({ id: p.id, match: p.match, silentMs: p.ticksSinceContact * this.#o.tickMs })) : [],
    };
  }

  #apply(raw: RawNode, effects: readonly AgentEffect[]): void {
    for (const e of effects) {
      try {
        if (e.kind === 'appoint') {
          raw.appoint(e.epoch, e.inSync);
          this.#log.info({ event: 'witness_appointed', epoch: e.epoch, inSync: e.inSync }, `${this.#o.config.node.nodeName} took the witness lease: leader at epoch ${e.epoch}, in-sync set ${e.inSync.join(',')}`);
        } else if (e.kind === 'commitSet') {
          if (raw.softState().role === 'leader') {
            raw.setCommitSet(e.ids, e.inSync);
            this.#log.info({ event: 'witness_commit_set', commitSet: e.ids, inSync: this.#agent.status().inSync }, `commits now need nodes ${e.ids.join(',')} (in-sync set in the witness: ${this.#agent.status().inSync.join(',')})`);
          }
        } else if (raw.softState().role === 'leader') {
          raw.stepDown();
          this.#log.warn({ event: 'witness_lease_lost', reason: e.reason }, `${this.#o.config.node.nodeName} stepped down as leader: ${e.reason}`);
        }
      } catch (err) {
        if (!(err instanceof RaftError) || err.code === 'invariant_violation') throw err;
        this.#log.warn({ event: 'witness_effect_refused', effect: e.kind, err: err.message }, err.message);
      }
    }
  }

  #logResult(op: WitnessOp, res: WitnessResult | undefined): void {
    if (res && !res.ok && op.op === 'acquire') {
      const waiting = this.#agent.status().waiting;
      if (waiting !== undefined && waiting !== this.#lastWaiting) this.#log.warn({ event: 'witness_waiting', refused: res.refused }, `${this.#o.config.node.nodeName} does not lead: ${waiting}`);
      this.#lastWaiting = waiting;
    } else if (res?.ok && (op.op === 'shrink' || op.op === 'grow')) {
      this.#log.warn({ event: `witness_${op.op}`, inSync: res.record.insync }, `the in-sync set in the witness is now ${res.record.insync.join(',')} (${op.op})`);
    }
  }

  #markSeen(): void {
    if (this.#saw) return;
    const fd = openSync(this.#seenFile, 'w');
    try {
      writeFileSync(fd, 'this node has seen the witness record; it never creates one by itself again\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.#saw = true;
  }

  #inLoop<T>(f: (raw: RawNode) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#o.run((raw) => {
        try {
          resolve(f(raw));
        } catch (e) {
          reject(e as Error);
        }
      });
    });
  }
}
