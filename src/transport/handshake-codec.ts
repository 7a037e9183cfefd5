// Handshake payloads (see handshake.ts for the MACs and README.md for what
// each side learns). Every field is validated on decode.
import { Invalid, bytes, fail, nodeId, pack, uint, unpack, validated } from './msgpack.js';

// ---- Handshake -----------------------------------------------------------
//
//   dialer → hello {protocolVersion, minCompatibleVersion, nonce}
//   acceptor → challenge {nonce, protocolVersion?}
//   dialer → auth {…Hello, featureLevel?, mac}
//   acceptor → helloAck {…, featureLevel?, mac} | refuse {code: 'refused', reason: 'refused'}
//
// Feature levels (protocol version 3): each side announces the newest
// replicated-data format it applies (src/node/features.ts), covered by its
// MAC. An old acceptor computes the dialer's MAC without a field it does not
// know, so a dialer sends featureLevel only to an acceptor whose challenge
// says it speaks version 3 or later; an acceptor answers with its own only to
// a dialer that sent one. A peer that sends none counts as level 1. (The
// challenge's version is not authenticated: stripping it only makes both
// sides count each other as level 1, the safe direction.)
//
// Cluster settings (protocol version 4): each side also announces the config
// keys that must agree across members (ClusterSettings), covered by its MAC,
// under the same rule one version later: a dialer sends them only to an
// acceptor whose challenge says 4 or later, an acceptor answers with its own
// only to a dialer that sent them. Absent = unknown (nothing is compared).
//
// See handshake.ts for the MACs and README.md for what each side learns.

export type Channel = 'messages' | 'snapshot';

export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
export const INCARNATION_MAX = 64;

/** The dialer's opening: versions and a fresh nonce; nothing about who it is. */
export interface HelloOpen {
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
  readonly nonce: Uint8Array;
}

/** The acceptor's answer to an opening: only its own fresh nonce. */
export interface Challenge {
  readonly nonce: Uint8Array;
  /** The acceptor's newest protocol version (absent from version-2 acceptors). */
  readonly protocolVersion?: number;
  /** The acceptor's current key period (version 6+): the dialer may MAC with that period's handshake key. */
  readonly keyPeriod?: number;
}

export const FEATURE_LEVEL_MAX = 255;

/**
 * Config keys that must agree across members, announced in the handshake
 * (version 4+): the receiver compares them with its own (handshake.ts
 * settingsDiffer). writeQuorum 0 = unset (a majority of the voters).
 */
export interface ClusterSettings {
  readonly writeQuorum: number;
  readonly electionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
}

/** What a dialer claims; sent in the `auth` frame with a MAC over it and both nonces. */
export interface Hello {
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
  readonly haId: string;
  readonly fromId: number;
  readonly fromName: string;
  readonly toId: number;
  readonly channel: Channel;
  /** The dialer's advertised HTTP API URL ('' when unknown): how peers learn where to forward requests. */
  readonly apiUrl: string;
  /** The dialer's configured role, '' when not given. */
  readonly role: 'voter' | 'observer' | 'dr' | '';
  /** Opaque id of the dialer's data dir (≤ 64 characters), '' when not given. */
  readonly incarnation: string;
  /** The dialer's feature level; sent only to acceptors of protocol version 3+, absent = level 1. */
  readonly featureLevel?: number;
  /** The dialer's cluster settings; sent only to acceptors of protocol version 4+, absent = unknown. */
  readonly settings?: ClusterSettings;
  /** The period of the handshake key the dialer's MAC is keyed with (version 6+); absent: keyed with the cluster secret itself. */
  readonly keyPeriod?: number;
  /** The dialer's cluster generation (src/node/generation.ts); sent only when above 0, to acceptors of version 5+; absent = 0. */
  readonly generation?: number;
}

export interface Auth {
  readonly hello: Hello;
  readonly mac: Uint8Array;
}

export interface HelloAck {
  /** The version both sides now speak. */
  readonly protocolVersion: number;
  readonly nodeId: number;
  readonly nodeName: string;
  readonly haId: string;
  readonly incarnation: string;
  /**
   * The incarnation the acceptor's membership records for the dialer ('' when
   * none): a node that finds it differs from its own came back with a new
   * data dir, and withholds its vote until it has caught up.
   */
  readonly knownIncarnation: string;
  /** The acceptor's feature level; sent only to a dialer that sent its own, absent = level 1. */
  readonly featureLevel?: number;
  /** The acceptor's cluster settings; sent only to a dialer that sent its own, absent = unknown. */
  readonly settings?: ClusterSettings;
  /** The acceptor's cluster generation; sent only when above 0, absent = 0. */
  readonly generation?: number;
  readonly mac: Uint8Array;
}

