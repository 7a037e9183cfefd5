// What a Raft node (src/node/node.ts) needs of Redis when `redis.enabled`:
// the leader mirror (./redis-mirror.ts) over one connection, and its state
// for the status (`redisConnected`, a split-brain warning).
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { parseRedisConnectionString } from './redis-conn.js';
import { RedisLink } from './redis-link.js';
import { RedisLeaderMirror, type RaftView } from './redis-mirror.js';

export interface LeaderMirror {
  start(): void;
  /** Leadership changed here: write the record now. */
  poke(): void;
  stop(): Promise<void>;
  /** PING on the mirror's connection (the health check `redis`); rejects when Redis does not answer. */
  ping(): Promise<void>;
  readonly connected: boolean;
  readonly warning: string | undefined;
}

/** The mirror for a Raft node with redis.enabled, else undefined. */
export function leaderMirrorFor(config: QuorateConfig, logger: Logger, view: () => RaftView): LeaderMirror | undefined {
  if (!config.redis.enabled || config.cluster.coordination !== 'raft') return undefined;
  const target = parseRedisConnectionString(config.redis.connectionString, config.redis.tlsEnabled);
  const renewMs = config.cluster.leaderRenewalIntervalSeconds * 1000;
  const link = new RedisLink(target, logger, { commandTimeoutMs: Math.min(1000, renewMs), name: `quorate-${config.node.nodeName}` });
  const mirror = new RedisLeaderMirror({
    link, logger, keyPrefix: config.redis.keyPrefix, nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl,
    ttlMs: config.cluster.leaderLockTtlSeconds * 1000, renewMs, heartbeatMs: config.cluster.heartbeatIntervalMs, view,
  });
  return {
    start: () => mirror.start(),
    poke: () => mirror.poke(),
    stop: async () => { mirror.stop(); await link.close(); },
    ping: async () => { await link.client.ping(); },
    get connected() { return link.connected; },
    get warning() { return mirror.warning; },
  };
}
