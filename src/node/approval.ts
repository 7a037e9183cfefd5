// Failover mode "approval" (SPEC §3/§5): as "manual" (no node campaigns by
// itself; the same core switch, ./modes.ts), plus a proposal. While no leader
// is known, each node polls the other voters (term, last log term and index,
// role, health) and computes the candidate deterministically from what it
// sees: the reachable, healthy, non-drained voter with the highest
// (lastTerm, lastIndex), ties broken by the lowest node name; the term is the
// candidate's current term + 1 (the term it campaigns in). Nodes that see the
// same voters compute the same candidate and term. `quorate failover
// --approve NAME --term T` must name both; the candidate then stands for
// election and Raft's vote rule (PreVote, terms) still decides, so an approval
// can never make two leaders.
//
// Polling: each node asks the other voters' API at GET /v1/cluster/approval-probe,
// authenticated by an HMAC of the cluster secret (every member has it: the peer
// transport's handshake uses it), not by an API token (a node has no token of
// its own; the admin token file may differ per node or be absent). The request
// names the target and a timestamp (replays are refused after 30 s).
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ApprovalInfo } from '../api/ports.js';
import { peerGet } from './peer-get.js';

/** What one voter reports of itself (the probe's answer). */
export interface ProbeInfo {
  readonly nodeName: string;
  readonly term: number;
  readonly lastTerm: number;
  readonly lastIndex: number;
  readonly role: string;
  /** No fatal/storage error. */
  readonly healthy: boolean;
  /** The leader it knows of, if any. */
  readonly leader: string | null;
}

/** The proposal as status shows it: the API's ApprovalInfo (all null while there is none; `reason` then says why). */
export type ApprovalState = ApprovalInfo;

export interface ProposalInputs {
  /** Names of the voting members (role voter or observer): the majority is over them. */
  readonly voting: readonly string[];
  /** Names of the members that may lead (role voter). */
  readonly candidates: readonly string[];
  readonly drained: ReadonlySet<string>;
}

export const approvalCommand = (name: string, term: number): string => `quorate failover --approve ${name} --term ${term}`;

/** The candidate and its term from what answered (pure: same inputs, same answer, whatever their order). */
export function computeProposal(seen: readonly ProbeInfo[], o: ProposalInputs): { candidate: string; term: number; eligible: string[] } | { reason: string } {
  const answered = seen.filter((x) => o.voting.includes(x.nodeName));
  const leading = answered.find((x) => x.leader !== null);
  if (leading !== undefined) return { reason: `${leading.nodeName} knows a leader (${leading.leader}); no failover is needed` };
  const need = Math.floor(o.voting.length / 2) + 1;
  if (answered.length < need) {
    return { reason: `only ${answered.length} of ${o.voting.length} voters answer (${answered.map((x) => x.nodeName).sort().join(', ') || 'none'}); a majority (${need}) is needed to elect anyone` };
  }
  const eligible = answered.filter((x) => o.candidates.includes(x.nodeName) && x.healthy && !o.drained.has(x.nodeName));
  if (eligible.length === 0) return { reason: 'no reachable voter may lead (all drained, unhealthy, or observers)' };
  eligible.sort((a, b) => b.lastTerm - a.lastTerm || b.lastIndex - a.lastIndex || (a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0));
  const c = eligible[0]!;
  return { candidate: c.nodeName, term: c.term + 1, eligible: eligible.map((x) => x.nodeName) };
}

/** Why `--approve name --term term` does not match the proposal (undefined when it does). */
export function approvalMismatch(p: ApprovalState, name: string, term: number): string | undefined {
  if (p.candidate === null || p.term === null) return `there is no proposal to approve: ${p.reason ?? 'none computed yet'}`;
  if (p.candidate === name && p.term === term) return undefined;
  const what = p.candidate !== name ? `the proposed candidate is ${p.candidate}, not ${name}` : `the proposed term is ${p.term}, not ${term}`;
  return `${what}; to approve the current proposal run \`${p.command}\` (see \`quorate status\`)`;
}

// ---- the probe's authentication

const PROBE_MAX_SKEW_MS = 30_000;

function mac(secret: Uint8Array, target: string, ts: number): Buffer {
  return createHmac('sha256', secret).update(`quorate-approval-probe\n${target}\n${ts}`).digest();
}

/** The x-quorate-probe header value for a probe of `target`. */
export function probeProof(secret: Uint8Array, target: string, now = Date.now()): string {
  return `${now}.${mac(secret, target, now).toString('hex')}`;
}

/** Whether a header value proves the caller holds the cluster secret (and is recent, and meant for `self`). */
export function verifyProbeProof(secret: Uint8Array, self: string, proof: string | undefined, now = Date.now()): boolean {
  const m = /^(\d{1,15})\.([0-9a-f]{64})$/.exec(proof ?? '');
  if (m === null) return false;
  const ts = Number(m[1]);
  if (Math.abs(now - ts) > PROBE_MAX_SKEW_MS) return false;
  return timingSafeEqual(Buffer.from(m[2]!, 'hex'), mac(secret, self, ts));
}

