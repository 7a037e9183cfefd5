// Typed errors of the consensus core. Each has a stable `code`; the API layer
// maps codes to HTTP statuses in one table (src/api/errors.ts).
import type { NodeId } from './types.js';

export class RaftError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'RaftError';
  }
}

/** This node is not the leader; `leaderHint` is the leader it knows of (0 if none). */
export class NotLeader extends RaftError {
  readonly leaderHint: NodeId;
  constructor(leaderHint: NodeId) {
    super('not_leader', leaderHint === 0 ? 'not the leader and no leader is known' : `not the leader; node ${leaderHint} leads`);
    this.leaderHint = leaderHint;
  }
}

/** The proposal was not appended and never will be (definite failure). */
export class ProposalDropped extends RaftError {
  constructor(reason: string) {
    super('proposal_dropped', `proposal dropped: ${reason}`);
  }
}

export class TransferInProgress extends RaftError {
  readonly transferee: NodeId;
  constructor(transferee: NodeId) {
    super('transfer_in_progress', `leadership transfer to node ${transferee} in progress; proposals are refused until it ends`);
    this.transferee = transferee;
  }
}

/** Uncommitted bytes exceed maxUncommittedBytes: back off and retry. */
export class Overloaded extends RaftError {
  readonly uncommittedBytes: number;
  constructor(uncommittedBytes: number, limit: number) {
    super('overloaded', `too many uncommitted bytes (${uncommittedBytes} pending, limit ${limit}); retry later`);
    this.uncommittedBytes = uncommittedBytes;
  }
}

export class ConfChangeInProgress extends RaftError {
  constructor(reason: string) {
    super('conf_change_in_progress', `membership change refused: ${reason}`);
  }
}

export class InvalidConfChange extends RaftError {
  constructor(reason: string) {
    super('invalid_conf_change', `invalid membership change: ${reason}`);
  }
}

export class InvalidTransfer extends RaftError {
  constructor(reason: string) {
    super('invalid_transfer', `leadership transfer refused: ${reason}`);
  }
}

/** An appointment the core refuses: not in witness mode, an epoch not above the node's term, or a node outside the in-sync set. */
export class InvalidAppointment extends RaftError {
  constructor(reason: string) {
    super('invalid_appointment', `appointment refused: ${reason}`);
  }
}

export class EntryTooLarge extends RaftError {
  constructor(bytes: number, limit: number) {
    super('entry_too_large', `entry of ${bytes} bytes exceeds maxEntryBytes ${limit}`);
  }
}

/** A broken invariant: a bug. The process must stop; never catch and continue. */
export class InvariantViolation extends RaftError {
  constructor(message: string) {
    super('invariant_violation', `raft invariant violated: ${message}`);
    this.name = 'InvariantViolation';
  }
}

export function invariant(cond: boolean, message: string | (() => string)): asserts cond {
  if (!cond) throw new InvariantViolation(typeof message === 'string' ? message : message());
}
