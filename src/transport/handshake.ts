// Handshake: versions, the challenge–response proofs over the cluster secret,
// and the acceptor's policy. Pure functions, tested alone.
//
// Both proofs are HMAC-SHA256 keyed with the cluster secret over a transcript:
// a per-direction label, both fresh nonces, and every field the side asserts
// (the acceptor's also covers the dialer's proof, so it binds the whole
// exchange). The secret itself never goes on the wire.
//
// Period keys (protocol version 6, used once the cluster is at feature level
// 4): the MAC key is not the secret itself but the handshake key of a period,
// HKDF-SHA256(secret, haId, period number), period = ⌊now / P⌋ with P =
// security.caRotationSeconds. The token in use thus changes every period with
// no exchange; a member that was down derives the same key. The acceptor tells
// its period in the challenge; the dialer names the period of its key in the
// auth frame (covered by the MAC); the acceptor takes its previous, current
// and next period (clock skew up to one period) and refuses a farther one that
// verifies with code clock_skew, naming the skew (docs/security.md).
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Channel, ClusterSettings, Hello, HelloAck } from './codec.js';
import { MAC_BYTES, NONCE_BYTES } from './codec.js';

/**
 * The wire protocol this build speaks. Bump on any change to frames or payloads.
 * 3: the challenge carries the acceptor's version, auth and helloAck a feature level.
 * 4: auth and helloAck carry the cluster settings that must agree (ClusterSettings).
 * 5: auth and helloAck carry the cluster generation when above 0 (src/node/generation.ts).
 * 6: the challenge carries the acceptor's key period; auth may carry the period of a per-period handshake key.
 */
export const PROTOCOL_VERSION = 6;
/** The first version whose challenge and auth carry key periods (per-period handshake keys). */
export const PERIOD_KEYS_VERSION = 6;
/** The key period when none is configured (the default security.caRotationSeconds, 30 days). */
export const DEFAULT_KEY_PERIOD_MS = 30 * 24 * 3600_000;
/** How many periods either way an acceptor takes a dialer's key from (clock skew tolerated). */
export const KEY_PERIOD_SKEW = 1;
/** The first version whose auth/helloAck carry ClusterSettings. */
export const SETTINGS_VERSION = 4;
/** The first version whose auth/helloAck carry a cluster generation. */
export const GENERATION_VERSION = 5;
/** The oldest protocol version this build still speaks. 2: version 1 had no peer authentication, so it is refused. */
export const MIN_COMPATIBLE_VERSION = 2;

export const CLUSTER_SECRET_MIN_BYTES = 32;

export interface VersionRange {
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
}

/**
 * Two nodes talk when each one's version is within the other's range; they
 * then speak the lower of the two versions. Returns undefined when disjoint.
 */
export function negotiateVersion(local: VersionRange, remote: VersionRange): number | undefined {
  const v = Math.min(local.protocolVersion, remote.protocolVersion);
  if (v < local.minCompatibleVersion || v < remote.minCompatibleVersion) return undefined;
  return v;
}

export function describeRange(r: VersionRange): string {
  return r.minCompatibleVersion === r.protocolVersion
    ? `version ${r.protocolVersion} only`
    : `versions ${r.minCompatibleVersion} to ${r.protocolVersion}`;
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

const DIALER_LABEL = 'quorate peer handshake v2: dialer proof';
const ACCEPTOR_LABEL = 'quorate peer handshake v2: acceptor proof';

/** Length-prefixed, type-tagged fields: no two different field lists give the same bytes (the peer handshake's and the join exchange's MAC input). */
export function transcript(label: string, fields: readonly (string | number | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`${label}\0`, 'utf8')];
  for (const f of fields) {
    const tag = typeof f === 'string' ? 1 : typeof f === 'number' ? 2 : 3;
    const body = typeof f === 'string' ? Buffer.from(f, 'utf8') : typeof f === 'number' ? Buffer.from(String(f), 'ascii') : Buffer.from(f);
    const head = Buffer.allocUnsafe(5);
    head.writeUInt8(tag, 0);
    head.writeUInt32BE(body.length, 1);
    parts.push(head, body);
  }
  return Buffer.concat(parts);
}

/** The handshake key of `period`: HKDF-SHA256 over the cluster secret (what both sides MAC with in a period-keyed handshake). */
export function periodKey(secret: Uint8Array, haId: string, period: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, Buffer.from(`quorate peer handshake key v1\0${haId}`, 'utf8'), Buffer.from(`period\0${period}`, 'utf8'), 32));
}

