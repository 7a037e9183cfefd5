// Leadership providers beside Raft's (src/node/leadership.ts): the Redis
// leader lease, and the Redis mirror of a Raft leader. See ./README.md.
export { parseRedisConnectionString, RedisConnectionStringError, type RedisTarget } from './redis-conn.js';
export { RedisLink } from './redis-link.js';
export { RedisLease, stepDownAfterMs, CLOCK_RATE_BOUND, DEFAULT_STOP_BUDGET_MS, type LeaseHolder, type RedisLeaseOptions } from './redis-lease.js';
export { RedisLeaderMirror, mismatchOf, parseRecord, type RaftView, type MirrorRecord } from './redis-mirror.js';
export { leaderMirrorFor, type LeaderMirror } from './mirror-wiring.js';
