// Failover modes, pause and drain: who may start an election by itself.
//
// One switch: the core's setAutoCampaign (src/raft). This node campaigns on
// its own election timeout only when the cluster's failover mode is
// "automatic", the cluster is not paused and this node is not drained. The
// values come from the replicated "settings" machine (src/state/settings.ts);
// the config file's cluster.failover only seeds the mode until one is set in
// the replicated state. A settings entry counts from the moment it is
// appended to this node's log, as a membership change does (and is forgotten
// if that suffix is truncated), so a paused cluster that loses its leader
// stays paused even where the resume/pause has not been applied yet.
//
// The operator's commands (failover, config set, pause, resume, drain) are
// here too: campaignNow makes this node stand for election (Raft's vote rule
// still decides), proposeSetting puts a settings entry in the log.
import type { Logger } from 'pino';
import { NONE, isVoting, type Entry, type NodeId, type RawNode } from '../raft/index.js';
import { SETTINGS_MACHINE_ID, applySetting, decodeEntry, peekMachineId, decodeSettingsPayload, encodeEnvelope, encodeSettingsPayload, settingsCommandHasHold, type FailoverMode, type SettingsCommand, type SettingsMachine, type SettingsState, type MaintenanceBy } from '../state/index.js';
import type { Hold } from '../state/index.js';
import { Approval, type ApprovalState, type ProbeInfo } from './approval.js';
import { NodeError } from './errors.js';
import type { MemberRegistry } from './registry.js';
import type { Replica } from './replica.js';

export interface ModesView {
  readonly failoverMode: FailoverMode;
  /** Where the mode comes from: the replicated settings, or this node's file (nothing replicated yet). */
  readonly failoverModeSource: 'replicated' | 'file';
  readonly paused: boolean;
  readonly drained: readonly string[];
  /** The pause's operator reason and expiry (ms since the epoch), when given (feature level 3). */
  readonly pause?: Hold;
  /** Drained nodes' reasons and expiries, for those given one. */
  readonly drains?: Readonly<Record<string, Hold>>;
  /** Whether this node starts elections by itself. */
  readonly autoFailover: boolean;
  /** For status and health: what an operator should know and run, when automatic failover is off. */
  readonly notice: string | undefined;
  /** Failover mode approval with no leader known: the proposed candidate and term (./approval.ts). */
  readonly approval?: ApprovalState;
}

/** What Modes needs of the node for the loop glue and the operator's commands (moved here from node.ts). */
export interface ModesNode {
  readonly replica: Pick<Replica, 'core' | 'run' | 'propose' | 'fatal'>;
  readonly registry: Pick<MemberRegistry, 'peers' | 'nameOf' | 'record'>;
  readonly nodeId: NodeId;
  readonly electionTimeoutMs: number;
  readonly heartbeatMs: number;
  /** Authenticates the approval probes between members (./approval.ts). */
  readonly clusterSecret: Uint8Array;
  /** The node's proposal timeout (node.ts DEFAULT_PROPOSE_TIMEOUT_MS). */
  readonly proposeTimeoutMs: number;
  appliedIndex(): number;
  featureLevel(): number;
  isLeader(): boolean;
  notLeader(): NodeError;
  switchover(): Promise<unknown>;
  /** No critical application health check fails here (./app-services.ts); an unhealthy node is not an approval candidate. */
  appHealthy?(): boolean;
  /** A pause/drain setting applied on the leader, by the operator or its expiry; `ended` is the hold it replaced (./maintenance-expiry.ts records it). */
  settingApplied?(c: SettingsCommand, by: MaintenanceBy, ended: Hold | undefined): Promise<void>;
}

export class Modes {
  readonly #settings: SettingsMachine;
  readonly #fileMode: FailoverMode;
  readonly #nodeName: string;
  readonly #log: Logger;
  readonly #n: ModesNode;
  /** Settings entries appended but not applied yet, by index. */
  readonly #pending = new Map<number, { c: SettingsCommand; at: number }>();
  #warned: FailoverMode | undefined;
  /** Failover mode approval: the proposal, polled from the other voters (./approval.ts); tick() from the node's housekeeping. */
  readonly approval: Approval;