/** A reference to a period's handshake key (ha-state.json `Token`): `sha256:` and 32 hex digits, never the key or the secret. */
export function periodKeyRef(secret: Uint8Array, haId: string, period: number): string {
  return `sha256:${createHash('sha256').update('quorate handshake token reference\0').update(periodKey(secret, haId, period)).digest('hex').slice(0, 32)}`;
}

/** The clock skew a key period difference means, in words (log messages). */
export function describeSkew(theirs: number, mine: number, periodMs: number): string {
  const d = theirs - mine;
  const s = Math.round((Math.abs(d) * periodMs) / 1000);
  return `its clock is about ${d > 0 ? `${s} s ahead of` : `${s} s behind`} this node's (its key period ${theirs}, this node's ${mine}; periods of ${periodMs / 1000} s; handshake keys are accepted ${KEY_PERIOD_SKEW} period either way)`;
}

function hmac(secret: Uint8Array, data: Buffer): Uint8Array {
  return new Uint8Array(createHmac('sha256', secret).update(data).digest());
}

/** The dialer's proof: both nonces and everything it claims. */
export function dialerMac(secret: Uint8Array, dialerNonce: Uint8Array, acceptorNonce: Uint8Array, h: Hello): Uint8Array {
  return hmac(secret, transcript(DIALER_LABEL, [
    dialerNonce, acceptorNonce, h.protocolVersion, h.minCompatibleVersion, h.haId, h.fromId, h.fromName, h.toId, h.channel,
    h.apiUrl, h.role, h.incarnation,
    // Only when sent (version 3+): a version-2 acceptor's transcript has no such field.
    ...(h.featureLevel !== undefined ? [h.featureLevel] : []),
    ...settingsFields(h.settings),
    ...generationFields(h.generation),
    ...(h.keyPeriod !== undefined ? ['keyPeriod', h.keyPeriod] : []),
  ]));
}

/** The acceptor's proof: both nonces, the dialer's proof (hence its claims) and everything the acceptor answers. */
export function acceptorMac(
  secret: Uint8Array, dialerNonce: Uint8Array, acceptorNonce: Uint8Array, dialerProof: Uint8Array, dialerId: number, channel: Channel,
  ack: Omit<HelloAck, 'mac'>,
): Uint8Array {
  return hmac(secret, transcript(ACCEPTOR_LABEL, [
    dialerNonce, acceptorNonce, dialerProof, dialerId, channel, ack.protocolVersion, ack.haId, ack.nodeId, ack.nodeName, ack.incarnation, ack.knownIncarnation,
    ...(ack.featureLevel !== undefined ? [ack.featureLevel] : []),
    ...settingsFields(ack.settings),
    ...generationFields(ack.generation),
  ]));
}

/** Only when above 0 (generation 0 keeps the version-4 transcript); tagged like the settings. */
function generationFields(g: number | undefined): (string | number)[] {
  return g === undefined || g === 0 ? [] : ['generation', g];
}

/** Only when sent (version 4+); the string tag keeps the transcript unambiguous with or without a feature level. */
function settingsFields(s: ClusterSettings | undefined): (string | number)[] {
  return s === undefined ? [] : ['settings', s.writeQuorum, s.electionTimeoutMs, s.heartbeatIntervalMs];
}

/** One config key on which two members disagree, as the operator writes it in quorate.json. */
export interface SettingDifference {
  readonly key: 'database.writeQuorum' | 'cluster.electionTimeoutMs' | 'cluster.heartbeatIntervalMs';
  readonly mine: string;
  readonly theirs: string;
}

/** The keys of ClusterSettings on which `theirs` differs from `mine`, writeQuorum first (the one that refuses). */
export function settingsDiffer(mine: ClusterSettings, theirs: ClusterSettings): SettingDifference[] {
  const out: SettingDifference[] = [];
  const wq = (n: number): string => (n === 0 ? 'unset (a majority of the voters)' : String(n));
  if (mine.writeQuorum !== theirs.writeQuorum) out.push({ key: 'database.writeQuorum', mine: wq(mine.writeQuorum), theirs: wq(theirs.writeQuorum) });
  if (mine.electionTimeoutMs !== theirs.electionTimeoutMs) out.push({ key: 'cluster.electionTimeoutMs', mine: String(mine.electionTimeoutMs), theirs: String(theirs.electionTimeoutMs) });
  if (mine.heartbeatIntervalMs !== theirs.heartbeatIntervalMs) out.push({ key: 'cluster.heartbeatIntervalMs', mine: String(mine.heartbeatIntervalMs), theirs: String(theirs.heartbeatIntervalMs) });
  return out;
}

