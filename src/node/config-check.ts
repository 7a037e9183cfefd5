// Config keys that must agree across members (docs/configuration.md "Keys
// that must agree"): failover mode is a replicated setting (./modes.ts),
// cluster.haId is checked in the handshake, and database.writeQuorum,
// cluster.electionTimeoutMs and cluster.heartbeatIntervalMs are announced in
// every authenticated handshake (ClusterSettings, protocol 4). The transport
// refuses a peer whose writeQuorum differs (code config_mismatch); here the
// node compares the rest with its own file, logs `config_mismatch` once per
// peer per value and shows the differences as configWarnings in
// /system/health/cluster, GET /v1/cluster/status and `quorate status`.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { NodeId } from '../raft/index.js';
import { settingsDiffer, type ClusterSettings, type SettingDifference } from '../transport/index.js';

/** This node's ClusterSettings, from its config file (writeQuorum 0 = unset). */
export function clusterSettingsOf(config: QuorateConfig): ClusterSettings {
  return {
    writeQuorum: config.database.writeQuorum ?? 0,
    electionTimeoutMs: config.cluster.electionTimeoutMs,
    heartbeatIntervalMs: config.cluster.heartbeatIntervalMs,
  };
}

/** The operator-facing line for one difference (log and configWarnings). */
export function describeDifference(peerName: string, selfName: string, d: SettingDifference): string {
  return `config_mismatch: ${d.key} is ${d.theirs} on ${peerName} but ${d.mine} on ${selfName}; keys that must agree across members differ: ` +
    `give every member the same ${d.key} in its config file and restart the ones that differ, one at a time`;
}

export class ConfigCheck {
  readonly #own: ClusterSettings;
  readonly #selfName: string;
  readonly #log: Logger;
  /** Per peer: its name and how its last announced settings differ from ours. */
  readonly #diffs = new Map<NodeId, { name: string; diffs: SettingDifference[] }>();
  /** peer|key|value already logged. */
  readonly #logged = new Set<string>();

  constructor(own: ClusterSettings, selfName: string, log: Logger) {
    this.#own = own;
    this.#selfName = selfName;
    this.#log = log;
  }

  /** A peer's authenticated handshake announced these settings (undefined: it sent none, an older build). */
  hear(peer: NodeId, peerName: string, settings: ClusterSettings | undefined): void {
    if (settings === undefined) return;
    const diffs = settingsDiffer(this.#own, settings);
    if (diffs.length === 0) {
      this.#diffs.delete(peer);
      return;
    }
    this.#diffs.set(peer, { name: peerName, diffs });
    for (const d of diffs) {
      const k = `${peer}|${d.key}|${d.theirs}`;
      if (this.#logged.has(k)) continue;
      this.#logged.add(k);
      this.#log.warn({ event: 'config_mismatch', peer, peerName, key: d.key, peerValue: d.theirs, localValue: d.mine }, describeDifference(peerName, this.#selfName, d));
    }
  }

  /** A peer left the membership: its differences no longer matter. */
  forget(peer: NodeId): void {
    this.#diffs.delete(peer);
  }

  /** One line per differing key per peer, for the status. */
  warnings(): string[] {
    const out: string[] = [];
    for (const { name, diffs } of this.#diffs.values()) for (const d of diffs) out.push(describeDifference(name, this.#selfName, d));
    return out;
  }
}
