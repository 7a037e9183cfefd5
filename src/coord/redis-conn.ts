// Redis connection settings from `redis.connectionString` and
// `redis.tlsEnabled`, and the one ioredis client quorate opens with them.
//
// Accepted forms:
//   host:port[,password=…][,user=…][,ssl=true|false][,defaultDatabase=N]   (the RP-PAM / StackExchange.Redis form)
//   redis://[user[:password]@]host[:port][/db]   rediss://… (TLS)
// The password is kept out of every message: `display` is host:port only.
import type { Redis } from 'ioredis';
import { ioredisModule } from '../lib/lazy-modules.js';

export interface RedisTarget {
  readonly host: string;
  readonly port: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  readonly tls: boolean;
  /** host:port, for messages (never the password). */
  readonly display: string;
}

export class RedisConnectionStringError extends Error {
  override readonly name = 'RedisConnectionStringError';
}

const SEED_OPTIONS = new Set(['password', 'user', 'ssl', 'defaultdatabase']);

/** Parses a connection string; throws RedisConnectionStringError naming what is wrong (never echoing a password). */
export function parseRedisConnectionString(s: string, tlsEnabled = false): RedisTarget {
  const text = s.trim();
  if (text === '') throw new RedisConnectionStringError('is empty; expected host:port[,password=…][,ssl=false] or redis://host:port');
  if (/^rediss?:\/\//i.test(text)) return fromUrl(text, tlsEnabled);
  if (text.includes('://')) throw new RedisConnectionStringError(`has scheme ${JSON.stringify(text.slice(0, text.indexOf('://')))}; only redis:// and rediss:// URLs, or host:port[,password=…], are accepted`);
  const [addr = '', ...opts] = text.split(',');
  const { host, port } = hostPort(addr.trim());
  let password: string | undefined;
  let username: string | undefined;
  let ssl: boolean | undefined;
  let db = 0;
  for (const raw of opts) {
    const o = raw.trim();
    if (o === '') continue;
    const eq = o.indexOf('=');
    const key = (eq < 0 ? o : o.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? '' : o.slice(eq + 1);
    if (!SEED_OPTIONS.has(key)) throw new RedisConnectionStringError(`has an unknown option ${JSON.stringify(key.slice(0, 40))}; accepted: password, user, ssl, defaultDatabase`);
    if (key === 'password') password = value;
    else if (key === 'user') username = value;
    else if (key === 'ssl') {
      if (!/^(true|false)$/i.test(value.trim())) throw new RedisConnectionStringError(`has ssl=${JSON.stringify(value.slice(0, 20))}; expected ssl=true or ssl=false`);
      ssl = value.trim().toLowerCase() === 'true';
    } else db = dbNumber(value.trim());
  }
  if (ssl === false && tlsEnabled) throw new RedisConnectionStringError('says ssl=false but redis.tlsEnabled is true; make them agree');
  return { host, port, username, password: password === '' ? undefined : password, db, tls: ssl === true || tlsEnabled, display: `${host}:${port}` };
}

function fromUrl(text: string, tlsEnabled: boolean): RedisTarget {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new RedisConnectionStringError('is not a valid redis:// URL');
  }
  if (u.hostname === '') throw new RedisConnectionStringError('has no host');
  const tlsScheme = u.protocol.toLowerCase() === 'rediss:';
  const port = u.port === '' ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, '');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return {
    host,
    port,
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
    db: path === '' ? 0 : dbNumber(path),
    // redis.tlsEnabled turns TLS on for a redis:// URL too (the seed keeps TLS in its own key).
    tls: tlsScheme || tlsEnabled,
    display: `${host.includes(':') ? `[${host}]` : host}:${port}`,
  };
}

function hostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(addr);
  if (!m) throw new RedisConnectionStringError(`has an invalid address ${JSON.stringify(addr.slice(0, 60))}; expected host:port`);
  const port = m[3] === undefined ? 6379 : Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new RedisConnectionStringError(`has port ${m[3]}; expected 1-65535`);
  return { host: (m[1] ?? m[2])!, port };
}

function dbNumber(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 15_000) throw new RedisConnectionStringError(`has database ${JSON.stringify(v.slice(0, 20))}; expected a number`);
  return n;
}

/**
 * One client for the lease or the mirror: no offline queue (a command while
 * disconnected fails at once instead of waiting to be sent later, when its
 * moment has passed), no retries of a command, a command timeout, and
 * reconnection with capped, jittered backoff.
 */
export function redisClient(t: RedisTarget, o: { commandTimeoutMs: number; connectTimeoutMs: number; name: string }): Redis {
  const { Redis: RedisClient } = ioredisModule();
  return new RedisClient({
    host: t.host,
    port: t.port,
    db: t.db,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: o.connectTimeoutMs,
    connectionName: o.name,
    retryStrategy: (times) => Math.min(2000, 50 * 2 ** Math.min(times, 6)) + Math.floor(Math.random() * 100),
    ...(t.username !== undefined ? { username: t.username } : {}),
    ...(t.password !== undefined ? { password: t.password } : {}),
    ...(t.tls ? { tls: { servername: t.host } } : {}),
  });
}

/** The short reason of a Redis error, for messages: never the password (ioredis errors do not carry it; this strips a URL's userinfo to be sure). */
export function redisErrorText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/\/\/[^@/\s]*@/g, '//***@').slice(0, 200);
}
