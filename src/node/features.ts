// Feature levels: how a cluster upgrades its replicated data formats without
// stopping. Each build applies formats up to its FEATURE_LEVEL and announces
// that level in the authenticated peer handshake (src/transport). The leader
// writes a newer format only once every current member (voters, observers,
// learners) has announced a level that applies it; a member not heard from
// yet counts as level 1. So no node ever meets an entry it cannot apply, as
// long as members are not downgraded once the cluster has moved up (entries
// already in the log stay in the newer format).
//
//   level 1: the previous release: KV commands in entry format 1, KV snapshots (QKVS 1/2)
//   level 2: format-2 envelopes ([2, machine, at, key, payload]), composite snapshots (QSMS)
//   level 3: pause and drain with the operator's reason and an expiry (settings commands
//            and snapshot section version 2, src/state/settings.ts)
//   level 4: this release: the cluster CA's epoch (`quorate ca rotate`: secrets commands and snapshot
//            section version 2, src/state/secrets.ts, src/node/ca-rotate.ts); members dial with per-period
//            handshake keys (protocol version 6, src/transport/handshake.ts)
import type { Logger } from 'pino';
import type { Member, NodeId } from '../raft/index.js';
import { KV_MACHINE_ID, encodeCommand, encodeEnvelope, encodeKvEntryFast, encodeKvPayload, type Command } from '../state/index.js';

/** The level this build supports. */
export const FEATURE_LEVEL = 4;
/** What a peer that announces nothing (a previous release) counts as. */
export const BASE_FEATURE_LEVEL = 1;

/**
 * The cluster feature level: the lowest level over all current members. This
 * node counts with its own level; every other member with the level last
 * heard from it on an authenticated connection, or BASE_FEATURE_LEVEL if none.
 */
export function clusterFeatureLevel(
  members: readonly Pick<Member, 'id'>[],
  self: { readonly id: NodeId; readonly level: number },
  heard: ReadonlyMap<NodeId, number>,
): number {
  let level = self.level;
  for (const m of members) {
    const l = m.id === self.id ? self.level : (heard.get(m.id) ?? BASE_FEATURE_LEVEL);
    if (l < level) level = l;
  }
  return Math.max(BASE_FEATURE_LEVEL, level);
}

/**
 * Test-only: QUORATE_TEST_FEATURE_LEVEL=1 runs this build as the previous
 * release: it announces level 1 and stops on a format-2 entry exactly as an
 * old binary would (UnsupportedCommandVersionError → fatal). Values above
 * FEATURE_LEVEL are capped; anything else that is not a positive integer is refused.
 */
export function featureLevelFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['QUORATE_TEST_FEATURE_LEVEL'];
  if (raw === undefined || raw === '') return FEATURE_LEVEL;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < BASE_FEATURE_LEVEL) throw new Error(`QUORATE_TEST_FEATURE_LEVEL must be an integer >= ${BASE_FEATURE_LEVEL}, got ${JSON.stringify(raw)}`);
  return Math.min(n, FEATURE_LEVEL);
}

/**
 * Encodes what the node proposes in the format the cluster reads: format-2
 * envelopes only once every member applies them (cluster feature level >= 2),
 * else the KV's format 1. Logs `feature_level_changed` when the level moves.
 */
export class EntryEncoder {
  readonly #log: Logger;
  /** The level last used (0: none yet). */
  #level = 0;

  constructor(log: Logger) {
    this.#log = log;
  }

  encodeKv(command: Command, at: number, idempotencyKey: string | undefined, level: number): Uint8Array {
    if (level !== this.#level) {
      if (this.#level !== 0 || level !== FEATURE_LEVEL) {
        this.#log.info({ event: 'feature_level_changed', from: this.#level, to: level }, `cluster feature level is ${level}: proposing entry format ${level >= 2 ? 2 : 1}`);
      }
      this.#level = level;
    }
    if (level >= 2) {
      // A put or delete with ASCII strings is written directly (src/state/fast-entry.ts): the same bytes.
      const direct = encodeKvEntryFast(command, at, idempotencyKey);
      if (direct !== undefined) return direct;
    }
    const ik = idempotencyKey !== undefined ? { idempotencyKey } : {};
    return level >= 2 ? encodeEnvelope({ machine: KV_MACHINE_ID, at, ...ik, payload: encodeKvPayload(command) }) : encodeCommand({ at, ...ik, command });
  }
}