export interface Refusal {
  /** 'refused' before a handshake completed (nothing more is said); a FrameError code after it. */
  readonly code: string;
  readonly reason: string;
}

/** The only refusal an unauthenticated party ever gets. */
export const REFUSED: Refusal = { code: 'refused', reason: 'refused' };

const STRING_MAX = 1024;

function str(v: unknown, path: string, max = STRING_MAX): string {
  if (typeof v !== 'string' || v.length > max) fail(path, `a string of at most ${max} characters`, v);
  return v;
}

/** Absent, or an integer in 1..FEATURE_LEVEL_MAX. */
function optFeatureLevel(v: unknown, path: string): { featureLevel?: number } {
  if (v === undefined) return {};
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > FEATURE_LEVEL_MAX) fail(path, `an integer in 1..${FEATURE_LEVEL_MAX}`, v);
  return { featureLevel: v };
}

const SETTING_MAX = 86_400_000;

/** Absent, or a map of the three ClusterSettings integers. */
function optSettings(v: unknown, path: string): { settings?: ClusterSettings } {
  if (v === undefined) return {};
  const m = asMap(v, path);
  const int = (k: keyof ClusterSettings, min: number): number => {
    const x = m.get(k);
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > SETTING_MAX) fail(`${path}.${k}`, `an integer in ${min}..${SETTING_MAX}`, x);
    return x;
  };
  return { settings: { writeQuorum: int('writeQuorum', 0), electionTimeoutMs: int('electionTimeoutMs', 1), heartbeatIntervalMs: int('heartbeatIntervalMs', 1) } };
}

/** Absent, or a positive integer: a cluster generation (absent = 0). */
function optGeneration(v: unknown, path: string): { generation?: number } {
  if (v === undefined) return {};
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(path, 'a positive integer', v);
  return { generation: v };
}

function optCaEpoch(v: unknown, path: string): { caEpoch?: number } {
  if (v === undefined) return {};
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 2 ** 31) fail(path, 'a positive integer', v);
  return { caEpoch: v };
}

function packGeneration(g: number | undefined): { generation?: number } {
  return g === undefined || g === 0 ? {} : { generation: g };
}

function packSettings(s: ClusterSettings | undefined): { settings?: ClusterSettings } {
  return s === undefined ? {} : { settings: { writeQuorum: s.writeQuorum, electionTimeoutMs: s.electionTimeoutMs, heartbeatIntervalMs: s.heartbeatIntervalMs } };
}

function asMap(v: unknown, path: string): Map<unknown, unknown> {
  if (!(v instanceof Map)) fail(path, 'a map', v);
  return v;
}

function fixedBytes(v: unknown, path: string, n: number): Uint8Array {
  const b = bytes(v, path);
  if (b.length !== n) fail(path, `${n} bytes`, b);
  return b;
}

