// The replicated state a node runs: every state machine registered in the
// MachineRegistry. One factory, used by the node at start and by backups
// (`quorate backup verify` restores an archive into a scratch copy of it), so
// a machine registered here is in every backup, verified and restored
// without further code. A machine whose state lives in files keeps them
// under `dataDir` (the node's data dir, or verify's scratch dir).
import { createKvState, type KvState } from '../state/index.js';

export interface NodeStateOptions {
  /** Where machines whose state lives in files keep it. */
  readonly dataDir: string;
  /** The newest entry format applied (QUORATE_TEST_FEATURE_LEVEL=1 runs as the previous release). */
  readonly maxFormatVersion?: number;
}

export function createNodeState(o: NodeStateOptions): KvState {
  return createKvState(o.maxFormatVersion !== undefined ? { maxFormatVersion: o.maxFormatVersion } : {});
}
