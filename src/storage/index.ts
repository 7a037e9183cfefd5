// Public surface of src/storage: the durable storage of one node.
export { WalStorage, toRaftStorageState } from './wal.js';
export type { WalOptions, RecoveredState, SnapshotChunks, StoredSnapshotSource } from './wal.js';
export type { LoadedSnapshot, SnapshotValidator } from './snapshot.js';
export { encodeSnapshot } from './snapshot.js';
export { nodeFs } from './fs.js';
export type { StorageFs, StorageFile } from './fs.js';
export { writeHaState, readHaState, HA_STATE_FILE } from './ha-state.js';
export type { HaState } from './ha-state.js';
export { crc32c } from '../lib/crc32c.js';
export {
  StorageError,
  CorruptLogError,
  CorruptSnapshotError,
  CorruptHardStateError,
  UnsupportedFormatError,
  InvalidAppendError,
  InvalidHardStateError,
  InvalidSnapshotRequestError,
  InvalidHaStateError,
  StorageFailedError,
  StorageClosedError,
  CorruptIncarnationError,
  RESTORE_ADVICE,
} from './errors.js';
