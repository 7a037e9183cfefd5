// The replicated state a node runs: every state machine registered in the
// MachineRegistry. One factory, used by the node at start and by backups
// (`quorate backup verify` restores an archive into a scratch copy of it), so
// a machine registered here is in every backup, verified and restored
// without further code. A machine whose state lives in files keeps them
// under `dataDir` (the node's data dir, or verify's scratch dir): the SQL
// machine's database is `<dataDir>/sql/`, applied on its own worker thread.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FilesStateMachine } from '../files/machine.js';
import { ClusterRestoreMachine } from './cluster-restore.js';
import { SqlStateMachine } from '../sql/machine.js';
import { createKvState, type KvState } from '../state/index.js';

export interface NodeStateOptions {
  /** Where machines whose state lives in files keep it. */
  readonly dataDir: string;
  /** The newest entry format applied (QUORATE_TEST_FEATURE_LEVEL=1 runs as the previous release). */
  readonly maxFormatVersion?: number;
  readonly logger: Logger;
  /** A non-deterministic failure of a machine's own storage (SQLite I/O error, disk full): the node must stop. */
  readonly onFatal: (e: Error) => void;
}

export interface NodeState extends KvState {
  /** The "sql" machine (src/sql): its worker threads and processes stop with close(). */
  readonly sql: SqlStateMachine;
  /** The "files" machine (src/files): its files live under `<dataDir>/files/`. */
  readonly files: FilesStateMachine;
  /** The "restore" machine: a backup restored into the running cluster through the log (./cluster-restore.ts). */
  readonly restore: ClusterRestoreMachine;
}

export async function createNodeState(o: NodeStateOptions): Promise<NodeState> {
  const state = createKvState({
    ...(o.maxFormatVersion !== undefined ? { maxFormatVersion: o.maxFormatVersion } : {}),
    yieldToLoop: () => new Promise<void>((resolve) => setImmediate(resolve)),
  });
  const sql = await SqlStateMachine.open({ dir: join(o.dataDir, 'sql'), logger: o.logger.child({ component: 'sql' }), onFatal: o.onFatal });
  state.registry.register(sql);
  const files = await FilesStateMachine.open({ dir: join(o.dataDir, 'files'), logger: o.logger.child({ component: 'files' }) });
  state.registry.register(files);
  const restore = new ClusterRestoreMachine({ registry: state.registry, files, logger: o.logger.child({ component: 'restore' }) });
  state.registry.register(restore);
  return { ...state, sql, files, restore };
}
