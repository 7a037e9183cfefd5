// The dialer's side of the handshake, shared by message links and snapshot
// streams: opening → (challenge) → auth → (helloAck, verified) | (refuse).
import {
  decodeChallenge, decodeHelloAck, decodeRefusal, encodeAuth, encodeFrame, encodeHelloOpen,
} from './codec.js';
import type { Frame, Hello, HelloAck, Refusal } from './codec.js';
import { FrameError } from './errors.js';
import { acceptorMac, dialerMac, GENERATION_VERSION, macEqual, newNonce, PERIOD_KEYS_VERSION, periodKey, SETTINGS_VERSION } from './handshake.js';

/** Per-period handshake keys (handshake.ts): whether to use them and this node's current key period. */
export interface DialerKeys {
  enabled(): boolean;
  period(): number;
}

export type DialerStep =
  | { readonly kind: 'send'; readonly frame: Buffer }
  | { readonly kind: 'established'; readonly ack: HelloAck }
  | { readonly kind: 'refused'; readonly refusal: Refusal }
  /** The acceptor's answer did not verify: not a member holding this secret, or not the node dialed. Log locally, close. */
  | { readonly kind: 'failed'; readonly reason: string };

export class DialerHandshake {
  readonly #secret: Uint8Array;
  readonly #keys: DialerKeys | undefined;
  /** What the proofs are keyed with: the secret, or the handshake key of the period named in the hello. */
  #key: Uint8Array;
  #hello: Hello;
  readonly #nonce = newNonce();
  readonly #where: string;
  #acceptorNonce: Uint8Array | undefined;
  #proof: Uint8Array | undefined;

  /** `where`: the dialed address, for messages. */
  constructor(secret: Uint8Array, hello: Hello, where: string, keys?: DialerKeys) {
    this.#secret = secret;
    this.#key = secret;
    this.#keys = keys;
    this.#hello = hello;
    this.#where = where;
  }

  /** The first frame: versions and our nonce, nothing about who we are. */
  openFrame(): Buffer {
    const h = this.#hello;
    return encodeFrame('hello', encodeHelloOpen({ protocolVersion: h.protocolVersion, minCompatibleVersion: h.minCompatibleVersion, nonce: this.#nonce }));
  }

  /** Feed one frame from the acceptor while the handshake runs; throws FrameError on a frame out of place. */
  step(f: Frame): DialerStep {
    if (f.type === 'refuse') return { kind: 'refused', refusal: decodeRefusal(f.payload, f.offset) };
    if (f.type === 'challenge' && this.#acceptorNonce === undefined) {
      const ch = decodeChallenge(f.payload, f.offset);
      this.#acceptorNonce = ch.nonce;
      // A feature level only to an acceptor that knows the field (it is in the MAC).
      if ((ch.protocolVersion ?? 2) < 3 && this.#hello.featureLevel !== undefined) {
        const { featureLevel: _unknownToIt, ...older } = this.#hello;
        this.#hello = older;
      }
      // Cluster settings likewise only to an acceptor of version 4+.
      if ((ch.protocolVersion ?? 2) < SETTINGS_VERSION && this.#hello.settings !== undefined) {
        const { settings: _unknownToIt, ...older } = this.#hello;
        this.#hello = older;
      }
      // A generation above 0 means nothing to an acceptor older than version 5: it could not refuse a node of
      // another generation, so this node does not talk to it at all.
      if ((ch.protocolVersion ?? 2) < GENERATION_VERSION && (this.#hello.generation ?? 0) > 0) {
        return { kind: 'failed', reason: `the node at ${this.#where} speaks protocol version ${ch.protocolVersion ?? 2}, which has no cluster generations, and this node is at generation ${this.#hello.generation}: upgrade it and enroll it into this cluster` };
      }
      // Period keys only to an acceptor that announced its key period (version 6), and only once enabled (feature level 4).
      if ((ch.protocolVersion ?? 2) >= PERIOD_KEYS_VERSION && ch.keyPeriod !== undefined && this.#keys?.enabled() === true) {
        const p = this.#keys.period();
        this.#hello = { ...this.#hello, keyPeriod: p };
        this.#key = periodKey(this.#secret, this.#hello.haId, p);
      }
      this.#proof = dialerMac(this.#key, this.#nonce, this.#acceptorNonce, this.#hello);
      return { kind: 'send', frame: encodeFrame('auth', encodeAuth({ hello: this.#hello, mac: this.#proof })) };
    }
    if (f.type === 'helloAck' && this.#acceptorNonce !== undefined && this.#proof !== undefined) {
      const ack = decodeHelloAck(f.payload, f.offset);
      const want = acceptorMac(this.#key, this.#nonce, this.#acceptorNonce, this.#proof, this.#hello.fromId, this.#hello.channel, ack);
      if (!macEqual(want, ack.mac)) {
        return { kind: 'failed', reason: `the process at ${this.#where} did not prove knowledge of the cluster secret: it is not a member of this cluster, or its security.clusterSecretFile differs` };
      }
      const h = this.#hello;
      if (ack.nodeId !== h.toId || ack.haId !== h.haId) {
        return { kind: 'failed', reason: `the address ${this.#where} answers as node ${ack.nodeId} of cluster ${JSON.stringify(ack.haId)}, expected node ${h.toId} of ${JSON.stringify(h.haId)}` };
      }
      if (ack.protocolVersion > h.protocolVersion || ack.protocolVersion < h.minCompatibleVersion) {
        return { kind: 'failed', reason: `the node at ${this.#where} chose protocol version ${ack.protocolVersion}, outside this node's range ${h.minCompatibleVersion}..${h.protocolVersion}` };
      }
      if ((ack.generation ?? 0) !== (h.generation ?? 0)) {
        return { kind: 'failed', reason: `the node at ${this.#where} is of cluster generation ${ack.generation ?? 0}, this node of generation ${h.generation ?? 0}: nodes of different generations never exchange messages (docs/operations.md "DR promotion and failback")` };
      }
      return { kind: 'established', ack };
    }
    throw new FrameError(f.offset, `unexpected ${f.type} frame during the handshake`);
  }
}
