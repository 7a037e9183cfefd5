// Compaction of the PostgreSQL log (./pg-log.ts): snapshots of the state
// machines in PostgreSQL, so that `quorate_log` does not grow for ever and a
// starting node does not replay it from entry 1.
//
// - quorate_snapshot(idx, token, bytes, chunks, sha256, taken_at): one row per
//   snapshot, `idx` the last log index it covers; the bytes are the
//   MachineRegistry's own snapshot stream (the composite format a Raft node
//   writes to disk and sends to followers: src/state/registry-snapshot.ts),
//   stored as its chunks in quorate_snapshot_chunk(idx, seq, data).
// - write(): ONE transaction: the chunks, then the fence row read `FOR SHARE`
//   and compared with the writer's token (a deposed leader cannot compact),
//   the snapshot row, older snapshots deleted, log rows up to `compactTo`
//   deleted, COMMIT. A crash anywhere before COMMIT leaves the previous
//   snapshot and the whole log as they were. The fence is read last so that a
//   takeover never waits on a long snapshot, only on the final statements.
// - open(): the newest snapshot, read in a REPEATABLE READ READ ONLY
//   transaction: a newer snapshot committed meanwhile (which deletes this one)
//   does not change what is read.
// - The row at the snapshot's own index is never deleted (compactTo < idx):
//   max(idx) of the log stays the true last index for every reader.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { NodeError } from '../node/errors.js';

/** Migration 3 of ./pg-log.ts MIGRATIONS. */
export const SNAPSHOT_MIGRATION = `
  CREATE TABLE IF NOT EXISTS quorate_snapshot (
    idx bigint PRIMARY KEY,
    token bigint NOT NULL,
    bytes bigint NOT NULL,
    chunks int NOT NULL,
    sha256 bytea NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS quorate_snapshot_chunk (
    idx bigint NOT NULL REFERENCES quorate_snapshot (idx) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq int NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (idx, seq)
  );`;

export interface SnapshotInfo {
  readonly idx: number;
  readonly token: number;
  readonly bytes: number;
  readonly chunks: number;
  readonly sha256: string;
  readonly takenAt: string;
}

/** How long a snapshot transaction may sit between two chunks (the machines' stream is produced locally). */
/** The payload of the NOTIFY a snapshot's transaction sends: `snapshot:<idx>` (an append's payload is its last index). */
export const SNAPSHOT_NOTIFY_PREFIX = 'snapshot:';
const SNAPSHOT_IDLE_MS = 60_000;

function fencedError(fence: number, token: number): NodeError {
  return new NodeError('no_leader', `this node's snapshot was refused by the fencing row in PostgreSQL: it holds fencing token ${fence}, this node's lease had token ${token} (a newer leader took over); nothing was written or deleted`);
}

/** The newest snapshot's row, or undefined when none was taken. */
export async function latestSnapshot(q: pg.Pool | pg.PoolClient): Promise<SnapshotInfo | undefined> {
  const r = await q.query<{ idx: string; token: string; bytes: string; chunks: number; sha256: Buffer; taken_at: Date }>(
    'SELECT idx, token, bytes, chunks, sha256, taken_at FROM quorate_snapshot ORDER BY idx DESC LIMIT 1');
  const row = r.rows[0];
  if (row === undefined) return undefined;
  return { idx: Number(row.idx), token: Number(row.token), bytes: Number(row.bytes), chunks: row.chunks, sha256: row.sha256.toString('hex'), takenAt: row.taken_at.toISOString() };
}

/**
 * Write the snapshot `chunks` (the state as of log index `idx`) fenced by
 * `token`, and delete the log up to `compactTo` (< idx), in one transaction.
 */
