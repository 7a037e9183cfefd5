// Typed errors of durable storage. Each has a stable `code`; the API layer maps
// codes to HTTP statuses in one table. Corruption errors name the file and say
// what the operator should do.

/**
 * What an operator does when a node's own data is damaged. Only names commands
 * that exist (`quorate status`); never "wipe the data dir and restart": a voter
 * that forgot entries it acknowledged could help elect a leader that lacks them.
 */
export const RESTORE_ADVICE =
  "keep this node stopped; the cluster tolerates its absence. To restore this node from a peer: stop it, move its data dir aside (keep it for analysis), " +
  "and start it with an empty data dir so that it receives the leader's snapshot (the cluster treats a node with a new data dir as a non-voting learner " +
  'until it has caught up); follow its progress with `quorate status`';

export class StorageError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'StorageError';
  }
}

/** A WAL record failed its checksum (or is malformed) somewhere a torn write cannot explain. */
export class CorruptLogError extends StorageError {
  readonly path: string;
  readonly offset: number;
  constructor(path: string, offset: number, reason: string) {
    super('corrupt_log', `corrupt write-ahead log ${path} at byte offset ${offset}: ${reason}; ${RESTORE_ADVICE}`);
    this.name = 'CorruptLogError';
    this.path = path;
    this.offset = offset;
  }
}

export class CorruptSnapshotError extends StorageError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('corrupt_snapshot', `corrupt snapshot ${path}: ${reason}; ${RESTORE_ADVICE}`);
    this.name = 'CorruptSnapshotError';
    this.path = path;
  }
}

export class CorruptHardStateError extends StorageError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('corrupt_hard_state', `corrupt raft hard state ${path}: ${reason}; ${RESTORE_ADVICE}`);
    this.name = 'CorruptHardStateError';
    this.path = path;
  }
}

/** The incarnation id file of a data dir is unreadable or malformed. */
export class CorruptIncarnationError extends StorageError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('corrupt_incarnation', `corrupt incarnation file ${path}: ${reason}; ${RESTORE_ADVICE}`);
    this.name = 'CorruptIncarnationError';
    this.path = path;
  }
}

/** A file written by a newer (or foreign) format version. */
export class UnsupportedFormatError extends StorageError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('unsupported_format', `unsupported storage format in ${path}: ${reason}; run the quorate version that wrote it, or ${RESTORE_ADVICE}`);
    this.name = 'UnsupportedFormatError';
    this.path = path;
  }
}

/** The caller broke the storage contract (a bug in the caller, not an I/O problem). */
export class InvalidAppendError extends StorageError {
  constructor(reason: string) {
    super('invalid_append', `invalid log append: ${reason}`);
    this.name = 'InvalidAppendError';
  }
}

export class InvalidHardStateError extends StorageError {
  constructor(reason: string) {
    super('invalid_hard_state', `invalid hard state: ${reason}`);
    this.name = 'InvalidHardStateError';
  }
}

export class InvalidSnapshotRequestError extends StorageError {
  constructor(reason: string) {
    super('invalid_snapshot_request', reason);
    this.name = 'InvalidSnapshotRequestError';
  }
}

export class InvalidHaStateError extends StorageError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('invalid_ha_state', `invalid ha-state ${path}: ${reason}`);
    this.name = 'InvalidHaStateError';
    this.path = path;
  }
}

/**
 * An earlier write or fsync failed. After a failed fsync the kernel may have
 * dropped dirty pages, so retrying is unsafe: the storage refuses all further
 * work and the process must restart (and recover from disk).
 */
export class StorageFailedError extends StorageError {
  constructor(cause: unknown) {
    super('storage_failed', `storage failed earlier and refuses further writes; restart the node (${String(cause instanceof Error ? cause.message : cause)})`, { cause });
    this.name = 'StorageFailedError';
  }
}

export class StorageClosedError extends StorageError {
  constructor() {
    super('storage_closed', 'storage is closed');
    this.name = 'StorageClosedError';
  }
}
