// The join exchange: how a node being enrolled proves it holds a one-time
// join token and receives the cluster secret, without the token or the
// secret crossing the network in clear. Pure functions, tested alone
// (join.test.ts); peer-transport.ts runs the frames, src/node/enroll.ts the policy.
//
//   joiner → hello {versions, nonceJ}            (the ordinary opening)
//   leader → challenge {nonceL, version}          (the ordinary challenge)
//   joiner → joinAuth {tokenId, claims…, mac}     mac = HMAC(K_mac, "dialer" ‖ nonceJ ‖ nonceL ‖ claims)
//   leader → joinAck {answer…, iv, sealed, mac}   sealed = AES-256-GCM(K_enc, iv, clusterSecret, aad = answer)
//                                                 mac = HMAC(K_mac, "acceptor" ‖ nonceJ ‖ nonceL ‖ joiner mac ‖ answer ‖ iv ‖ sealed)
//          | refuse {code, reason}
//
// K_mac ‖ K_enc = HKDF-SHA256(ikm = token, salt = nonceJ ‖ nonceL, info = label), 64 bytes.
// tokenId = SHA-256("quorate join token id" ‖ token), 16 bytes hex: lets the
// leader find the token; it reveals nothing about the token (256 random bits).
// Both nonces are fresh per connection, so a recorded exchange cannot be
// replayed, and each side proves knowledge of the token to the other before
// anything is believed: the joiner accepts the answer only after the
// leader's MAC verifies, which an impostor without the token cannot produce.
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { transcript } from './handshake.js';
import type { JoinClaims } from './handshake-codec.js';

export type { JoinClaims } from './handshake-codec.js';

/** A join token as printed: `qjt-` and 64 hex digits (32 random bytes). */
export const JOIN_TOKEN_PREFIX = 'qjt-';
const TOKEN_RE = /^qjt-[0-9a-f]{64}$/;

export function newJoinToken(): string {
  return `${JOIN_TOKEN_PREFIX}${randomBytes(32).toString('hex')}`;
}

export function isJoinToken(s: string): boolean {
  return TOKEN_RE.test(s);
}

function tokenBytes(token: string): Buffer {
  if (!isJoinToken(token)) throw new Error(`a join token is "${JOIN_TOKEN_PREFIX}" followed by 64 hex digits (as \`quorate join-token create\` prints it)`);
  return Buffer.from(token.slice(JOIN_TOKEN_PREFIX.length), 'hex');
}

/** The public handle of a token: what the joiner names on the wire. */
export function joinTokenId(token: string): string {
  return createHash('sha256').update('quorate join token id\0').update(tokenBytes(token)).digest('hex').slice(0, 32);
}

export interface JoinKeys {
  readonly mac: Buffer;
  readonly enc: Buffer;
}

const HKDF_INFO = 'quorate join v1: mac and encryption keys';

export function deriveJoinKeys(token: string, joinerNonce: Uint8Array, leaderNonce: Uint8Array): JoinKeys {
  const okm = Buffer.from(hkdfSync('sha256', tokenBytes(token), Buffer.concat([joinerNonce, leaderNonce]), HKDF_INFO, 64));
  return { mac: okm.subarray(0, 32), enc: okm.subarray(32, 64) };
}


/** What the leader answers (covered by its MAC and authenticated as the AES-GCM additional data). */
export interface JoinAnswer {
  readonly haId: string;
  readonly nodeId: number;
  readonly leaderId: number;
  /** JSON: the cluster's bootstrap (index-0) members [{id, peerUrl}]. */
  readonly bootstrap: string;
  /** JSON: the current members' addresses [{id, peerUrl}]. */
  readonly peers: string;
  /** The cluster generation (src/node/generation.ts) the joiner joins; absent = 0. */
  readonly generation?: number;
  /** The cluster CA's epoch (`quorate ca rotate`, src/node/ca-rotate.ts); absent = 0. Sent only above 0 (feature level 4). */
  readonly caEpoch?: number;
}

const JOINER_LABEL = 'quorate join v1: joiner proof';
const LEADER_LABEL = 'quorate join v1: leader proof';
const AAD_LABEL = 'quorate join v1: sealed secret';


function claimFields(c: JoinClaims): (string | number)[] {
  return [c.tokenId, c.haId, c.nodeName, c.apiUrl, c.peerUrl, c.featureLevel, c.incarnation];
}

function answerFields(a: JoinAnswer): (string | number)[] {
  return [
    a.haId, a.nodeId, a.leaderId, a.bootstrap, a.peers, ...(a.generation !== undefined && a.generation > 0 ? ['generation', a.generation] : []),
    ...(a.caEpoch !== undefined && a.caEpoch > 0 ? ['caEpoch', a.caEpoch] : []),
  ];
}

export function joinerMac(keys: JoinKeys, joinerNonce: Uint8Array, leaderNonce: Uint8Array, c: JoinClaims): Uint8Array {
  return new Uint8Array(createHmac('sha256', keys.mac).update(transcript(JOINER_LABEL, [joinerNonce, leaderNonce, ...claimFields(c)])).digest());
}

export function leaderMac(keys: JoinKeys, joinerNonce: Uint8Array, leaderNonce: Uint8Array, joinerProof: Uint8Array, a: JoinAnswer, iv: Uint8Array, sealed: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', keys.mac).update(transcript(LEADER_LABEL, [joinerNonce, leaderNonce, joinerProof, ...answerFields(a), iv, sealed])).digest());
}

export function macMatches(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === 32 && b.length === 32 && timingSafeEqual(a, b);
}

/** AES-256-GCM of the cluster secret; the answer is the additional data. Returns iv (12 bytes) and ciphertext ‖ tag (16 bytes). */
export function sealSecret(keys: JoinKeys, secret: Uint8Array, a: JoinAnswer): { iv: Uint8Array; sealed: Uint8Array } {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', keys.enc, iv);
  c.setAAD(transcript(AAD_LABEL, answerFields(a)));
  const body = Buffer.concat([c.update(secret), c.final(), c.getAuthTag()]);
  return { iv: new Uint8Array(iv), sealed: new Uint8Array(body) };
}

/** Decrypts and authenticates the sealed secret; throws when anything was altered or the key differs. */
export function openSecret(keys: JoinKeys, iv: Uint8Array, sealed: Uint8Array, a: JoinAnswer): Uint8Array {
  if (iv.length !== 12 || sealed.length < 16 + 32) throw new Error('sealed cluster secret has the wrong size');
  const d = createDecipheriv('aes-256-gcm', keys.enc, iv);
  d.setAAD(transcript(AAD_LABEL, answerFields(a)));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return new Uint8Array(Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]));
}