export async function writeSnapshot(c: pg.PoolClient, o: { token: number; idx: number; compactTo: number; chunks: AsyncIterable<Uint8Array>; lockTimeoutMs: number; notifyChannel: string }): Promise<SnapshotInfo & { deleted: number }> {
  if (o.compactTo >= o.idx) throw new Error(`compactTo (${o.compactTo}) must be below the snapshot's index (${o.idx}): the row at the snapshot's index is kept`);
  await c.query('BEGIN');
  try {
    await c.query(`SET LOCAL idle_in_transaction_session_timeout = ${SNAPSHOT_IDLE_MS}`);
    const h = createHash('sha256');
    let bytes = 0;
    let seq = 0;
    for await (const chunk of o.chunks) {
      h.update(chunk);
      bytes += chunk.byteLength;
      await c.query('INSERT INTO quorate_snapshot_chunk (idx, seq, data) VALUES ($1, $2, $3)', [o.idx, seq++, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)]);
    }
    await c.query(`SET LOCAL lock_timeout = ${Math.floor(o.lockTimeoutMs)}`);
    const f = await c.query<{ token: string }>('SELECT token FROM quorate_fence WHERE id = 1 FOR SHARE');
    const fence = Number(f.rows[0]?.token ?? -1);
    if (fence !== o.token) throw fencedError(fence, o.token);
    const sha = h.digest();
    const ins = await c.query<{ taken_at: Date }>('INSERT INTO quorate_snapshot (idx, token, bytes, chunks, sha256) VALUES ($1, $2, $3, $4, $5) RETURNING taken_at', [o.idx, o.token, bytes, seq, sha]);
    await c.query('DELETE FROM quorate_snapshot WHERE idx < $1', [o.idx]);
    const del = await c.query('DELETE FROM quorate_log WHERE idx <= $1', [o.compactTo]);
    // Delivered at COMMIT: every node's listener reads the new row at once for its status.
    await c.query('SELECT pg_notify($1, $2)', [o.notifyChannel, `${SNAPSHOT_NOTIFY_PREFIX}${o.idx}`]);
    await c.query('COMMIT');
    return { idx: o.idx, token: o.token, bytes, chunks: seq, sha256: sha.toString('hex'), takenAt: ins.rows[0]!.taken_at.toISOString(), deleted: del.rowCount ?? 0 };
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/**
 * The newest snapshot as a stream of its chunks, read in one REPEATABLE READ
 * transaction on `c` (released by the caller after the stream ended or threw).
 * The stream checks the chunk count, size and SHA-256 recorded in its row.
 */
export async function openSnapshot(c: pg.PoolClient): Promise<{ info: SnapshotInfo; chunks: AsyncIterable<Uint8Array>; done: () => Promise<void> } | undefined> {
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // The registry restores chunk by chunk: time between two reads is local work, not a stuck client.
  await c.query('SET LOCAL idle_in_transaction_session_timeout = 0');
  const info = await latestSnapshot(c);
  if (info === undefined) {
    await c.query('COMMIT');
    return undefined;
  }
  const where = `snapshot ${info.idx} in PostgreSQL (quorate_snapshot_chunk)`;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    const h = createHash('sha256');
    let bytes = 0;
    const per = 8;
    for (let seq = 0; seq < info!.chunks; seq += per) {
      const r = await c.query<{ seq: number; data: Buffer }>('SELECT seq, data FROM quorate_snapshot_chunk WHERE idx = $1 AND seq >= $2 AND seq < $3 ORDER BY seq', [info!.idx, seq, seq + per]);
      const want = Math.min(per, info!.chunks - seq);
      if (r.rows.length !== want) throw new Error(`${where}: chunks ${seq}..${seq + want - 1} expected, ${r.rows.length} found`);
      for (const [i, row] of r.rows.entries()) {
        if (row.seq !== seq + i) throw new Error(`${where}: chunk ${seq + i} expected, ${row.seq} found`);
        h.update(row.data);
        bytes += row.data.byteLength;
        yield new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength);
      }
    }
    if (bytes !== info!.bytes) throw new Error(`${where}: ${bytes} bytes read, ${info!.bytes} recorded`);
    const sha = h.digest('hex');
    if (sha !== info!.sha256) throw new Error(`${where}: SHA-256 ${sha} does not match the recorded ${info!.sha256}`);
  }
  return { info, chunks: chunks(), done: async () => { await c.query('COMMIT').catch(() => undefined); } };
}
