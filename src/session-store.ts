// `quorate/session-store`: a session store for express-session kept in the
// replicated KV, so two or more active application nodes behind a load
// balancer share sessions and a session outlives the node that created it.
// Each session is one key (`<prefix><sid>`, JSON) with a TTL from the
// session cookie's expiry (else `ttlMs`), expired by the leader.
//
//   import session from 'express-session';
//   import { QuorateClient } from 'quorate/client';
//   import { quorateSessionStore } from 'quorate/session-store';
//   const QuorateStore = quorateSessionStore(session);
//   app.use(session({ secret, resave: false, saveUninitialized: false,
//     store: new QuorateStore({ client: new QuorateClient({ urls, token }) }) }));
//
// express-session is not a dependency of quorate: the application passes its
// own module in, and the store extends that module's Store (which provides
// regenerate, load and createSession).
import type { QuorateClient } from './api/client.js';

type Callback<T = void> = (err?: unknown, value?: T | null) => void;

export interface SessionStoreOptions {
  readonly client: QuorateClient;
  /** Key prefix in the KV. Default "sess/". */
  readonly prefix?: string;
  /** Lifetime of a session whose cookie has no expiry. Default one day. */
  readonly ttlMs?: number;
  /** Reads: "linearizable" (default: a session written on any node is seen at once) or "stale" (this node's copy). */
  readonly consistency?: 'linearizable' | 'stale';
}

interface SessionData { cookie?: { expires?: string | Date | null; maxAge?: number | null } }

/** What the store adds to express-session's Store. */
export interface QuorateSessionStoreMethods {
  readonly client: QuorateClient;
  readonly prefix: string;
  get(sid: string, cb: Callback<SessionData>): void;
  set(sid: string, sess: SessionData, cb?: Callback): void;
  touch(sid: string, sess: SessionData, cb?: Callback): void;
  destroy(sid: string, cb?: Callback): void;
}

const DAY_MS = 24 * 3600 * 1000;
const MAX_TTL_MS = 365 * DAY_MS;

/** TTL of a session: until its cookie expires, else the default; at least 1 ms, at most a year (the KV's limit). */
export function sessionTtlMs(sess: SessionData, dflt: number, now = Date.now()): number {
  const exp = sess.cookie?.expires;
  const ms = exp != null ? new Date(exp).getTime() - now : typeof sess.cookie?.maxAge === 'number' ? sess.cookie.maxAge : dflt;
  return Math.min(MAX_TTL_MS, Math.max(1, Math.round(Number.isFinite(ms) ? ms : dflt)));
}

/** A store class for express-session: `new (quorateSessionStore(session))({ client })`. */
export function quorateSessionStore<B extends abstract new () => object>(session: { readonly Store: B }): new (o: SessionStoreOptions) => InstanceType<B> & QuorateSessionStoreMethods {
  const Base = session.Store as unknown as new () => object;
  class QuorateSessionStore extends Base implements QuorateSessionStoreMethods {
    readonly client: QuorateClient;
    readonly prefix: string;
    readonly ttlMs: number;
    readonly consistency: 'linearizable' | 'stale';

    constructor(o: SessionStoreOptions) {
      super();
      this.client = o.client;
      this.prefix = o.prefix ?? 'sess/';
      this.ttlMs = o.ttlMs ?? DAY_MS;
      this.consistency = o.consistency ?? 'linearizable';
    }

    get(sid: string, cb: Callback<SessionData>): void {
      this.client.kvGet(this.prefix + sid, { consistency: this.consistency }).then(
        (e) => {
          if (e === undefined) return cb(null, null);
          let parsed: SessionData;
          try {
            parsed = JSON.parse(e.value) as SessionData;
          } catch (err) {
            return cb(new Error(`session ${sid}: stored value is not JSON (${(err as Error).message})`));
          }
          cb(null, parsed);
        },
        (err: unknown) => cb(err),
      );
    }

    set(sid: string, sess: SessionData, cb: Callback = () => undefined): void {
      this.client.kvPut(this.prefix + sid, JSON.stringify(sess), { ttlMs: sessionTtlMs(sess, this.ttlMs) }).then(() => cb(null), (err: unknown) => cb(err));
    }

    /** The KV has no TTL-only refresh: the session is written again with its new expiry. */
    touch(sid: string, sess: SessionData, cb: Callback = () => undefined): void {
      this.set(sid, sess, cb);
    }

    destroy(sid: string, cb: Callback = () => undefined): void {
      this.client.kvDelete(this.prefix + sid).then(() => cb(null), (err: unknown) => cb(err));
    }
  }
  return QuorateSessionStore as unknown as new (o: SessionStoreOptions) => InstanceType<B> & QuorateSessionStoreMethods;
}
