// SQL values between JSON, the log and SQLite, and the content checksum of
// a database (equal on every node at the same applied index).
//
// SQL → JSON: null, a number (an integer beyond ±2^53 as a decimal string),
// a string, {"base64": "…"} for a blob. (JSON → SQL: src/api/routes-sql.ts.)
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';

/** A value read from SQLite, as JSON. */
export function jsonValue(v: unknown): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'number') return v;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return { base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  return String(v);
}

function tag(h: ReturnType<typeof createHash>, v: unknown): void {
  if (v === null) h.update('n;');
  else if (typeof v === 'bigint') h.update(`i${v.toString()};`);
  else if (typeof v === 'number') {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    h.update('f');
    h.update(b);
  } else if (typeof v === 'string') {
    h.update(`s${Buffer.byteLength(v)}:`);
    h.update(v);
  } else if (v instanceof Uint8Array) {
    h.update(`b${v.length}:`);
    h.update(v);
  } else h.update(`?${String(v)};`);
}

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/**
 * Hex SHA-256 of the database's content: the schema (type, name, table, SQL
 * of every object, by type and name), then every row of every table (by
 * table name, in the table's own order: rowid or primary key), values
 * tagged by their SQLite type. Independent of the file's page layout, so a
 * node that restored a snapshot and one that applied the log agree.
 */
export function contentChecksum(db: Database.Database): string {
  const h = createHash('sha256');
  const schema = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_stat%' ORDER BY type, name").raw(true).all() as unknown[][];
  const tables: string[] = [];
  for (const row of schema) {
    for (const v of row) tag(h, v);
    const [type, name, , sql] = row as [string, string, string, string | null];
    if (type === 'table' && !/^\s*create\s+virtual\b/i.test(sql ?? '')) tables.push(name);
  }
  for (const t of tables) {
    tag(h, t);
    const st = db.prepare(`SELECT * FROM ${quoteIdent(t)}`).raw(true).safeIntegers(true);
    for (const row of st.iterate() as Iterable<unknown[]>) {
      h.update('r');
      for (const v of row) tag(h, v);
    }
  }
  return h.digest('hex');
}
