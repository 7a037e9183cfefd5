// Typed errors of the state machines. Each has a stable `code`; the API layer
// maps codes to HTTP statuses in one table (src/api/errors.ts).

export class StateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'StateError';
  }
}

/** A key fails validation (empty, NUL, lone surrogate). HTTP 400. */
export class InvalidKeyError extends StateError {
  readonly key: string;
  constructor(key: string, reason: string) {
    super('invalid_key', `invalid key ${JSON.stringify(key.slice(0, 64))}: ${reason}`);
    this.key = key;
  }
}

/** A key or value exceeds its byte limit. HTTP 413. */
export class TooLargeError extends StateError {
  readonly field: 'key' | 'value' | 'idempotencyKey';
  readonly bytes: number;
  readonly limitBytes: number;
  constructor(field: 'key' | 'value' | 'idempotencyKey', bytes: number, limitBytes: number) {
    super(`${field === 'idempotencyKey' ? 'idempotency_key' : field}_too_large`, `${field} is ${bytes} bytes (UTF-8); the limit is ${limitBytes}`);
    this.field = field;
    this.bytes = bytes;
    this.limitBytes = limitBytes;
  }
}

/** A command is malformed; `field` is the path of the offending field (e.g. `txn.success[2].key`). HTTP 400. */
export class InvalidCommandError extends StateError {
  readonly field: string;
  constructor(field: string, reason: string, options?: { cause?: unknown }) {
    super('invalid_command', `invalid command: ${field}: ${reason}`, options);
    this.field = field;
  }
}

/**
 * A committed entry uses a command format this build does not know (a newer
 * node proposed it). Applying it would diverge state, so the node must stop
 * and be upgraded: never catch this and continue.
 */
export class UnsupportedCommandVersionError extends StateError {
  readonly version: unknown;
  constructor(version: unknown) {
    super('command_version_unsupported', `command format version ${String(version)} is not supported by this build; upgrade this node`);
    this.version = version;
  }
}

/** apply() was called with an index not greater than the applied index: a caller bug. */
export class ApplyOrderError extends StateError {
  constructor(index: number, appliedIndex: number) {
    super('apply_out_of_order', `apply(${index}) after applied index ${appliedIndex}: entries must be applied once, in increasing index order`);
  }
}

/** The watch start revision is older than the retained history. HTTP 410. */
export class CompactedError extends StateError {
  /** The oldest revision a watch may start from now. */
  readonly oldestRevision: number;
  readonly requestedRevision: number;
  constructor(requestedRevision: number, oldestRevision: number) {
    super('compacted', `revision ${requestedRevision} is compacted; the oldest available revision is ${oldestRevision}`);
    this.oldestRevision = oldestRevision;
    this.requestedRevision = requestedRevision;
  }
}

/** Snapshot bytes fail a check; `offset` is the byte offset, `field` names what is wrong. */
export class SnapshotCorruptError extends StateError {
  readonly offset: number;
  readonly field: string;
  readonly reason: string;
  constructor(offset: number, field: string, reason: string, options?: { cause?: unknown }) {
    super('snapshot_corrupt', `corrupt snapshot at byte ${offset} (${field}): ${reason}`, options);
    this.offset = offset;
    this.field = field;
    this.reason = reason;
  }
}

/**
 * A snapshot holds a section for a state machine this build does not run
 * (a newer node wrote it): refused, never skipped (that machine's state would
 * be lost). Upgrade this node.
 */
export class SnapshotMachineError extends StateError {
  readonly machine: string;
  readonly offset: number;
  constructor(machine: string, offset: number) {
    super('snapshot_machine_unsupported', `snapshot holds state of machine ${JSON.stringify(machine.slice(0, 64))} (section at byte ${offset}), which this build does not run; upgrade this node`);
    this.machine = machine;
    this.offset = offset;
  }
}

/** Snapshot written by a newer format version than this build reads. */
export class SnapshotVersionError extends StateError {
  readonly version: number;
  constructor(version: number, supported: number) {
    super('snapshot_version_unsupported', `snapshot format version ${version} is not supported (this build reads versions up to ${supported}); upgrade this node`);
    this.version = version;
  }
}

/**
 * A committed format-2 entry names a state machine this build does not run
 * (a newer node proposed it). Like an unknown format version, the node must
 * stop and be upgraded, never skip it.
 */
export class UnsupportedMachineError extends StateError {
  readonly machine: string;
  constructor(machine: string) {
    super('machine_unsupported', `state machine ${JSON.stringify(machine.slice(0, 64))} is not run by this build; upgrade this node`);
    this.machine = machine;
  }
}