/** Constant-time comparison of two MACs. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === MAC_BYTES && b.length === MAC_BYTES && timingSafeEqual(a, b);
}

export interface AcceptorIdentity extends VersionRange {
  readonly nodeId: number;
  readonly nodeName: string;
  readonly haId: string;
  /** When given, only these dialer ids are accepted. */
  readonly isAllowed?: (id: number) => boolean;
  /** This node's cluster settings: a dialer that announces another database.writeQuorum is refused. */
  readonly settings?: ClusterSettings;
  /** This node's cluster generation (0 when never promoted or recovered): a dialer of another generation is refused. */
  readonly generation?: number;
}

/**
 * The acceptor's verdict on an authenticated hello. The reason is for the
 * acceptor's own log only: the dialer is told just "refused".
 */
export type HelloVerdict = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly code: string; readonly reason: string };

export function judgeHello(hello: Hello, me: AcceptorIdentity): HelloVerdict {
  const who = `node ${JSON.stringify(hello.fromName)} (id ${hello.fromId})`;
  if (hello.haId !== me.haId) {
    return refuse('cluster_mismatch', `${who} belongs to cluster ${JSON.stringify(hello.haId)}, this node to ${JSON.stringify(me.haId)}; it holds this cluster's secret, so check its cluster.haId`);
  }
  const mine = me.generation ?? 0;
  const theirs = hello.generation ?? 0;
  if (theirs < mine) {
    return refuse(GENERATION_SUPERSEDED, `${who} is of cluster generation ${theirs}, this cluster is at generation ${mine}: its data predates a DR promotion or forced recovery and ` +
      `may hold a different history, so it must not rejoin by itself. Enroll it into this cluster (\`quorate agent --join-token T\` on it, then \`quorate enroll URL --role R --force\`; its data is moved aside)`);
  }
  if (theirs > mine) {
    return refuse('generation_newer', `${who} is of cluster generation ${theirs}, this node ${JSON.stringify(me.nodeName)} only of generation ${mine}: this node's data predates a DR promotion or forced recovery; ` +
      'stop it and enroll it into the cluster of the newer generation (its data is moved aside)');
  }
  const version = negotiateVersion(me, hello);
  if (version === undefined) {
    return refuse('version_incompatible', `protocol versions incompatible: ${who} speaks ${describeRange(hello)}, this node ${JSON.stringify(me.nodeName)} speaks ${describeRange(me)}`);
  }
  if (hello.toId !== me.nodeId) {
    return refuse('wrong_node', `${who} dialed node id ${hello.toId}, but this is node id ${me.nodeId} (${JSON.stringify(me.nodeName)}); check its peer addresses (a node added to cluster.peerEndpoints of a running cluster numbers the peers from its own list: add it with \`quorate enroll\` instead)`);
  }
  if (hello.fromId === me.nodeId) {
    return refuse('duplicate_id', `${who} has this node's own id ${me.nodeId}; node ids must be unique`);
  }
  if (me.isAllowed && !me.isAllowed(hello.fromId)) {
    return refuse('peer_unknown', `${who} is not a known member of cluster ${JSON.stringify(me.haId)} on this node: a node is added to a running cluster with \`quorate join-token create\` and \`quorate enroll\` (adding it to peerEndpoints does not make it a member; stop it, empty its node.dataDir and enroll it)`);
  }
  if (me.settings !== undefined && hello.settings !== undefined) {
    const wq = settingsDiffer(me.settings, hello.settings).find((d) => d.key === 'database.writeQuorum');
    if (wq !== undefined) {
      return refuse('config_mismatch', `${who} has database.writeQuorum ${wq.theirs}, this node ${JSON.stringify(me.nodeName)} has ${wq.mine}: members that count commits differently must not form one cluster; give every member the same database.writeQuorum in its config file and restart the one that differs`);
    }
  }
  return { ok: true, version };
}

/** The refusal code that tells a dialer its generation was superseded (it then serves no data). */
export const GENERATION_SUPERSEDED = 'generation_superseded';

function refuse(code: string, reason: string): HelloVerdict {
  return { ok: false, code, reason };
}