  constructor(o: { settings: SettingsMachine; fileMode: FailoverMode; nodeName: string; log: Logger; node: ModesNode }) {
    this.#settings = o.settings;
    this.#fileMode = o.fileMode;
    this.#nodeName = o.nodeName;
    this.#log = o.log;
    this.#n = o.node;
    const n = o.node;
    const voting = () => n.replica.core.status().membership.members.filter((m) => isVoting(m.role));
    this.approval = new Approval({
      nodeName: o.nodeName, clusterSecret: n.clusterSecret, pollMs: Math.max(250, 3 * n.heartbeatMs),
      active: () => this.view(n.appliedIndex()).failoverMode === 'approval' && n.replica.core.status().lead === NONE,
      self: () => this.probeInfo(),
      others: () => voting().filter((m) => m.id !== n.nodeId).map((m) => ({ nodeName: n.registry.nameOf(m.id), apiUrl: n.registry.record(m.id)?.apiUrl })),
      inputs: () => ({
        voting: voting().map((m) => n.registry.nameOf(m.id)),
        candidates: voting().filter((m) => m.role === 'voter').map((m) => n.registry.nameOf(m.id)),
        drained: new Set(this.view(n.appliedIndex()).drained),
      }),
    });
  }

  /** What this node reports of itself to an approval probe. */
  probeInfo(): ProbeInfo {
    const n = this.#n;
    const st = n.replica.core.status();
    return { nodeName: this.#nodeName, term: st.term, lastTerm: st.lastTerm, lastIndex: st.lastIndex, role: st.role, healthy: n.replica.fatal === undefined && n.appHealthy?.() !== false, leader: st.lead === NONE ? null : n.registry.nameOf(st.lead) };
  }

  // ---- node glue (moved from node.ts): QuorateNode.modes(), failoverHere(), proposeSetting(), the loop's scan

  /** The view at this node's applied index (QuorateNode.modes()). */
  current(): ModesView {
    const v = this.view(this.#n.appliedIndex());
    const a = this.approval.view();
    if (a === undefined) return v;
    const notice = a.command !== null
      ? `no leader: the proposed candidate is ${a.candidate} (term ${a.term}); approve it with \`${a.command}\``
      : `no leader, and no candidate to approve yet: ${a.reason ?? 'polling the voters'}`;
    return { ...v, approval: a, notice };
  }

  /** Entries appended to the log (a Ready's, or at start the recovered log), then the core's switch (in the loop). */
  scan(raw: RawNode, entries: readonly Entry[]): void {
    this.appended(entries);
    this.sync(raw, this.#n.appliedIndex());
  }

  /** An operator's failover on this node: stand for election now (campaignNow below). */
  failoverHere(): Promise<{ campaigned: string; leader: string; term: number; elected: boolean }> {
    const n = this.#n;
    return campaignNow({ replica: n.replica, nodeId: n.nodeId, electionTimeoutMs: n.electionTimeoutMs, nameOf: (id) => n.registry.nameOf(id) });
  }

  /** Leader only: puts a cluster-wide setting in the log (format-2 envelope; refused below feature level 2) and waits until it applies. */
  async proposeSetting(c: SettingsCommand, by: MaintenanceBy = 'operator'): Promise<void> {
    const n = this.#n;
    if (!n.isLeader()) throw n.notLeader();
    if (c.key === 'drained' && ![...n.registry.peers.keys()].some((id) => n.registry.nameOf(id) === c.nodeName)) {
      throw new NodeError('invalid_transfer', `no member named "${c.nodeName}"; see \`quorate peers\` for names`);
    }
    const before = this.view(n.appliedIndex());
    const ended = c.key === 'paused' ? before.pause : c.key === 'drained' ? before.drains?.[c.nodeName] : undefined;
    await n.replica.propose(encodeSetting(c, n.featureLevel(), Date.now()), n.proposeTimeoutMs);
    if (c.key !== 'failover') await n.settingApplied?.(c, by, ended);
    // Draining the leader: hand leadership to another voter (drained nodes are never switchover targets).
    if (c.key === 'drained' && c.value && c.nodeName === this.#nodeName && n.isLeader()) await n.switchover();
  }

  // ---- the switch

  /** Entries appended to this node's log (a Ready's entries, or the recovered log): they may overwrite a suffix. */
  appended(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    for (const i of [...this.#pending.keys()]) if (i >= first) this.#pending.delete(i);
    for (const e of entries) {
      if (e.type !== 'normal' || e.data.length === 0) continue;
      const c = settingsEntryOf(e.data);
      if (c !== undefined) this.#pending.set(e.index, c);
    }
  }

  view(appliedIndex: number): ModesView {
    const sv = this.#settings.view;
    let s: SettingsState = { failover: sv.failover, paused: sv.paused, drained: new Set(sv.drained), ...(sv.pause !== undefined ? { pause: sv.pause } : {}), drains: new Map(Object.entries(sv.drains ?? {})) };
    for (const i of [...this.#pending.keys()].sort((a, b) => a - b)) {
      if (i <= appliedIndex) this.#pending.delete(i);
      else s = applySetting(s, this.#pending.get(i)!.c, this.#pending.get(i)!.at);
    }
    const replicated = s.failover;
    if (replicated !== undefined && replicated !== this.#fileMode && this.#warned !== replicated) {
      this.#warned = replicated;
      this.#log.warn({ event: 'config_overridden', key: 'cluster.failover', file: this.#fileMode, replicated },
        `cluster.failover is "${this.#fileMode}" in this node's config file but "${replicated}" in the cluster's replicated settings; the replicated value applies (change it with \`quorate config set failover ${this.#fileMode}\`)`);
    }
    const failoverMode = replicated ?? this.#fileMode;
    const drained = [...s.drained].sort();
    const selfDrained = drained.includes(this.#nodeName);
    const autoFailover = failoverMode === 'automatic' && !s.paused && !selfDrained;
    const pauseWhy = s.pause === undefined ? '' : `${s.pause.reason !== undefined ? ` (reason: ${s.pause.reason})` : ''}${s.pause.expiresAt !== undefined ? `, until ${new Date(s.pause.expiresAt).toISOString()}` : ''}`;
    const selfHold = s.drains?.get(this.#nodeName);
    const drainWhy = selfHold === undefined ? '' : `${selfHold.reason !== undefined ? ` (reason: ${selfHold.reason})` : ''}${selfHold.expiresAt !== undefined ? ` until ${new Date(selfHold.expiresAt).toISOString()}` : ''}`;
    const notice = s.paused
      ? `the cluster is paused (maintenance)${pauseWhy}: automatic failover is disabled; run \`quorate resume\` to end it (\`quorate failover\` elects a leader meanwhile)`
      : failoverMode === 'manual'
        ? 'automatic failover is disabled (failover mode manual): if the leader fails, run `quorate failover [--to NAME]`'
        : failoverMode === 'approval'
          ? 'automatic failover is disabled (failover mode approval): if the leader fails, the nodes propose a candidate and term (shown by `quorate status`); run `quorate failover --approve NAME --term T` with them'
        : selfDrained ? `${this.#nodeName} is drained${drainWhy}: it never starts an election itself; run \`quorate undrain ${this.#nodeName}\` to end it` : undefined;
    const drains = s.drains !== undefined && s.drains.size > 0 ? Object.fromEntries([...s.drains].sort(([a], [b]) => (a < b ? -1 : 1))) : undefined;
    return { failoverMode, failoverModeSource: replicated === undefined ? 'file' : 'replicated', paused: s.paused, drained, ...(s.pause !== undefined ? { pause: s.pause } : {}), ...(drains !== undefined ? { drains } : {}), autoFailover, notice };
  }

  /** Sets the core's switch from the current view (in the loop). */
  sync(raw: RawNode, appliedIndex: number): void {
    const on = this.view(appliedIndex).autoFailover;
    if (raw.autoCampaign !== on) {
      raw.setAutoCampaign(on);
      this.#log.info({ event: 'auto_failover', enabled: on }, on ? 'automatic failover enabled on this node' : 'automatic failover disabled on this node (manual mode, paused or drained)');
    }
  }
}

/** The settings command in an entry, if it is one (anything else, or undecodable: undefined). */
export function settingsCommandOf(data: Uint8Array): SettingsCommand | undefined {
  return settingsEntryOf(data)?.c;
}

/** The settings command in an entry with its leader-stamped time. */
function settingsEntryOf(data: Uint8Array): { c: SettingsCommand; at: number } | undefined {
  const peeked = peekMachineId(data);
  if (peeked !== undefined && peeked !== SETTINGS_MACHINE_ID) return undefined; // most entries: no decode
  try {
    const d = decodeEntry(data, 2);
    if (d.version !== 2 || d.envelope.machine !== SETTINGS_MACHINE_ID) return undefined;
    return { c: decodeSettingsPayload(d.envelope.payload), at: d.envelope.at };
  } catch {
    return undefined;
  }
}

/** Cluster feature level of settings commands with a reason or expiry (settings version 2). */
export const HOLD_FEATURE_LEVEL = 3;

/** A settings entry (format-2 envelope); refused below cluster feature level 2, and with a reason or expiry below level 3. */
export function encodeSetting(c: SettingsCommand, featureLevel: number, at: number): Uint8Array {
  if (featureLevel < 2) {
    throw new NodeError('invalid_transfer', `cluster-wide settings need cluster feature level 2 (this cluster is at ${featureLevel}: some member runs the previous release or has not been heard from); upgrade every member, then retry`);
  }
  if (featureLevel < HOLD_FEATURE_LEVEL && settingsCommandHasHold(c)) {
    throw new NodeError('invalid_transfer', `a pause or drain with a reason or expiry needs cluster feature level ${HOLD_FEATURE_LEVEL} (this cluster is at ${featureLevel}: some member runs an older release); upgrade every member, or retry without reason and expiresInMs (--reason, --for)`);
  }
  return encodeEnvelope({ machine: SETTINGS_MACHINE_ID, at, payload: encodeSettingsPayload(c) });
}

/** What campaignNow needs of the node. */
export interface CampaignContext {
  readonly replica: { readonly core: Pick<RawNode, 'status'>; run(fn: (raw: RawNode) => void): void };
  readonly nodeId: NodeId;
  readonly electionTimeoutMs: number;
  nameOf(id: NodeId): string;
}

/**
 * An operator's failover on this node: stand for election now (pre-vote, then
 * vote), again after each election timeout while no leader is known, up to
 * three times. Resolves with the leader that emerged (which may be another
 * node) or throws failover_failed.
 */
export async function campaignNow(c: CampaignContext): Promise<{ campaigned: string; leader: string; term: number; elected: boolean }> {
  const me = c.nameOf(c.nodeId);
  const st0 = c.replica.core.status();
  if (st0.role === 'leader') return { campaigned: me, leader: me, term: st0.term, elected: true };
  if (st0.lead !== NONE) {
    throw new NodeError('invalid_transfer', `${c.nameOf(st0.lead)} leads (term ${st0.term}); a failover is for when there is no leader. Use \`quorate switchover --to ${me}\` to move leadership`);
  }
  // An operator's command: give the election time to finish on a loaded
  // machine (several election timeouts, at least 8 s), retrying each timeout.
  const deadline = Date.now() + Math.max(8000, 5 * c.electionTimeoutMs);
  let nextTry = 0;
  while (Date.now() < deadline) {
    const st = c.replica.core.status();
    if (st.lead !== NONE) return { campaigned: me, leader: c.nameOf(st.lead), term: st.term, elected: st.lead === c.nodeId };
    if (Date.now() >= nextTry && st.role === 'follower') {
      c.replica.run((raw) => raw.campaign());
      nextTry = Date.now() + c.electionTimeoutMs;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new NodeError('failover_failed', `${me} stood for election but no leader emerged: its log may be behind the other voters' (they refuse their votes), or a majority of voters is unreachable. Check \`quorate status\` on each node, then run \`quorate failover\` without --to (it picks the most up-to-date reachable voter)`);
}
