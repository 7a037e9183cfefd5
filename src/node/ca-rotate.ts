// `quorate ca rotate` (POST /v1/cluster/ca/rotate): re-root the cluster CA
// without isolating anyone.
//
// Mechanism (docs/security.md "Rotating the CA"):
// - The roots derive from the cluster secret and a replicated CA epoch
//   (./cluster-ca.ts). The leader proposes [2, "reroot", e+1] (secrets
//   machine, src/state/secrets.ts; cluster feature level 4). The cluster
//   secret is NOT changed, so the peer handshake's proof is unaffected.
// - Every member, at apply, makes a new node key and issues its certificate
//   from epoch e+1, trusts e, e+1 and e+2, and reconnects to its peers, so
//   each peer sees the new certificate in a fresh handshake.
// - Epoch e stays trusted (the grace) until every current member showed a
//   certificate of e+1: the leader checks this from the handshakes it
//   accepted (AutoTls.peerEpoch) and proposes [2, "reroot-done", e+1]; at its
//   apply every member drops e.
// - A member that applies late (slow, partitioned, down) still holds a
//   certificate of e: the others trust e while in grace, and it trusts e+1
//   already (every node trusts the next epoch ahead), so it connects both ways,
//   catches up, re-issues, and only then does the grace end. A member that
//   never comes back keeps the grace open until it is removed (`quorate
//   remove`); a new rotation is refused meanwhile, naming it.
// - Compared with isolate: isolate rotates the cluster secret, because the
//   isolated node knew it; old roots are then distrusted at once and a member
//   down during it needs a copy of the secret file. `ca rotate` is for
//   routine re-rooting and for a leaked node key or certificate: it does not
//   help when the cluster secret itself may have leaked (use isolate, or
//   re-create the secret; docs/operations.md).
import type { Logger } from 'pino';
import { CA_EPOCH_FEATURE_LEVEL, SECRETS_MACHINE_ID, encodeCaEpochPayload, encodeEnvelope, type CaEpochState } from '../state/index.js';
import { NodeError } from './errors.js';
import type { AutoTls } from './tls-auto.js';

/** How often the leader checks whether a rotation's grace can end. */
export const CA_ROTATION_CHECK_MS = 1000;

export interface CaRotateResult {
  /** The epoch the cluster CA moved to. */
  readonly epoch: number;
  readonly message: string;
}

export interface CaPending {
  readonly epoch: number;
  /** Current members not yet seen with a certificate of `epoch` (names). */
  readonly waitingFor: readonly string[];
}

export interface CaRotationDeps {
  readonly log: Logger;
  readonly autoTls: AutoTls | undefined;
  readonly selfId: number;
  featureLevel(): number;
  isLeader(): boolean;
  /** The replicated CA epoch and grace (src/state/secrets.ts). */
  caState(): CaEpochState;
  /** Every current member (voters, observers, learners): id and name. */
  members(): readonly { readonly id: number; readonly name: string }[];
  propose(entry: Uint8Array): Promise<unknown>;
}

export class CaRotation {
  readonly #d: CaRotationDeps;
  #proposingDone = false;
  #lastWaitLog = '';

  constructor(d: CaRotationDeps) {
    this.#d = d;
  }

  /** Members that have not shown a certificate of the current epoch yet, while a grace is open (undefined: none open). */
  pending(): CaPending | undefined {
    const ca = this.#d.caState();
    const tls = this.#d.autoTls;
    if (ca.graceEpoch === undefined || tls === undefined) return undefined;
    const waitingFor: string[] = [];
    for (const m of this.#d.members()) {
      const seen = m.id === this.#d.selfId ? tls.caEpochs.epoch : tls.peerEpoch(m.id);
      if (seen === undefined || seen < ca.epoch) waitingFor.push(m.name);
    }
    return { epoch: ca.epoch, waitingFor };
  }

  /** Leader only (the route runs it on the leader): move the cluster CA to the next epoch. */
  async rotate(): Promise<CaRotateResult> {
    const level = this.#d.featureLevel();
    if (level < CA_EPOCH_FEATURE_LEVEL) {
      throw new NodeError('feature_unavailable', `ca rotate needs cluster feature level ${CA_EPOCH_FEATURE_LEVEL} (this cluster is at ${level}: some member runs an older release or has not been heard from yet); ` +
        'upgrade every member, then retry. Until then, `quorate isolate` re-roots by rotating the cluster secret');
    }
    if (this.#d.autoTls === undefined) {
      throw new NodeError('ca_rotation_refused', 'this cluster does not use the automatic cluster CA (security.tls is not "auto", or every peer is on loopback and apiTls is not "auto"): there is no root to rotate; with your own PKI, rotate your certificates and restart each node');
    }
    const p = this.pending();
    if (p !== undefined) {
      throw new NodeError('ca_rotation_refused', `the previous CA rotation (to epoch ${p.epoch}) is still in its grace: ${p.waitingFor.length > 0 ? `waiting for ${p.waitingFor.join(', ')} to show a certificate of epoch ${p.epoch}` : 'every member re-issued; its end is being committed'}. ` +
        'Retry once `quorate ca show` reports no grace; a member that is down keeps the grace open until it is back or removed (`quorate remove`)');
    }
    const epoch = this.#d.caState().epoch + 1;
    this.#d.log.warn({ event: 'ca_rotate', epoch }, `rotating the cluster CA to epoch ${epoch}: every member re-issues from the new roots; epoch ${epoch - 1} stays trusted until all have`);
    await this.#d.propose(encodeEnvelope({ machine: SECRETS_MACHINE_ID, at: Date.now(), payload: encodeCaEpochPayload({ kind: 'reroot', epoch }) }));
    return {
      epoch,
      message: `the cluster CA moved to epoch ${epoch}: members re-issue their certificates (with new keys) from the new roots and reconnect; epoch ${epoch - 1} stays trusted until every member has shown a certificate of epoch ${epoch} (\`quorate ca show\`)`,
    };
  }

  /** Leader, every second or so: end the grace once every member showed a certificate of the new epoch. */
  tick(): void {
    if (!this.#d.isLeader() || this.#proposingDone) return;
    const p = this.pending();
    if (p === undefined) return;
    if (p.waitingFor.length > 0) {
      const key = `${p.epoch}:${p.waitingFor.join(',')}`;
      if (key !== this.#lastWaitLog) {
        this.#lastWaitLog = key;
        this.#d.log.info({ event: 'ca_rotation_waiting', epoch: p.epoch, waitingFor: p.waitingFor }, `CA epoch ${p.epoch - 1} stays trusted: waiting for ${p.waitingFor.join(', ')} to show a certificate of epoch ${p.epoch}`);
      }
      return;
    }
    this.#proposingDone = true;
    this.#d.propose(encodeEnvelope({ machine: SECRETS_MACHINE_ID, at: Date.now(), payload: encodeCaEpochPayload({ kind: 'reroot-done', epoch: p.epoch }) })).then(
      () => this.#d.log.info({ event: 'ca_rotation_complete', epoch: p.epoch }, `every member re-issued from CA epoch ${p.epoch}: epoch ${p.epoch - 1} is no longer trusted`),
      (e: unknown) => this.#d.log.warn({ event: 'ca_rotation_complete_failed', epoch: p.epoch, err: (e as Error).message }, `could not commit the end of the CA rotation's grace (${(e as Error).message}); retrying`),
    ).finally(() => {
      this.#proposingDone = false;
    });
  }
}
