// Recovery of a node's storage at open: finish what a crash interrupted (a
// zero-fill, a snapshot install from the leader), read and verify the segments
// (./segment.ts classifies a failure as a torn write to repair or corruption to
// stop on), check the log against the snapshots and the hard state, and leave
// the WalLog ready to append. See ./README.md for the recovery rules.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Entry } from '../raft/types.js';
import { SEGMENT_VERSION, parseSegmentFileName, segmentFileName } from './codec.js';
import { CorruptHardStateError, CorruptIncarnationError, CorruptLogError, CorruptSnapshotError, InvalidSnapshotRequestError } from './errors.js';
import { atomicWriteFile, mkdirDurable } from './fsutil.js';
import type { StorageFs } from './fs.js';
import { EMPTY_HARD_STATE, readStoredHardState } from './hardstate.js';
import { readBeforeZeroTail, readSegment } from './segment.js';
import type { LoadedSnapshot, SnapshotStore, SnapshotValidator } from './snapshot.js';
import type { Segment, WalLog } from './wal-log.js';
import type { RecoveredState, StoredSnapshotSource } from './wal-types.js';
import { ZERO_FILL_FILE, finishZeroFill, zeroFillSegment } from './zero-fill.js';

const INCARNATION_FILE = 'incarnation';
const INCARNATION = /^[0-9a-f]{32}$/;

/** A loaded snapshot as a source readable from its file. */
export function snapshotSource(snaps: SnapshotStore, loaded: LoadedSnapshot): StoredSnapshotSource {
  return { meta: loaded.meta, path: loaded.path, bytes: loaded.dataBytes, read: () => snaps.read(loaded) };
}

