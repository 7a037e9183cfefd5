// Public surface of src/state: state machines (the replicated KV), their registry and entry envelopes.
export { KvStateMachine } from './kv.js';
export type { KeyRecord, KvMachineReader, KvOptions, KvReader, RangeResult } from './kv.js';
export { createKvState, kvReaderOf } from './kv-state.js';
export {
  DEFAULT_HISTORY_MAX,
  HISTORY_MACHINE_ID,
  HISTORY_MAX_LIMIT,
  HistoryStateMachine,
  LEADER_REASONS,
  MEMBERSHIP_OPS,
  decodeHistoryPayload,
  encodeHistoryPayload,
} from './history.js';
export type { HistoryCommand, HistoryRecord, LeaderHistoryCommand, LeaderReason, MaintenanceBy, MaintenanceHistoryCommand, MaintenanceOp, MembershipHistoryCommand, MembershipOp } from './history.js';
export type { KvState, KvStateOptions } from './kv-state.js';
export {
  COMMAND_FORMAT_VERSION,
  COMPARE_OPS,
  COMPARE_TARGETS,
  commandFingerprint,
  decodeCommand,
  decodeKvPayload,
  encodeCommand,
  encodeKvPayload,
  validateCommand,
  validateEnvelope,
} from './commands.js';
export { AppStateMachine, dlqOf } from './app-machine.js';
export type { LockView, OutboxMessage, QueueStats } from './app-machine.js';
export { APP_MACHINE_ID, APP_NAME_RE, DEFAULT_MAX_DELIVERIES, MAX_CLAIM, MAX_APP_TTL_MS, MAX_APP_BODY_BYTES, encodeAppPayload, validateAppCommand } from './app-commands.js';
export type { AppCommand } from './app-commands.js';
export { ENVELOPE_FORMAT_VERSION, decodeEntry, encodeEnvelope, peekMachineId } from './envelope.js';
export type { DecodedEntry, Envelope } from './envelope.js';
export { encodeKvEntryFast } from './fast-entry.js';
export { KV_MACHINE_ID, MachineRegistry } from './machines.js';
export { FAILOVER_MODES, SETTINGS_MACHINE_ID, SettingsMachine, applySetting, decodeSettingsPayload, encodeSettingsPayload, settingsCommandHasHold } from './settings.js';
export type { FailoverMode, SettingsCommand, SettingsView, SettingsState, Hold, HoldOptions } from './settings.js';
export { RUN_KINDS, SCHEDULER_MACHINE_ID, SCHEDULER_MAX_NAME, SchedulerMachine, decodeSchedulerPayload, encodeSchedulerPayload } from './scheduler-machine.js';
export type { JobRecord, JobRun, RunKind, SchedulerCommand, SkipReason } from './scheduler-machine.js';
export { TOKENS_MACHINE_ID, TOKENS_MAX, TOKEN_NAME_RE, TOKEN_ROLES, TokensMachine, decodeTokensPayload, encodeTokensPayload } from './tokens.js';
export type { StoredToken, TokenRole, TokensCommand } from './tokens.js';
export { AUDIT_FIELD_MAX, AUDIT_MACHINE_ID, AUDIT_MAX_LIMIT, AuditMachine, DEFAULT_AUDIT_MAX, decodeAuditPayload, encodeAuditPayload } from './audit.js';
export type { AuditCommand, AuditEntry, AuditRecord } from './audit.js';
export { DEFAULT_DRILLS_MAX, DRILLS_MACHINE_ID, DRILLS_MAX_LIMIT, DRILL_REPORT_MAX, DrillsMachine, decodeDrillsPayload, encodeDrillsPayload } from './drills.js';
export type { DrillRecord, DrillsCommand } from './drills.js';
export type { ApplyContext, LegacyKvMachine, MachineRegistryOptions, RegistryState, RestoreCommit, SnapshotWriteFormat, StateMachine } from './machines.js';
export type {
  Command,
  CommandEnvelope,
  Compare,
  CompareOp,
  CompareTarget,
  DeleteCommand,
  ExpireCommand,
  ExpireKey,
  NoopCommand,
  PutCommand,
  TxnCommand,
  TxnOp,
} from './commands.js';
export type {
  ApplyResult,
  DataResult,
  DeleteResult,
  ExpireResult,
  IdempotencyKeyReusedResult,
  InvalidCommandResult,
  RevisionMismatch,
  SqlExecResult,
  SqlFailure,
  SqlStatementResult,
  TxnOpResponse,
  TxnResult,
  WriteResult,
} from './results.js';
export type { Unsubscribe, WatchEvent, WatchListener, WatchOptions } from './watch.js';
export {
  ApplyOrderError,
  CompactedError,
  InvalidCommandError,
  InvalidKeyError,
  SnapshotCorruptError,
  SnapshotMachineError,
  SnapshotVersionError,
  StateError,
  TooLargeError,
  UnsupportedCommandVersionError,
  UnsupportedMachineError,
} from './errors.js';
export {
  DEFAULT_SESSION_MAX,
  DEFAULT_SESSION_TTL_MS,
  DEFAULT_WATCH_HISTORY_BYTES,
  DEFAULT_WATCH_HISTORY_EVENTS,
  MAX_EXPIRE_KEYS,
  MAX_IDEMPOTENCY_KEY_BYTES,
  MAX_KEY_BYTES,
  MAX_TTL_MS,
  MAX_TXN_COMPARES,
  MAX_TXN_OPS,
  MAX_VALUE_BYTES,
  utf8Bytes,
  validateKey,
  validateValue,
} from './limits.js';
export { COMPOSITE_SNAPSHOT_MAGIC, COMPOSITE_SNAPSHOT_VERSION, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC } from './snapshot.js';
export { CA_EPOCH_FEATURE_LEVEL, SECRETS_MACHINE_ID, SecretsMachine, decodeSecretsCommand, encodeCaEpochPayload, encodeSecretsPayload, latestSecret, openRotation, sealRotation, secretFingerprint } from './secrets.js';
export type { CaEpochCommand, CaEpochState, SecretsCommand } from './secrets.js';
export type { SecretRotation } from './secrets.js';
