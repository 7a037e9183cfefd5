// What a node's start derives from its config before anything runs: the tick
// length, the core's RaftConfig, the peer transport's options, and the check
// (security.tls "auto" comes from ./tls-auto.ts). Part of QuorateNode.start
// (./node.ts), kept apart for size.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { NodeId, RaftConfig } from '../raft/index.js';
import { SeededRandom } from '../raft/prng.js';
import type { PeerTransportOptions } from '../transport/index.js';
import { clusterSettingsOf } from './config-check.js';
import type { AutoTls } from './tls-auto.js';

export { clusterSettingsOf } from './config-check.js';

/** The core's tick: a fifth of the heartbeat interval, 1..10 ms. */
export function tickMsFor(config: QuorateConfig): number {
  return Math.max(1, Math.min(10, Math.floor(config.cluster.heartbeatIntervalMs / 5)));
}

export function raftConfigFor(config: QuorateConfig, id: NodeId, tickMs: number, incarnation: string): RaftConfig {
  return {
    id,
    electionTicks: Math.max(2, Math.round(config.cluster.electionTimeoutMs / tickMs)),
    heartbeatTicks: Math.max(1, Math.round(config.cluster.heartbeatIntervalMs / tickMs)),
    random: new SeededRandom((Date.now() ^ (id * 2654435761)) >>> 0),
    ...(config.database.writeQuorum !== undefined ? { writeQuorum: config.database.writeQuorum } : {}),
    snapshotEntries: config.cluster.snapshotEntries,
    // Each node snapshots after 0.75 to 1.25 times snapshotEntries, drawn anew each time, so a cluster's nodes do not
    // all snapshot at once (docs/performance.md "Snapshots spread over the nodes").
    snapshotJitter: 0.5,
    incarnation,
    trailingEntries: config.cluster.snapshotTrailingEntries,
    // The in-memory log holds the entries since the last snapshot and the trailing ones: bounded in bytes as
    // well as in entries (file chunks are 1 MiB each). Snapshots of large state stay cheap (files: src/files/held.ts).
    snapshotBytes: config.cluster.snapshotBytes,
    trailingBytes: config.cluster.snapshotTrailingBytes,
    // Appends in flight to one follower, in entry data bytes: a quarter of the
    // transport's per-peer outbound bound (16 MiB, which counts the framing too),
    // so a follower being caught up is never sent more than the transport queues.
    maxInflightBytes: 4 * 1024 * 1024,
    // Redis as the witness of an in-sync set (src/coord/WITNESS.md): leaders are appointed, not elected.
    ...(config.cluster.coordination === 'redis' && config.database.mode === 'local-sync' ? { witness: true } : {}),
  };
}

/** The peer transport's options that come from the config (moved from node.ts); the node adds its hooks. */
export function transportOptionsFor(
  config: QuorateConfig,
  o: { id: NodeId; incarnation: string; clusterSecret: Uint8Array; featureLevel: number; logger: Logger; peerHost: (peer: NodeId) => string | undefined; autoTls?: AutoTls | undefined },
): Omit<PeerTransportOptions, 'onMessages' | 'onPeerDisconnected' | 'onSnapshot'> {
  const auto = o.autoTls;
  const tls = config.security.tls;
  const peerAddr = new URL(`tcp://${config.node.peerAddress}`);
  return {
    nodeId: o.id,
    nodeName: config.node.nodeName,
    haId: config.cluster.haId,
    listenHost: peerAddr.hostname.replace(/^\[|\]$/g, ''),
    listenPort: Number(peerAddr.port),
    // "auto": the cluster CA (./tls-auto.ts), or plain TCP on a loopback-only cluster.
    tls: auto !== undefined ? auto.transportSetting() : tls === 'auto' ? 'off' : tls,
    ...(auto !== undefined ? { peerCertificateProblem: (peer: number, san: string | undefined, issuerCn?: string) => auto.peerCertificateProblem(peer, san, issuerCn) } : {}),
    clusterSecret: o.clusterSecret,
    // Per-period handshake keys (src/transport/handshake.ts): the same periods as the cluster CA's roots.
    keyPeriodMs: config.security.caRotationSeconds * 1000,
    incarnation: o.incarnation,
    featureLevel: o.featureLevel,
    clusterSettings: clusterSettingsOf(config),
    ...(typeof tls === 'object' ? { expectedPeerHost: (peer: number) => o.peerHost(peer) } : {}),
    apiUrl: config.node.advertiseApiUrl,
    role: config.node.role,
    logger: o.logger,
    // Incoming snapshots land beside the stored ones (same file system);
    // recovery removes a *.tmp left there by a crash.
    snapshotSpoolDir: `${config.node.dataDir}/raft/snap`,
    allowedPeerIds: 'peers',
  };
}
