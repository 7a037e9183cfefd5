// A process that contends for the Redis leader lease, for tests and the
// failover benchmark that kill -9 or SIGSTOP a leader. Configured by
// environment: LEASE_REDIS (connection string), LEASE_NAME, LEASE_TTL_MS,
// LEASE_RENEW_MS, LEASE_PREFIX. Prints one JSON line per event on stdout:
//   {"event":"state","leading":bool,"term":n,"at":epochMs}   on every change
//   {"event":"write","term":n,"at":epochMs}                   every 50 ms while current() says it leads
// (the "write" stands for a leader-only action guarded by the lease, the way a
// write transaction is: it asks current() first). Logs go to stderr (pino).
import { pino, destination } from 'pino';
import { parseRedisConnectionString, RedisLease, RedisLink } from '../../src/coord/index.js';

const env = (k: string, d?: string): string => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is required`);
  return v;
};
const logger = pino({ base: { name: env('LEASE_NAME') } }, destination(2));
const link = new RedisLink(parseRedisConnectionString(env('LEASE_REDIS')), logger, { commandTimeoutMs: 500, name: env('LEASE_NAME') });
const lease = new RedisLease({
  link, logger, keyPrefix: env('LEASE_PREFIX', 'quorate:'), nodeName: env('LEASE_NAME'), apiUrl: `http://${env('LEASE_NAME')}.invalid:7101`,
  ttlMs: Number(env('LEASE_TTL_MS')), renewMs: Number(env('LEASE_RENEW_MS')),
});
const out = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ ...o, at: Date.now() })}\n`);
lease.onChange((s) => out({ event: 'state', leading: s.leading, term: s.term }));
lease.start();
setInterval(() => {
  const s = lease.current();
  if (s.leading) out({ event: 'write', term: s.term });
}, 50);
process.once('SIGTERM', () => void lease.stop().then(() => link.close()).then(() => process.exit(0)));
