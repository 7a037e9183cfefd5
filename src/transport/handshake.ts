// Handshake policy: who the acceptor talks to. Pure functions, tested alone.
import type { Hello, Refusal } from './codec.js';

/** The wire protocol this build speaks. Bump on any change to frames or payloads. */
export const PROTOCOL_VERSION = 1;
/** The oldest protocol version this build still speaks (rolling upgrades span this range). */
export const MIN_COMPATIBLE_VERSION = 1;

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

function range(r: VersionRange): string {
  return r.minCompatibleVersion === r.protocolVersion
    ? `version ${r.protocolVersion} only`
    : `versions ${r.minCompatibleVersion} to ${r.protocolVersion}`;
}

export interface AcceptorIdentity extends VersionRange {
  readonly nodeId: number;
  readonly nodeName: string;
  readonly haId: string;
  /** When given, only these dialer ids are accepted. */
  readonly isAllowed?: (id: number) => boolean;
}

export type HelloVerdict = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly refusal: Refusal };

export function judgeHello(hello: Hello, me: AcceptorIdentity): HelloVerdict {
  const who = `node ${JSON.stringify(hello.fromName)} (id ${hello.fromId})`;
  if (hello.haId !== me.haId) {
    return refuse('cluster_mismatch', `peer belongs to cluster ${JSON.stringify(hello.haId)}, this node to ${JSON.stringify(me.haId)} (${who} dialed ${JSON.stringify(me.nodeName)}); check cluster.haId and cluster.peerEndpoints`);
  }
  const version = negotiateVersion(me, hello);
  if (version === undefined) {
    return refuse('version_incompatible', `protocol versions incompatible: ${who} speaks ${range(hello)}, this node ${JSON.stringify(me.nodeName)} speaks ${range(me)}; ` +
      `nodes connect only when each one's version is within the other's range (a rolling upgrade must move through versions both sides speak)`);
  }
  if (hello.toId !== undefined && hello.toId !== me.nodeId) {
    return refuse('wrong_node', `${who} dialed node id ${hello.toId}, but this is node id ${me.nodeId} (${JSON.stringify(me.nodeName)}); check its peer addresses`);
  }
  if (hello.fromId === me.nodeId) {
    return refuse('duplicate_id', `${who} has this node's own id ${me.nodeId}; node ids must be unique`);
  }
  if (me.isAllowed && !me.isAllowed(hello.fromId)) {
    return refuse('peer_unknown', `${who} is not a known member of cluster ${JSON.stringify(me.haId)} on this node`);
  }
  return { ok: true, version };
}

function refuse(code: string, reason: string): HelloVerdict {
  return { ok: false, refusal: { code, reason } };
}
