// The transactional outbox of replicated SQL: rows of the `quorate_outbox`
// table (created by the SQL machine in every database, src/sql/apply-worker.ts)
// that the application inserts in its own /v1/db/execute transaction, next to
// its business rows, so a message exists exactly when the business change
// committed. The leader's delivery loop (./outbox.ts) reads the oldest row
// through the SQL read path (after the read barrier, so a new leader sees
// every committed row and removal), delivers it with `sql-<id>` as
// Idempotency-Key (ids of POST /v1/outbox are `ob-<index>`: no collision), and
// deletes the row through the log (an SQL entry like /v1/db/execute) after a
// 2xx. The table's id is AUTOINCREMENT, so a deleted row's id is never reused
// (a receiver that deduplicates by Idempotency-Key never drops a new message).
import type { SqlService } from '../api/ports.js';
import { SQL_OUTBOX_TABLE } from '../sql/statements.js';
import type { OutboxItem, OutboxSource } from './outbox.js';

export const SQL_OUTBOX_ID_PREFIX = 'sql-';

/** The source of SQL outbox rows for OutboxDelivery; `sql` is read at each use (the node sets it at start). */
export function sqlOutboxSource(sql: () => SqlService): OutboxSource {
  return {
    name: 'sql-outbox-delivery',
    sync: () => sql().readBarrier(),
    async head(): Promise<OutboxItem | undefined> {
      const r = await sql().query(`SELECT id, body, content_type FROM ${SQL_OUTBOX_TABLE} ORDER BY id LIMIT 1`, []);
      const row = r.rows[0];
      if (row === undefined) return undefined;
      const [id, body, contentType] = row;
      return { id: `${SQL_OUTBOX_ID_PREFIX}${String(id)}`, body: bodyOf(body), contentType: typeof contentType === 'string' && contentType !== '' ? contentType : 'application/json' };
    },
    async remove(m: OutboxItem): Promise<void> {
      const rowid = m.id.slice(SQL_OUTBOX_ID_PREFIX.length);
      const r = await sql().execute({ transaction: true, statements: [{ sql: `DELETE FROM ${SQL_OUTBOX_TABLE} WHERE id = ${sql().dialect === 'postgresql' ? '$1' : '?'}`, params: [Number(rowid)] }] });
      if ('error' in r) throw new Error(`removing ${m.id} from ${SQL_OUTBOX_TABLE} failed: ${'message' in r ? r.message : r.error}`);
      if (!('sql' in r)) throw new Error('the sql machine answered with a result of another machine');
      if (r.failed !== undefined) throw new Error(`removing ${m.id} from ${SQL_OUTBOX_TABLE} failed: ${r.failed.message}`);
    },
  };
}

/** A row's body as read (JSON values of src/sql/values.ts): text as is, a blob as its bytes, anything else as text. */
function bodyOf(v: unknown): string | Uint8Array {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { base64?: unknown }).base64 === 'string') return Buffer.from((v as { base64: string }).base64, 'base64');
  return v === null ? '' : String(v);
}
