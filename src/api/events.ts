// GET /v1/events: server-sent events of this node's view of the cluster
// (SPEC §4 "Application coordination"): what changed, as it changes.
//
//   event: status      first, the whole /v1/cluster/status body (a baseline)
//   event: role        this node's role, raft role, term or leader changed
//   event: health      quorum, failure tolerance, storage, split-brain warning,
//                      paused/failover mode, a pause's or drain's reason or
//                      expiry (a re-applied pause or drain), or a peer's
//                      health changed
//   event: membership  the set of members or their roles changed
//   event: lag         every sample while this node leads: each follower's
//                      match index and lag (entries, ms)
//
// One sampler per API server (not per stream) reads the node's status every
// EVENTS_SAMPLE_MS and fans the events out. Streams count against the same
// limits as watch streams (429 too_many_watches); a client that stops reading
// and lets more than MAX_UNSENT bytes pile up is cut (it reconnects and gets a
// fresh baseline: every event but `lag` describes a state, so nothing is lost
// that the baseline does not carry).
import type { App, RequestContext, Route } from './context.js';
import { HEADER_SERVED_BY } from './context.js';
import { ApiError } from './errors.js';
import { clusterStatus } from './routes-cluster.js';

export const EVENTS_SAMPLE_MS = 1000;
const MAX_UNSENT = 1024 * 1024;

type Status = Record<string, unknown> & { peers: Record<string, unknown>[] };

export interface ClusterEvent { readonly type: 'status' | 'role' | 'health' | 'membership' | 'lag'; readonly data: Record<string, unknown> }

const pick = (s: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> => Object.fromEntries(keys.map((k) => [k, s[k] ?? null]));
const ROLE_KEYS = ['nodeName', 'role', 'raftRole', 'term', 'leader'] as const;
const HEALTH_KEYS = ['quorumMet', 'failureTolerance', 'votersReachable', 'votersTotal', 'storageHealthy', 'storageError', 'splitBrainWarning', 'failoverMode', 'paused'] as const;

type Hold = { reason?: unknown; since?: unknown; expiresAt?: unknown } | null | undefined;
/** A pause's or drain's reason and expiry, without the ever-shrinking expiresInMs (a change here is a re-applied hold). */
const hold = (h: unknown): Record<string, unknown> | null => {
  const x = h as Hold;
  return x === null || x === undefined ? null : { reason: x.reason ?? null, since: x.since ?? null, expiresAt: x.expiresAt ?? null };
};
function maintenance(s: Status): Record<string, unknown> {
  const drains = (s['drains'] ?? {}) as Record<string, unknown>;
  return { pause: hold(s['pause']), drains: Object.fromEntries(Object.keys(drains).sort().map((n) => [n, hold(drains[n])])) };
}

function peerHealth(s: Status): Record<string, unknown>[] {
  return s.peers.map((p) => ({ nodeName: p['nodeName'], status: p['status'], drained: p['drained'] ?? false }));
}
function members(s: Status): Record<string, unknown>[] {
  return s.peers.map((p) => ({ nodeName: p['nodeName'], id: p['id'], role: p['role'], apiUrl: p['apiUrl'] ?? null }));
}

/** The events that lead from `prev` to `next` (pure; `lag` whenever `next` leads). */
export function diffStatus(prev: Status | undefined, next: Status): ClusterEvent[] {
  const out: ClusterEvent[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  if (prev === undefined || !same(pick(prev, ROLE_KEYS), pick(next, ROLE_KEYS))) out.push({ type: 'role', data: pick(next, ROLE_KEYS) });
  const health = (s: Status): Record<string, unknown> => ({ ...pick(s, HEALTH_KEYS), ...maintenance(s), peers: peerHealth(s) });
  if (prev === undefined || !same(health(prev), health(next))) out.push({ type: 'health', data: { nodeName: next['nodeName'], ...health(next) } });
  if (prev === undefined || !same(members(prev), members(next))) out.push({ type: 'membership', data: { nodeName: next['nodeName'], members: members(next) } });
  if (next['raftRole'] === 'leader') {
    out.push({
      type: 'lag',
      data: {
        nodeName: next['nodeName'],
        term: next['term'],
        commitIndex: next['commitIndex'],
        peers: next.peers.filter((p) => p['self'] !== true).map((p) => ({ nodeName: p['nodeName'], matchIndex: p['matchIndex'], lagEntries: p['replicationLagEntries'], lagMs: p['replicationLagMs'] })),
      },
    });
  }
  return out;
}

interface Subscriber { send(e: ClusterEvent): void }

class EventHub {
  readonly #subs = new Set<Subscriber>();
  #timer: NodeJS.Timeout | undefined;
  #last: Status | undefined;
  #seq = 0;
  readonly #sample: () => Status;

  constructor(sample: () => Status) {
    this.#sample = sample;
  }

  get seq(): number {
    return this.#seq;
  }

  subscribe(s: Subscriber): () => void {
    this.#subs.add(s);
    if (this.#timer === undefined) {
      this.#last = this.#sample();
      this.#timer = setInterval(() => this.#tick(), EVENTS_SAMPLE_MS);
      this.#timer.unref();
    }
    return () => {
      this.#subs.delete(s);
      if (this.#subs.size === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  #tick(): void {
    let next: Status;
    try {
      next = this.#sample();
    } catch {
      return; // a node that is stopping: the streams end with the server
    }
    const events = diffStatus(this.#last, next);
    this.#last = next;
    for (const e of events) {
      this.#seq++;
      for (const s of this.#subs) s.send(e);
    }
  }
}

const hubs = new WeakMap<App, EventHub>();

async function serveEvents(ctx: RequestContext): Promise<void> {
  const app = ctx.app;
  const { limits, watches } = app;
  if (watches.size >= limits.maxWatches) {
    throw new ApiError('too_many_watches', `this node already serves ${watches.size} event and watch streams, its limit (${limits.maxWatches}); close streams you no longer need or use another node`, { limit: 'node', maxWatches: limits.maxWatches }, { 'retry-after': '5' });
  }
  let hub = hubs.get(app);
  if (hub === undefined) {
    hub = new EventHub(() => clusterStatus({ app }) as Status);
    hubs.set(app, hub);
  }
  const res = ctx.res;
  let n = 0;
  const write = (e: ClusterEvent): void => {
    res.write(`id: ${++n}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
  };
  await new Promise<void>((resolve) => {
    let closed = false;
    const stop = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(heartbeat);
      watches.delete(stop);
      if (!res.writableEnded) res.end();
      resolve();
    };
    const unsubscribe = hub.subscribe({
      send: (e) => {
        if (closed) return;
        if (res.writableLength > MAX_UNSENT) {
          app.logger.warn({ event: 'events_closed_slow_consumer', buffered: res.writableLength, token: ctx.principal?.name }, 'event stream consumer too slow; closing its stream (it gets a fresh baseline when it reconnects)');
          stop();
          res.destroy();
          return;
        }
        write(e);
      },
    });
    const heartbeat = setInterval(() => { if (!closed) res.write(': heartbeat\n\n'); }, app.heartbeatMs);
    heartbeat.unref();
    watches.add(stop);
    res.on('close', stop);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      [HEADER_SERVED_BY]: app.cluster.nodeName,
    });
    res.write('retry: 1000\n\n');
    write({ type: 'status', data: clusterStatus(ctx) });
  });
}

export const eventRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/events': { GET: { auth: 'reader', query: [], handle: serveEvents } },
};
