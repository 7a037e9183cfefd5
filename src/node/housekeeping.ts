// The node's housekeeping: the operator warnings it logs while the cluster is
// unhealthy (`election_failed`: no leader for two election timeouts;
// `quorum_not_met`: this leader cannot reach a write quorum; at most one
// every 5 s), `<dataDir>/ha-state.json` (written at start and whenever the
// leader changes), and the leader's TTL expiry (run as a leader service).
import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { NodeStatus } from '../api/ports.js';
import type { QuorateConfig } from '../config/index.js';
import { NONE, majority } from '../raft/index.js';
import type { ApplyResult, Command, KvStateMachine } from '../state/index.js';
import { writeHaState } from '../storage/index.js';
import { normalizePeerUrl } from './members.js';

/** The warnings of an unhealthy cluster, rate-limited. */
export class HealthWarnings {
  readonly #log: Logger;
  readonly #electionMs: number;
  #noLeaderSince = Date.now();
  #lastWarnAt = 0;

  constructor(logger: Logger, electionTimeoutMs: number) {
    this.#log = logger;
    this.#electionMs = electionTimeoutMs;
  }

  /** The leader was lost (no leader is known from now on). */
  leaderLost(): void {
    this.#noLeaderSince = Date.now();
  }

  /** The known leader changed (in the loop): `leader_lost` (and leaderLost) or `leader_changed` (moved from node.ts #onSoftState). */
  leaderChanged(prev: number, lead: number, name: (id: number) => string): void {
    if (lead === NONE) {
      this.leaderLost();
      this.#log.warn({ event: 'leader_lost', previous: prev }, `lost leader ${prev === NONE ? '' : name(prev)}`);
    } else {
      this.#log.info({ event: 'leader_changed', leader: lead, leaderName: name(lead) }, `leader is now ${name(lead)}`);
    }
  }

  /** Warn if the cluster has been without a leader too long, or this leader lacks a quorum (`status` is read only when a warning may be due). */
  check(now: number, status: () => NodeStatus): void {
    if (now - this.#lastWarnAt < 5000) return;
    const st = status();
    const electionMs = this.#electionMs;
    if (st.leaderId === NONE && now - this.#noLeaderSince > 2 * electionMs) {
      this.#lastWarnAt = now;
      const q = majority(st.votersTotal);
      this.#log.warn(
        { event: 'election_failed', votersReachable: st.votersReachable, votersTotal: st.votersTotal },
        `Leader election failed: no leader for ${now - this.#noLeaderSince} ms in term ${st.term}; ${st.votersReachable} of ${st.votersTotal} voters reachable, an election needs ${q}. Start the missing nodes or check that peers can reach each other's peer addresses`,
      );
    } else if (st.raftRole === 'leader' && !st.quorumMet) {
      this.#lastWarnAt = now;
      this.#log.warn(
        { event: 'quorum_not_met', votersReachable: st.votersReachable, votersTotal: st.votersTotal, writeQuorum: st.writeQuorum },
        `Quorum not met: ${st.votersReachable} of ${st.votersTotal} voters reachable (writes need ${st.writeQuorum}); writes wait until enough voters return`,
      );
    }
  }
}

/** Write `<dataDir>/ha-state.json` for this node; a failure is logged (`ha_state_write_failed`), never thrown. */
export async function writeNodeHaState(o: { config: QuorateConfig; nodeId: number; logger: Logger; leaderApiUrl: () => string | undefined; isLeader: () => boolean; tls?: { haStateFields(): { Roots: string[]; Token: string } } | undefined;
  /** The current period's handshake token reference once period keys are in use (feature level 4): replaces the secret reference as `Token`. */
  periodToken?: () => string | undefined }): Promise<void> {
  const config = o.config;
  try {
    const leaderUrl = o.leaderApiUrl();
    await writeHaState(config.node.dataDir, {
      ConsensusID: String(o.nodeId),
      ConsensusAddr: normalizePeerUrl(config.node.advertisePeerUrl),
      ConsensusEnabled: true,
      HaID: config.cluster.haId,
      Observer: config.node.role === 'observer',
      Passive: !o.isLeader(),
      ApiUrl: config.node.advertiseApiUrl,
      ...(leaderUrl ? { ActiveUri: leaderUrl } : {}),
      Enabled: true,
      LoadBalanced: config.cluster.loadBalanced,
      // Digital Rebar's VIP fields (./vip.ts holds the address on the leader).
      ...(config.cluster.virtualIp !== '' ? { VirtAddr: config.cluster.virtualIp } : {}),
      ...(config.cluster.vipInterface !== '' ? { VirtInterface: config.cluster.vipInterface } : {}),
      ...(config.cluster.vipScript !== '' ? { VirtInterfaceScript: config.cluster.vipScript } : {}),
      // security.tls "auto": the trusted roots (public certificates) and a reference to the cluster secret (./tls-auto.ts).
      ...(o.tls ? o.tls.haStateFields() : {}),
      ...(o.tls && o.periodToken?.() !== undefined ? { Token: o.periodToken()! } : {}),
    });
  } catch (e) {
    o.logger.warn({ event: 'ha_state_write_failed', err: (e as Error).message }, `could not write ha-state.json: ${(e as Error).message}`);
  }
}

/** TTL: the leader proposes expiry with its clock; followers never expire on their own. One expiry in flight at a time. */
export function ttlExpiry(o: { kv: Pick<KvStateMachine, 'expiredKeys'>; isLeader: () => boolean; propose: (c: Command) => Promise<ApplyResult> }): () => void {
  let inFlight = false;
  return () => {
    if (inFlight || !o.isLeader()) return;
    const keys = o.kv.expiredKeys(Date.now(), 1000);
    if (keys.length === 0) return;
    inFlight = true;
    o.propose({ type: 'expire', keys })
      .catch(() => undefined)
      .finally(() => (inFlight = false));
  };
}

/** The node was removed from the cluster: a marker file in the data dir (kept across restarts) and the log line operators look for. */
export function recordRemoval(dataDir: string, logger: Logger, why: string): void {
  try {
    writeFileSync(`${dataDir}/removed`, `${new Date().toISOString()} ${why}\n`);
  } catch { /* the in-memory flag still holds; logged below */ }
  logger.warn({ event: 'node_removed', reason: why }, `this node was removed from the cluster (${why}): it serves no data and answers health with role removed; its id is never reused. To bring this machine back, move its data dir aside and enroll it again (\`quorate enroll\`)`);
}