/** Recovers `w`'s state from its data dir (see the file comment); returns what the node starts from. */
export async function recoverWal(w: WalLog, snaps: SnapshotStore, validateSnapshot: SnapshotValidator | undefined): Promise<RecoveredState> {
  await mkdirDurable(w.walDir, w.fs);
  await mkdirDurable(snaps.dir, w.fs);
  const warnings: string[] = [];
  const incPath = join(w.dir, INCARNATION_FILE);
  await w.unlinkIfExists(`${w.hsPath}.tmp`);
  await w.unlinkIfExists(`${incPath}.tmp`);
  await snaps.removeTemps();
  await w.unlinkIfExists(`${join(w.dir, ZERO_FILL_FILE)}.tmp`);
  await finishZeroFill(w.fs, w.dir, w.walDir, warnings);
  const stored = await readStoredHardState(w.hsPath, w.fs);
  const legacyHs = stored !== undefined && stored.version === 1;
  let hs = stored?.hs ?? EMPTY_HARD_STATE;
  let recordedTail = stored?.walTail ?? 0;

  const listSegments = async (): Promise<{ path: string; firstIndex: number }[]> => {
    const out: { path: string; firstIndex: number }[] = [];
    for (const name of await w.fs.readdir(w.walDir)) {
      const firstIndex = parseSegmentFileName(name);
      if (firstIndex !== undefined) out.push({ path: join(w.walDir, name), firstIndex });
    }
    return out.sort((a, b) => a.firstIndex - b.firstIndex);
  };
  let files = await listSegments();
  const markers = await snaps.listInstallMarkers();
  const snapFiles = await snaps.list();
  const fresh = stored === undefined && files.length === 0 && markers.length === 0 && snapFiles.length === 0;
  if (stored === undefined && (markers.length > 0 || snapFiles.length > 0)) {
    const f = markers[0] ?? snapFiles[0]!;
    throw new CorruptHardStateError(w.hsPath, `the file is missing, but snapshot ${f.path} exists: starting without it would forget this node's term and vote`);
  }

  // A snapshot received from the leader whose install a crash interrupted:
  // it is verified and committed, so finish the install (drop the log).
  const marker = markers[0];
  if (marker !== undefined) {
    let loaded: LoadedSnapshot;
    try {
      loaded = await snaps.loadValid(marker.path, validateSnapshot);
    } catch (err) {
      if (!(err instanceof CorruptSnapshotError)) throw err;
      throw new CorruptSnapshotError(marker.path, `an interrupted snapshot install from the leader cannot be completed: ${reasonOf(err)}`);
    }
    w.hs = hs;
    w.durableIndex = Math.min(hs.commit, loaded.meta.index);
    w.persistedHs = hs;
    w.segments = files.map((f) => ({ ...f, offsets: [], terms: [], parsed: false, version: 0, end: 0 }));
    await w.dropAllSegments();
    const path = await snaps.promote(marker.path);
    for (const m of markers.slice(1)) await w.unlinkIfExists(m.path);
    warnings.push(
      `completed the install of snapshot ${path} (term ${loaded.meta.term}, index ${loaded.meta.index}) received from the leader, which a crash had interrupted: dropped the log it replaces${files.length > 0 ? ` (${files.length} segment file(s) from ${files[0]!.path})` : ''}`,
    );
    files = [];
    recordedTail = 0;
  }

  // The newest segment is always read, and reading it means scanning its
  // preallocated zero tail (up to 64 MiB): start that I/O now, so that it
  // runs on the thread pool while the snapshot is loaded and checked.
  const newest = files.at(-1);
  const prefetched = newest === undefined ? undefined : readBeforeZeroTail(w.fs, newest.path);
  prefetched?.catch(() => undefined); // awaited (and its error thrown) where the segment is read
  const { loaded, corrupt } = await snaps.findNewest(validateSnapshot);
  const snap = loaded?.meta;
  const snapIndex = snap?.index ?? 0;
  w.snapshot = snap;

  // A newest segment older than the one the hard state records: segments were lost.
  const newestOnDisk = files.at(-1);
  if (recordedTail > 0 && (newestOnDisk === undefined || newestOnDisk.firstIndex < recordedTail)) {
    throw new CorruptLogError(
      join(w.walDir, segmentFileName(recordedTail)),
      0,
      `segment file is missing: the hard state ${w.hsPath} records it as the newest segment (entries from index ${recordedTail} on), but the newest segment on disk is ${newestOnDisk?.path ?? 'none'}`,
    );
  }

  const segs: Segment[] = [];
  let entries: Entry[] = [];
  let prevTerm = 0;
  for (let k = 0; k < files.length; k++) {
    const { path, firstIndex } = files[k]!;
    const next = files[k + 1];
    if (next !== undefined && next.firstIndex <= snapIndex) {
      // Wholly below the snapshot: never returned, so not read (compact() removes it).
      segs.push({ firstIndex, path, offsets: [], terms: [], parsed: false, version: 0, end: 0 });
      prevTerm = 0;
      continue;
    }
    const { parsed, fileBytes } = await readSegment(w.fs, { path, firstIndex, prevTerm, keepFrom: snapIndex + 1, isLast: next === undefined }, next === undefined ? prefetched : undefined);
    if (parsed.headerTorn !== undefined) {
      if (firstIndex <= recordedTail) {
        throw new CorruptLogError(path, 0, `${parsed.headerTorn}, but the hard state ${w.hsPath} records this segment as durable`);
      }
      await w.unlinkIfExists(path);
      await w.fs.fsyncDir(w.walDir);
      warnings.push(`${parsed.headerTorn} in ${path}: removed the empty last segment (its creation was interrupted by a crash)`);
      break;
    }
    const prev = segs.at(-1);
    if (prev !== undefined) {
      const prevLast = prev.parsed ? prev.firstIndex + prev.offsets.length - 1 : firstIndex - 1;
      if (firstIndex !== prevLast + 1) {
        throw new CorruptLogError(path, 0, `segment starts at index ${firstIndex} but the previous segment ends at index ${prevLast}: a segment is missing or damaged`);
      }
    }
    if (parsed.truncate !== undefined) {
      const fh = await w.fs.open(path, 'r+');
      try {
        await fh.truncate(parsed.truncate.offset);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      warnings.push(
        `torn final record in ${path} (version-1 segment) at byte offset ${parsed.truncate.offset} (${parsed.truncate.reason}): truncated ${fileBytes - parsed.truncate.offset} bytes (a write interrupted by a crash)`,
      );
    }
    if (parsed.zeroFill !== undefined) {
      const { from, to, reason } = parsed.zeroFill;
      const fh = await w.fs.open(path, 'r+');
      try {
        await zeroFillSegment(w.fs, w.dir, fh, firstIndex, from, to);
      } finally {
        await fh.close();
      }
      warnings.push(`torn final record in ${path} at byte offset ${from} (${reason}): zeroed ${to - from} bytes of a write interrupted by a crash before its fdatasync`);
    }
    segs.push({ firstIndex, path, offsets: parsed.offsets, terms: parsed.terms, parsed: true, version: parsed.version, end: parsed.end });
    for (const e of parsed.entries) entries.push(e);
    prevTerm = parsed.terms.at(-1) ?? prevTerm;
  }
  w.segments = segs;

  const last = segs.at(-1);
  w.lastIndex = last === undefined ? snapIndex : last.firstIndex + last.offsets.length - 1;
  const first = segs[0];
  if (stored === undefined && first !== undefined && w.lastIndex >= first.firstIndex) {
    throw new CorruptHardStateError(
      w.hsPath,
      `the file is missing, but the log in ${w.walDir} holds indexes ${first.firstIndex}..${w.lastIndex}: starting without it would forget this node's term, vote and commit index`,
    );
  }
  const snapPath = loaded?.path ?? '';
  if (first !== undefined) {
    if (snap !== undefined) {
      const termAtSnap = w.termAtStored(snapIndex);
      if (w.lastIndex < snapIndex || (termAtSnap !== undefined && termAtSnap !== snap.term)) {
        const why = w.lastIndex < snapIndex ? `ends at index ${w.lastIndex}` : `holds term ${termAtSnap} at index ${snapIndex}`;
        if (!legacyHs) {
          throw new CorruptLogError(
            last!.path,
            last!.end,
            `the log (indexes ${first.firstIndex}..${w.lastIndex}) ${why}, so it does not contain snapshot ${snapPath} (term ${snap.term}, index ${snapIndex}), and no snapshot install was in progress: log entries are missing`,
          );
        }
        // Version-1 hard state (previous release): a snapshot installed from
        // the leader and a crash before the log reset looked exactly like this.
        warnings.push(
          `log (indexes ${first.firstIndex}..${w.lastIndex}) does not continue snapshot term ${snap.term} index ${snapIndex}: discarded it (a snapshot was installed and the log not yet reset)`,
        );
        w.hs = hs;
        w.persistedHs = hs;
        w.durableIndex = Math.min(hs.commit, snapIndex);
        await w.dropAllSegments();
        entries = [];
        w.lastIndex = snapIndex;
      } else if (first.firstIndex > snapIndex + 1) {
        const newest = corrupt[0];
        if (newest !== undefined) {
          throw new CorruptSnapshotError(
            newest.error.path,
            `${reasonOf(newest.error)}, and the older snapshot (index ${snapIndex}) does not reach the log, which starts at index ${first.firstIndex}`,
          );
        }
        throw new CorruptLogError(first.path, 0, `log starts at index ${first.firstIndex} but the newest snapshot ends at index ${snapIndex}: the entries in between are missing`);
      }
    } else if (first.firstIndex !== 1) {
      const newest = corrupt[0];
      if (newest !== undefined) {
        throw new CorruptSnapshotError(newest.error.path, `${reasonOf(newest.error)}, and there is no older valid snapshot; the log starts at index ${first.firstIndex}, so it does not reach back to the start`);
      }
      throw new CorruptLogError(first.path, 0, `log starts at index ${first.firstIndex} and there is no snapshot covering the entries before it`);
    }
  }
  const recoveredEnd = Math.max(w.lastIndex, snapIndex);
  const newestCorrupt = corrupt[0];
  if (newestCorrupt !== undefined && recoveredEnd < newestCorrupt.index) {
    throw new CorruptSnapshotError(
      newestCorrupt.error.path,
      `${reasonOf(newestCorrupt.error)}, and neither an older snapshot nor the log reaches its index ${newestCorrupt.index} (recovered state ends at index ${recoveredEnd})`,
    );
  }
  for (const c of corrupt) {
    const moved = await snaps.quarantine(c.error.path);
    warnings.push(`${c.error.message}; moved it to ${moved} and recovered from ${loaded !== undefined ? `the older snapshot ${loaded.path}` : 'the log'}`);
  }

  // The commit index is never persisted beyond the durable log (version 2),
  // so a commit beyond the recovered log means committed entries were lost.
  if (hs.commit > recoveredEnd) {
    if (legacyHs) {
      warnings.push(
        `hard state ${w.hsPath} (version 1, written by the previous release) records commit index ${hs.commit} beyond the recovered log, which ends at index ${recoveredEnd}: lowered it (that release could write commit before the log's fdatasync)`,
      );
    } else {
      throw new CorruptLogError(
        last?.path ?? w.walDir,
        last?.end ?? 0,
        `the log ends at index ${recoveredEnd}, but the hard state ${w.hsPath} records commit index ${hs.commit}: committed entries ${recoveredEnd + 1}..${hs.commit} are missing (commit is never written beyond the durable log, so this is damage, not a torn write)`,
      );
    }
  }
  const lastTerm = w.termAt(w.lastIndex) ?? 0;
  if (lastTerm > hs.term) {
    warnings.push(`hard state term ${hs.term} is below the log's last term ${lastTerm}: raised the term (no vote)`);
    hs = { term: lastTerm, vote: 0, commit: hs.commit };
  }
  const commit = Math.min(Math.max(hs.commit, snapIndex), recoveredEnd);
  if (commit !== hs.commit) hs = { ...hs, commit };

  // A version-1 last segment is never appended to: the next append starts a
  // version-2 segment. One left without records holds nothing: removed.
  const lastSeg = w.segments.at(-1);
  if (lastSeg !== undefined && lastSeg.parsed && lastSeg.version !== SEGMENT_VERSION && lastSeg.offsets.length === 0) {
    w.segments.pop();
    await w.unlinkIfExists(lastSeg.path);
    await w.fs.fsyncDir(w.walDir);
  }
  const active = w.segments.at(-1);
  if (active !== undefined && active.parsed) {
    const fh = await w.fs.open(active.path, 'r+');
    // Records recovered from the page cache after a process crash become durable now.
    await fh.datasync();
    if (active.version === SEGMENT_VERSION) {
      w.fh = fh;
      w.written = active.end;
      w.fileSize = (await fh.stat()).size;
    } else await fh.close();
  }
  w.durableIndex = recoveredEnd;
  w.hs = hs;
  w.walTail = w.segments.at(-1)?.firstIndex ?? 0;
  let incarnation: string;
  try {
    incarnation = await loadIncarnation(w.fs, incPath, fresh, warnings);
    const p = stored?.hs;
    if (stored === undefined || stored.version !== 2 || stored.walTail !== w.walTail || p?.term !== hs.term || p.vote !== hs.vote || p.commit > hs.commit) {
      await w.writeHs();
    } else {
      w.persistedHs = stored.hs;
    }
  } catch (err) {
    await w.fh?.close();
    w.fh = undefined;
    throw err;
  }
  const source = loaded === undefined ? undefined : snapshotSource(snaps, loaded);
  return {
    hardState: hs, snapshot: snap, snapshotBytes: source?.bytes ?? 0, entries, warnings, incarnation,
    openSnapshot: () => {
      if (source === undefined) throw new InvalidSnapshotRequestError('openSnapshot(): this data dir holds no snapshot');
      return source.read();
    },
  };
}


async function loadIncarnation(fs: StorageFs, path: string, fresh: boolean, warnings: string[]): Promise<string> {
  let text: string | undefined;
  try {
    text = (await fs.readFile(path)).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    const id = text.trim();
    if (!INCARNATION.test(id)) throw new CorruptIncarnationError(path, 'expected 32 lowercase hex digits');
    return id;
  }
  const id = randomBytes(16).toString('hex');
  await atomicWriteFile(path, [Buffer.from(`${id}\n`)], 0o600, fs);
  if (!fresh) warnings.push(`${path} was missing (a data dir written by a release without incarnation ids): created incarnation ${id}; the data in this dir is kept`);
  return id;
}


/** The reason part of a storage error message (between the file and the advice). */
function reasonOf(err: CorruptSnapshotError): string {
  const m = err.message;
  const start = m.indexOf(': ') + 2;
  const end = m.indexOf('; keep this node stopped');
  return m.slice(start, end < 0 ? undefined : end);
}