// ---- the poller

export interface ApprovalHost {
  readonly nodeName: string;
  readonly clusterSecret: Uint8Array;
  /** Poll period while active (a few heartbeat intervals). */
  readonly pollMs: number;
  /** Approval mode and no leader known. */
  active(): boolean;
  self(): ProbeInfo;
  /** The voting members other than this node, with their API URLs as recorded in the membership. */
  others(): readonly { nodeName: string; apiUrl: string | undefined }[];
  inputs(): ProposalInputs;
}

const PROBE_TIMEOUT_MS = 1000;

export class Approval {
  readonly #h: ApprovalHost;
  #state: ApprovalState | undefined;
  #next = 0;
  #inflight: Promise<ApprovalState> | undefined;

  constructor(h: ApprovalHost) {
    this.#h = h;
  }

  /** This node's answer to a probe, or undefined when the proof is not valid. */
  probe(proof: string | undefined): ProbeInfo | undefined {
    return verifyProbeProof(this.#h.clusterSecret, this.#h.nodeName, proof) ? this.#h.self() : undefined;
  }

  /** The last proposal while active (for status), else undefined. */
  view(): ApprovalState | undefined {
    if (!this.#h.active()) return undefined;
    return this.#state ?? { candidate: null, term: null, since: null, command: null, reason: 'polling the voters', seen: [] };
  }

  /** From the node's housekeeping: poll every pollMs while active; forget the proposal otherwise. */
  tick(now = Date.now()): void {
    if (!this.#h.active()) {
      this.#state = undefined;
      return;
    }
    if (this.#inflight === undefined && now >= this.#next) {
      this.#next = now + this.#h.pollMs;
      void this.refresh();
    }
  }

  /** Polls now (joining a poll under way) and returns the proposal. */
  refresh(): Promise<ApprovalState> {
    this.#inflight ??= this.#poll().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** A fresh proposal, and why `name`/`term` do not match it (undefined when they do). */
  async check(name: string, term: number): Promise<{ proposal: ApprovalState; mismatch?: string }> {
    const proposal = await this.refresh();
    const mismatch = approvalMismatch(proposal, name, term);
    return mismatch === undefined ? { proposal } : { proposal, mismatch };
  }

  async #poll(): Promise<ApprovalState> {
    const h = this.#h;
    const answers = await Promise.all(h.others().map((p) => (p.apiUrl === undefined ? undefined : probePeer(p.apiUrl, p.nodeName, h.clusterSecret))));
    const seen = [h.self(), ...answers.filter((x): x is ProbeInfo => x !== undefined)];
    const r = computeProposal(seen, h.inputs());
    const eligible = 'eligible' in r ? r.eligible : [];
    const seenOut = seen.map((x) => ({ nodeName: x.nodeName, term: x.term, lastTerm: x.lastTerm, lastIndex: x.lastIndex, eligible: eligible.includes(x.nodeName) }))
      .sort((a, b) => (a.nodeName < b.nodeName ? -1 : 1));
    const prev = this.#state;
    const next: ApprovalState = 'reason' in r
      ? { candidate: null, term: null, since: null, command: null, reason: r.reason, seen: seenOut }
      : {
        candidate: r.candidate, term: r.term, command: approvalCommand(r.candidate, r.term), seen: seenOut,
        since: prev?.candidate === r.candidate && prev.term === r.term && prev.since !== null ? prev.since : new Date().toISOString(),
      };
    if (h.active()) this.#state = next;
    return next;
  }
}

/** One voter's ProbeInfo over its API (undefined when it does not answer within 1 s, or answers nonsense). */
async function probePeer(apiUrl: string, nodeName: string, secret: Uint8Array): Promise<ProbeInfo | undefined> {
  try {
    const r = await peerGet(`${apiUrl.replace(/\/+$/, '')}/v1/cluster/approval-probe`, PROBE_TIMEOUT_MS, { 'x-quorate-probe': probeProof(secret, nodeName) });
    if (r.status < 200 || r.status > 299) return undefined;
    const b = JSON.parse(r.body) as Record<string, unknown>;
    const num = (k: string) => (typeof b[k] === 'number' && Number.isSafeInteger(b[k]) ? (b[k] as number) : undefined);
    const term = num('term');
    const lastTerm = num('lastTerm');
    const lastIndex = num('lastIndex');
    if (b['nodeName'] !== nodeName || term === undefined || lastTerm === undefined || lastIndex === undefined) return undefined;
    return { nodeName, term, lastTerm, lastIndex, role: String(b['role']), healthy: b['healthy'] === true, leader: typeof b['leader'] === 'string' ? b['leader'] : null };
  } catch {
    return undefined;
  }
}
