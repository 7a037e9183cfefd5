// Replicated SQL as the HTTP API's SqlService (src/api/ports.ts): the
// "sql" machine (src/sql), opened in the node's data dir and registered in
// its MachineRegistry by ./node-state.ts; executes proposed as format-2 entries through the
// node (only once every member applies them: cluster feature level >= 2),
// reads run on the machine's read pool, linearizable ones after the node's
// read barrier and after the apply worker has caught up with it.
import { randomBytes } from 'node:crypto';
import type { ProposeOptions, SqlExecuteRequest, SqlService } from '../api/ports.js';
import type { ApplyResult } from '../state/index.js';
import { SQL_MACHINE_ID, SQL_SEED_BYTES, encodeSqlPayload } from '../sql/command.js';
import { SqlError } from '../sql/errors.js';
import { SqlStateMachine } from '../sql/machine.js';
import { SqlRefusedError, checkExecuteStatement, checkQueryStatement } from '../sql/statements.js';

/** The feature level at which members apply "sql" entries (format-2 envelopes). */
const SQL_FEATURE_LEVEL = 2;

/** Opens the machine in `<dataDir>/sql` and registers it; `fatal` is called on a non-deterministic failure (set it to the replica's fatal path). */
/** What the service needs of a node. */
export interface SqlNode {
  featureLevel(): number;
  proposeEnvelope(machine: string, payload: Uint8Array, options?: ProposeOptions): Promise<ApplyResult>;
  readBarrier(timeoutMs?: number): Promise<void>;
  readonly machines: { readonly appliedIndex: number };
}

function refused(e: unknown): never {
  if (e instanceof SqlRefusedError) throw new SqlError('sql_refused', e.message, { statement: e.statement });
  throw e;
}

export function sqlServiceOf(node: SqlNode, sql: SqlStateMachine): SqlService {
  return {
    limits: sql.limits,
    async execute(req: SqlExecuteRequest, options: ProposeOptions = {}): Promise<ApplyResult> {
      const level = node.featureLevel();
      if (level < SQL_FEATURE_LEVEL) {
        throw new SqlError('sql_unavailable', `replicated SQL needs every member at feature level ${SQL_FEATURE_LEVEL} (the cluster is at ${level}: a member runs the previous release or has not been heard from yet); upgrade every member, then retry`);
      }
      try {
        req.statements.forEach((s, i) => checkExecuteStatement(s.sql, i));
      } catch (e) {
        refused(e);
      }
      const payload = encodeSqlPayload({ transaction: req.transaction, seed: randomBytes(SQL_SEED_BYTES), statements: req.statements });
      return node.proposeEnvelope(SQL_MACHINE_ID, payload, options);
    },
    async query(text, params) {
      try {
        checkQueryStatement(text);
      } catch (e) {
        refused(e);
      }
      return sql.query(text, params);
    },
    async readBarrier(timeoutMs) {
      await node.readBarrier(timeoutMs);
      await sql.caughtUp();
    },
    async checksum() {
      // Both asked in this tick: the checksum is of the state at this applied index.
      const appliedIndex = node.machines.appliedIndex;
      return { appliedIndex, checksum: await sql.checksum() };
    },
  };
}
