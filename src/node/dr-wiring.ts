// Small pieces of the DR wiring kept out of node.ts: the effective role of a
// promoted node, and "is this old voter reachable" for promote-dr's check.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { PeerStats } from '../transport/index.js';
import type { Bootstrap } from './members.js';
import { peerGet } from './peer-get.js';

/**
 * A node a DR promotion or forced recovery made the only voter of a new
 * generation stays a voter although its file may say `node.role: "dr"`:
 * the membership follows each node's configured role, and a `dr` role would
 * have the leader demote its only voter. Logged once at start, with what to do.
 */
export function asPromoted(config: QuorateConfig, b: Bootstrap, logger: Logger): QuorateConfig {
  if (b.promoted === undefined || config.node.role === 'voter') return config;
  logger.warn({ node: config.node.nodeName, event: 'promoted_role', configured: config.node.role, promoted: b.promoted },
    `${config.node.nodeName} was made the only voter of generation ${b.promoted.generation} by ${b.promoted.kind} at ${b.promoted.at}: it runs as a voter although node.role is ${JSON.stringify(config.node.role)}; ` +
    'set node.role to "voter" in its config (after failback, `quorate remove` it and enroll it again as dr to make it a DR node again)');
  return { ...config, node: { ...config.node, role: 'voter' } };
}

/** A member is reachable when a peer connection with it is up, or its API answers a ping within 1.5 s. */
export async function memberReachable(apiUrl: string | undefined, stats: PeerStats | undefined): Promise<boolean> {
  if (stats !== undefined && (stats.connected || stats.inboundConnected)) return true;
  if (apiUrl === undefined) return false;
  try {
    const r = await peerGet(`${apiUrl.replace(/\/+$/, '')}/system/health/ping`, 1500);
    return r.status < 500;
  } catch {
    return false;
  }
}