/** "" or an http(s) URL with an explicit port and nothing after it. */
export function isPeerApiUrl(s: string): boolean {
  if (s === '') return true;
  if (!/^https?:\/\//i.test(s)) return false;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.port !== '' && u.username === '' && u.password === ''
    && (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === '';
}

export function encodeHelloOpen(h: HelloOpen): Uint8Array {
  return pack({ protocolVersion: h.protocolVersion, minCompatibleVersion: h.minCompatibleVersion, nonce: h.nonce });
}

/** Versions first: an old peer's hello (no nonce) still yields its version range for the local log. */
export function decodeHelloOpen(payload: Uint8Array, offset: number): { versions?: { protocolVersion: number; minCompatibleVersion: number }; open?: HelloOpen; problem?: string } {
  const v = unpack(payload, offset, 'hello');
  try {
    const m = asMap(v, 'hello');
    const versions = {
      protocolVersion: uint(m.get('protocolVersion'), 'hello.protocolVersion'),
      minCompatibleVersion: uint(m.get('minCompatibleVersion'), 'hello.minCompatibleVersion'),
    };
    try {
      return { versions, open: { ...versions, nonce: fixedBytes(m.get('nonce'), 'hello.nonce', NONCE_BYTES) } };
    } catch (err) {
      if (err instanceof Invalid) return { versions, problem: err.message };
      throw err;
    }
  } catch (err) {
    if (err instanceof Invalid) return { problem: err.message };
    throw err;
  }
}

export function encodeChallenge(c: Challenge): Uint8Array {
  return pack({
    nonce: c.nonce, ...(c.protocolVersion !== undefined ? { protocolVersion: c.protocolVersion } : {}), ...(c.keyPeriod !== undefined ? { keyPeriod: c.keyPeriod } : {}),
  });
}

export function decodeChallenge(payload: Uint8Array, offset: number): Challenge {
  const v = unpack(payload, offset, 'challenge');
  return validated(offset, () => {
    const m = asMap(v, 'challenge');
    const nonce = fixedBytes(m.get('nonce'), 'challenge.nonce', NONCE_BYTES);
    const pv = m.get('protocolVersion');
    const kp = m.get('keyPeriod');
    return {
      nonce, ...(pv === undefined ? {} : { protocolVersion: uint(pv, 'challenge.protocolVersion') }), ...(kp === undefined ? {} : { keyPeriod: uint(kp, 'challenge.keyPeriod') }),
    };
  });
}

export function encodeAuth(a: Auth): Uint8Array {
  const h = a.hello;
  return pack({
    protocolVersion: h.protocolVersion, minCompatibleVersion: h.minCompatibleVersion, haId: h.haId, fromId: h.fromId,
    fromName: h.fromName, toId: h.toId, channel: h.channel, apiUrl: h.apiUrl, role: h.role, incarnation: h.incarnation,
    ...(h.featureLevel !== undefined ? { featureLevel: h.featureLevel } : {}), ...packSettings(h.settings), ...packGeneration(h.generation),
    ...(h.keyPeriod !== undefined ? { keyPeriod: h.keyPeriod } : {}), mac: a.mac,
  });
}

export function decodeAuth(payload: Uint8Array, offset: number): Auth {
  const v = unpack(payload, offset, 'auth');
  return validated(offset, () => {
    const m = asMap(v, 'auth');
    const ch = m.get('channel');
    if (ch !== 'messages' && ch !== 'snapshot') fail('auth.channel', "'messages' or 'snapshot'", ch);
    const role = m.get('role');
    if (role !== '' && role !== 'voter' && role !== 'observer' && role !== 'dr') fail('auth.role', "'voter', 'observer', 'dr' or ''", role);
    const apiUrl = str(m.get('apiUrl'), 'auth.apiUrl');
    if (!isPeerApiUrl(apiUrl)) fail('auth.apiUrl', 'an http(s) URL with a port, or ""', apiUrl);
    const hello: Hello = {
      protocolVersion: uint(m.get('protocolVersion'), 'auth.protocolVersion'),
      minCompatibleVersion: uint(m.get('minCompatibleVersion'), 'auth.minCompatibleVersion'),
      haId: str(m.get('haId'), 'auth.haId'),
      fromId: nodeId(m.get('fromId'), 'auth.fromId'),
      fromName: str(m.get('fromName'), 'auth.fromName'),
      toId: nodeId(m.get('toId'), 'auth.toId'),
      channel: ch,
      apiUrl,
      role: role as Hello['role'],
      incarnation: str(m.get('incarnation'), 'auth.incarnation', INCARNATION_MAX),
      ...optFeatureLevel(m.get('featureLevel'), 'auth.featureLevel'),
      ...optSettings(m.get('settings'), 'auth.settings'),
      ...optGeneration(m.get('generation'), 'auth.generation'),
      ...(m.get('keyPeriod') === undefined ? {} : { keyPeriod: uint(m.get('keyPeriod'), 'auth.keyPeriod') }),
    };
    return { hello, mac: fixedBytes(m.get('mac'), 'auth.mac', MAC_BYTES) };
  });
}

export function encodeHelloAck(a: HelloAck): Uint8Array {
  return pack({
    protocolVersion: a.protocolVersion, nodeId: a.nodeId, nodeName: a.nodeName, haId: a.haId, incarnation: a.incarnation, knownIncarnation: a.knownIncarnation,
    ...(a.featureLevel !== undefined ? { featureLevel: a.featureLevel } : {}), ...packSettings(a.settings), ...packGeneration(a.generation), mac: a.mac,
  });
}

export function decodeHelloAck(payload: Uint8Array, offset: number): HelloAck {
  const v = unpack(payload, offset, 'helloAck');
  return validated(offset, () => {
    const m = asMap(v, 'helloAck');
    return {
      protocolVersion: uint(m.get('protocolVersion'), 'helloAck.protocolVersion'),
      nodeId: nodeId(m.get('nodeId'), 'helloAck.nodeId'),
      nodeName: str(m.get('nodeName'), 'helloAck.nodeName'),
      haId: str(m.get('haId'), 'helloAck.haId'),
      incarnation: str(m.get('incarnation'), 'helloAck.incarnation', INCARNATION_MAX),
      knownIncarnation: str(m.get('knownIncarnation') ?? '', 'helloAck.knownIncarnation', INCARNATION_MAX),
      ...optFeatureLevel(m.get('featureLevel'), 'helloAck.featureLevel'),
      ...optSettings(m.get('settings'), 'helloAck.settings'),
      ...optGeneration(m.get('generation'), 'helloAck.generation'),
      mac: fixedBytes(m.get('mac'), 'helloAck.mac', MAC_BYTES),
    };
  });
}

export function encodeRefusal(r: Refusal): Uint8Array {
  return pack({ code: r.code, reason: r.reason });
}

export function decodeRefusal(payload: Uint8Array, offset: number): Refusal {
  const v = unpack(payload, offset, 'refuse');
  return validated(offset, () => {
    const m = asMap(v, 'refuse');
    return { code: str(m.get('code'), 'refuse.code'), reason: str(m.get('reason'), 'refuse.reason') };
  });
}

// ---- Join exchange (join.ts) ----------------------------------------------

/** What a joiner claims (covered by its MAC, join.ts). */
export interface JoinClaims {
  readonly tokenId: string;
  readonly haId: string;
  readonly nodeName: string;
  readonly apiUrl: string;
  readonly peerUrl: string;
  readonly featureLevel: number;
  readonly incarnation: string;
}

export interface JoinAuthFrame extends JoinClaims {
  readonly mac: Uint8Array;
}

export interface JoinAckFrame {
  readonly haId: string;
  readonly nodeId: number;
  readonly leaderId: number;
  readonly bootstrap: string;
  readonly peers: string;
  /** The cluster generation the joiner joins (absent = 0). */
  readonly generation?: number;
  /** The cluster CA's epoch (absent = 0). */
  readonly caEpoch?: number;
  readonly iv: Uint8Array;
  readonly sealed: Uint8Array;
  readonly mac: Uint8Array;
}

export function encodeJoinAuth(a: JoinAuthFrame): Uint8Array {
  return pack({ ...a });
}

export function decodeJoinAuth(payload: Uint8Array, offset: number): JoinAuthFrame {
  const v = unpack(payload, offset, 'joinAuth');
  return validated(offset, () => {
    const m = asMap(v, 'joinAuth');
    const apiUrl = str(m.get('apiUrl'), 'joinAuth.apiUrl');
    if (apiUrl === '' || !isPeerApiUrl(apiUrl)) fail('joinAuth.apiUrl', 'an http(s) URL with a port', apiUrl);
    const fl = optFeatureLevel(m.get('featureLevel'), 'joinAuth.featureLevel').featureLevel;
    if (fl === undefined) fail('joinAuth.featureLevel', 'an integer', undefined);
    return {
      tokenId: str(m.get('tokenId'), 'joinAuth.tokenId', 64),
      haId: str(m.get('haId'), 'joinAuth.haId'),
      nodeName: str(m.get('nodeName'), 'joinAuth.nodeName', 256),
      apiUrl,
      peerUrl: str(m.get('peerUrl'), 'joinAuth.peerUrl', 256),
      featureLevel: fl,
      incarnation: str(m.get('incarnation'), 'joinAuth.incarnation', INCARNATION_MAX),
      mac: fixedBytes(m.get('mac'), 'joinAuth.mac', MAC_BYTES),
    };
  });
}

export function encodeJoinAck(a: JoinAckFrame): Uint8Array {
  return pack({ ...a });
}

export function decodeJoinAck(payload: Uint8Array, offset: number): JoinAckFrame {
  const v = unpack(payload, offset, 'joinAck');
  return validated(offset, () => {
    const m = asMap(v, 'joinAck');
    return {
      haId: str(m.get('haId'), 'joinAck.haId'),
      nodeId: nodeId(m.get('nodeId'), 'joinAck.nodeId'),
      leaderId: nodeId(m.get('leaderId'), 'joinAck.leaderId'),
      bootstrap: str(m.get('bootstrap'), 'joinAck.bootstrap', 64 * 1024),
      peers: str(m.get('peers'), 'joinAck.peers', 64 * 1024),
      ...optGeneration(m.get('generation'), 'joinAck.generation'),
      ...optCaEpoch(m.get('caEpoch'), 'joinAck.caEpoch'),
      iv: fixedBytes(m.get('iv'), 'joinAck.iv', 12),
      sealed: bytes(m.get('sealed'), 'joinAck.sealed'),
      mac: fixedBytes(m.get('mac'), 'joinAck.mac', MAC_BYTES),
    };
  });
}
