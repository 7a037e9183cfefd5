// `quorate isolate NAME` (POST /v1/cluster/isolate): remove a suspected-
// compromised node at once and rotate the cluster secret it knew. See
// src/state/secrets.ts for the rotation entry and docs/operations.md
// "Isolate a node".
//
// 1. Remove it (the remove of ./enroll.ts: quorum arithmetic, a leader hands
//    over first and the request is forwarded to the new leader). From the
//    apply on, its id is in the membership's `removed` list: every member
//    refuses its handshake (code removed) and closes its connections.
// 2. Propose a rotation: a new random secret sealed under the current one.
//    Each member switches at apply: it writes security.clusterSecretFile
//    (atomically, fsynced) and its transport proves the new secret in every
//    new handshake. Established connections among members stay, so a member
//    that applies later still hears the commit. A node proving the previous
//    secret is refused with code secret_rotated (logged on both sides).
// A member down during the rotation holds only the old secret: it cannot be
// told the new one over the network safely (anything it could prove, the
// isolated node could prove too), so the operator copies the current
// clusterSecretFile to it (or enrolls it again). A member restarted after a
// crash re-applies the entry, or, if it was compacted, walks the rotations
// kept in the snapshot from the secret it holds.
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { SECRETS_MACHINE_ID, encodeEnvelope, encodeSecretsPayload, latestSecret, sealRotation, type SecretRotation } from '../state/index.js';
import { formatClusterSecret } from '../transport/security.js';
import { NodeError } from './errors.js';
import type { Enroller } from './enroll.js';

export interface IsolateResult {
  readonly nodeName: string;
  readonly nodeId: number;
  readonly removed: string;
  readonly secretRotated: boolean;
  readonly message: string;
}

export interface IsolateDeps {
  readonly log: Logger;
  readonly enroller: Pick<Enroller, 'remove'>;
  /** The node's cluster secret (the same array the join exchange and approval probes use): overwritten in place on rotation. */
  readonly secret: Uint8Array;
  readonly secretFile: string;
  featureLevel(): number;
  /** The membership's removed ids with the names the registry knows for them. */
  removedIdNamed(name: string): number | undefined;
  propose(entry: Uint8Array): Promise<unknown>;
  setTransportSecret(s: Uint8Array): void;
}

/** Writes the secret file atomically and durably (tmp, fsync, rename, fsync dir), synchronously: it runs in the apply path. */
function writeSecretFile(path: string, secret: Uint8Array): void {
  const tmp = `${path}.rotate-${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, formatClusterSecret(secret));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** The secrets machine changed (apply or restore, in the loop): switch to the newest secret reachable from ours. */
export function followRotations(d: Pick<IsolateDeps, 'log' | 'secret' | 'secretFile' | 'setTransportSecret'>, rotations: readonly SecretRotation[]): void {
  let next: Uint8Array;
  try {
    next = latestSecret(rotations, d.secret);
  } catch (e) {
    d.log.error({ event: 'cluster_secret_rotation_failed', err: (e as Error).message }, `cannot open the rotated cluster secret (${(e as Error).message}): copy security.clusterSecretFile from another member and restart this node`);
    return;
  }
  if (Buffer.from(next).equals(Buffer.from(d.secret))) return;
  const last = rotations.at(-1);
  writeSecretFile(d.secretFile, next);
  d.secret.set(next);
  d.setTransportSecret(next);
  d.log.warn({ event: 'cluster_secret_rotated', isolated: last?.isolatedName, file: d.secretFile },
    `the cluster secret was rotated (isolation of ${last?.isolatedName ?? '?'}); written to ${d.secretFile}. Members down meanwhile need a copy of this file`);
}

/** Leader side of isolate: remove, then rotate. */
export async function isolate(d: IsolateDeps, nodeName: string): Promise<IsolateResult> {
  if (d.featureLevel() < 2) throw new NodeError('invalid_conf_change', 'isolate needs cluster feature level 2 (a member runs the previous release): upgrade every member first, or use `quorate remove`');
  let nodeId = d.removedIdNamed(nodeName);
  let removed: string;
  if (nodeId === undefined) {
    const r = await d.enroller.remove(nodeName);
    nodeId = r.nodeId;
    removed = r.message;
  } else {
    removed = `${nodeName} (id ${nodeId}) was already removed`;
  }
  d.log.warn({ event: 'isolate', nodeName, nodeId }, `isolating ${nodeName} (id ${nodeId}): removed; its identity is refused at the handshake; rotating the cluster secret`);
  const { rotation } = sealRotation(d.secret, nodeName, nodeId);
  await d.propose(encodeEnvelope({ machine: SECRETS_MACHINE_ID, at: Date.now(), payload: encodeSecretsPayload(rotation) }));
  const message = `${nodeName} isolated: ${removed}; the cluster secret was rotated on every member that applied it (members down now need a copy of security.clusterSecretFile from a member before they rejoin)`;
  return { nodeName, nodeId, removed, secretRotated: true, message };
}
