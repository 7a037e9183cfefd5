// The leader mirror (`cluster.coordination: "raft"` with `redis.enabled`):
// Raft elects the leader; the leader writes its name, term and API URL to
// `<prefix>leader` (the key where the Redis lease would be, so applications
// that look the leader up in Redis, as RP-PAM's do, find it there), with the
// TTL `leaderLockTtlSeconds`, rewritten every `leaderRenewalIntervalSeconds`
// and at once when it takes office. A write never replaces a record of a
// higher term (one Lua script over the key).
//
// Every node cross-checks the record against its own Raft view every
// CHECK_MS: the record names another leader for the term this node knows,
// or a higher term than this node knows. A mismatch that lasts longer than a
// heartbeat interval (seen on two checks at least that far apart) is a
// `Split-brain warning`. A missing or older record is no evidence (the
// leader could not write it, or has not yet): the leader logs its failed
// writes (`Leader election failed: Redis unreachable …` from the link).
import type { Logger } from 'pino';
import type { RedisLink } from './redis-link.js';

const CHECK_MS = 250;

const WRITE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, v = pcall(cjson.decode, cur)
  if ok and type(v) == 'table' and tonumber(v.term) and tonumber(v.term) > tonumber(ARGV[2]) then return {0, cur} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, ''}`;

/** This node's Raft view. */
export interface RaftView {
  readonly leading: boolean;
  readonly term: number;
  /** The leader this node knows (undefined: none known). */
  readonly leaderName: string | undefined;
}

export interface MirrorRecord {
  readonly nodeName: string;
  readonly term: number;
  readonly apiUrl: string;
  readonly mirroredBy: 'raft';
}

export class RedisLeaderMirror {
  readonly #link: RedisLink;
  readonly #log: Logger;
  readonly #key: string;
  readonly #o: { nodeName: string; apiUrl: string; ttlMs: number; renewMs: number; heartbeatMs: number; view: () => RaftView };
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #writtenTerm = -1;
  #writtenAt = 0;
  #mismatchSince: number | undefined;
  #mismatchText: string | undefined;
  #warning: string | undefined;
  #warnedFor: string | undefined;
  #stopped = false;

  constructor(o: { link: RedisLink; logger: Logger; keyPrefix: string; nodeName: string; apiUrl: string; ttlMs: number; renewMs: number; heartbeatMs: number; view: () => RaftView }) {
    this.#link = o.link;
    this.#log = o.logger;
    this.#key = `${o.keyPrefix}leader`;
    this.#o = o;
  }

  get key(): string { return this.#key; }

  /** The current split-brain evidence (cleared once the record and the Raft view agree again). */
  get warning(): string | undefined { return this.#warning; }

  start(): void {
    void this.#link.open().finally(() => {
      if (this.#stopped) return;
      this.#timer = setInterval(() => void this.#tick(), CHECK_MS);
      this.#timer.unref();
    });
  }

  /** Leadership changed: write at once rather than at the next tick. */
  poke(): void {
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
  }

  async #tick(): Promise<void> {
    if (this.#busy || this.#stopped) return;
    this.#busy = true;
    try {
      const view = this.#o.view();
      if (view.leading) await this.#write(view);
      await this.#check();
    } finally {
      this.#busy = false;
    }
  }

  async #write(view: RaftView): Promise<void> {
    const now = Date.now();
    if (view.term === this.#writtenTerm && now - this.#writtenAt < this.#o.renewMs) return;
    const record: MirrorRecord = { nodeName: this.#o.nodeName, term: view.term, apiUrl: this.#o.apiUrl, mirroredBy: 'raft' };
    try {
      const r = (await this.#link.client.eval(WRITE, 1, this.#key, JSON.stringify(record), String(view.term), String(this.#o.ttlMs))) as [number, string];
      this.#link.succeeded();
      if (r[0] === 1) {
        if (view.term !== this.#writtenTerm) this.#log.info({ event: 'leader_mirrored', key: this.#key, term: view.term }, `mirrored the leader (${this.#o.nodeName}, term ${view.term}) to Redis key ${this.#key}`);
        this.#writtenTerm = view.term;
        this.#writtenAt = now;
      }
      // r[0] === 0: Redis names a higher term; #check reports it if it lasts.
    } catch (e) {
      this.#link.failed(e, 'the leader cannot mirror itself to Redis (applications that look the leader up there see an old or no record)');
    }
  }

  async #check(): Promise<void> {
    let raw: string | null;
    try {
      raw = await this.#link.client.get(this.#key);
      this.#link.succeeded();
    } catch (e) {
      this.#link.failed(e, 'this node cannot cross-check the leader recorded in Redis');
      return;
    }
    const view = this.#o.view();
    const mismatch = mismatchOf(parseRecord(raw), view, this.#o.nodeName);
    const now = Date.now();
    if (mismatch === undefined) {
      if (this.#warning !== undefined) this.#log.info({ event: 'split_brain_cleared' }, `the leader recorded in Redis agrees with Raft again (${view.leaderName ?? 'none'}, term ${view.term})`);
      this.#mismatchSince = undefined;
      this.#mismatchText = undefined;
      this.#warning = undefined;
      return;
    }
    if (this.#mismatchText !== mismatch) {
      this.#mismatchText = mismatch;
      this.#mismatchSince = now;
      return;
    }
    if (now - this.#mismatchSince! < Math.max(this.#o.heartbeatMs, CHECK_MS)) return;
    this.#warning = mismatch;
    if (this.#warnedFor !== mismatch) {
      this.#warnedFor = mismatch;
      this.#log.error({ event: 'split_brain', key: this.#key, term: view.term }, `Split-brain warning: ${mismatch}. Check that every node reaches the same Redis`);
    }
  }
}

export function parseRecord(raw: string | null): MirrorRecord | undefined {
  if (raw === null) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<MirrorRecord>;
    if (typeof v.nodeName !== 'string' || typeof v.term !== 'number' || typeof v.apiUrl !== 'string') return undefined;
    return { nodeName: v.nodeName, term: v.term, apiUrl: v.apiUrl, mirroredBy: 'raft' };
  } catch {
    return undefined;
  }
}

/** What is wrong between the record in Redis and this node's Raft view, or undefined (also when there is no evidence). */
export function mismatchOf(rec: MirrorRecord | undefined, view: RaftView, selfName: string): string | undefined {
  if (rec === undefined || rec.term < view.term) return undefined;
  const mine = view.leading ? `${selfName} leads term ${view.term}` : view.leaderName !== undefined ? `${selfName} follows ${view.leaderName} in term ${view.term}` : `${selfName} knows no leader in term ${view.term}`;
  if (rec.term > view.term) return `Redis names ${rec.nodeName} leader of term ${rec.term}, but ${mine}`;
  if (view.leaderName !== undefined && rec.nodeName !== view.leaderName) return `Redis names ${rec.nodeName} leader of term ${rec.term}, but ${mine}`;
  return undefined;
}
