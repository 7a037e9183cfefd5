// RawNode's configuration with its defaults filled in and checked (the
// RaftConfig fields are documented in ./types.ts).
import { invariant } from './errors.js';
import type { RaftConfig, TestMutation } from './types.js';

export interface Normalized {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly writeQuorum: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnly: 'safe' | 'lease';
  readonly maxInflightMsgs: number;
  readonly maxInflightBytes: number;
  readonly maxMsgBytes: number;
  readonly maxUncommittedBytes: number;
  readonly maxEntryBytes: number;
  readonly snapshotEntries: number;
  readonly snapshotBytes: number;
  readonly snapshotBytesMax: number;
  readonly snapshotJitter: number;
  readonly trailingEntries: number;
  readonly trailingBytes: number;
  readonly transferTicks: number;
  readonly mutation: TestMutation | undefined;
  readonly incarnation: string | undefined;
  readonly witness: boolean;
}

export function normalize(c: RaftConfig): Normalized {
  invariant(Number.isSafeInteger(c.id) && c.id > 0, `config id must be a positive integer, got ${c.id}`);
  invariant(c.heartbeatTicks >= 1, 'heartbeatTicks must be >= 1');
  invariant(c.electionTicks > c.heartbeatTicks, 'electionTicks must exceed heartbeatTicks');
  const checkQuorum = c.checkQuorum ?? true;
  const readOnly = c.readOnly ?? 'safe';
  invariant(readOnly === 'safe' || checkQuorum, "readOnly 'lease' requires checkQuorum");
  invariant(c.snapshotJitter === undefined || (c.snapshotJitter >= 0 && c.snapshotJitter <= 1), `snapshotJitter must be within [0, 1], got ${c.snapshotJitter}`);
  return {
    electionTicks: c.electionTicks,
    heartbeatTicks: c.heartbeatTicks,
    writeQuorum: c.writeQuorum ?? 0,
    incarnation: c.incarnation,
    preVote: c.preVote ?? true,
    checkQuorum,
    readOnly,
    maxInflightMsgs: c.maxInflightMsgs ?? 256,
    maxInflightBytes: c.maxInflightBytes ?? 16 * 1024 * 1024,
    maxMsgBytes: c.maxMsgBytes ?? 1024 * 1024,
    maxUncommittedBytes: c.maxUncommittedBytes ?? 64 * 1024 * 1024,
    maxEntryBytes: c.maxEntryBytes ?? 8 * 1024 * 1024,
    snapshotEntries: c.snapshotEntries ?? 10000,
    snapshotBytes: c.snapshotBytes ?? 64 * 1024 * 1024,
    snapshotBytesMax: Math.max(c.snapshotBytes ?? 64 * 1024 * 1024, c.snapshotBytesMax ?? 8 * (c.snapshotBytes ?? 64 * 1024 * 1024)),
    snapshotJitter: c.snapshotJitter ?? 0,
    trailingEntries: c.trailingEntries ?? 1000,
    trailingBytes: c.trailingBytes ?? 32 * 1024 * 1024,
    transferTicks: c.transferTicks ?? c.electionTicks,
    mutation: c.testMutation,
    witness: c.witness ?? false,
  };
}
