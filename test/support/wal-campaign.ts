// A seeded crash campaign for WalStorage over SimFs: random appends (some
// overwriting an uncommitted suffix in a new term), hard state changes, syncs,
// local snapshots, compactions and snapshot installs, interrupted by crashes at
// random file-system operations (also during recovery), then reopened and
// checked against what was acknowledged:
//   - every entry acknowledged by a completed sync() (or save(..., true))
//     survives, with its term and data; recovered entries are ones that were
//     appended (never garbage); what recovery returns is itself durable;
//   - recovery never fails (a crash-only history never looks like corruption);
//   - the hard state's term/vote acknowledged by a sync survive, and its
//     commit never exceeds the recovered log;
//   - a snapshot acknowledged by saveSnapshot/installSnapshot survives (or a
//     newer one), with its data; an interrupted install is completed or not
//     visible at all.
import { SeededRandom } from '../../src/raft/prng.js';
import type { Entry, HardState, SnapshotMeta } from '../../src/raft/types.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { WalStorage } from '../../src/storage/wal.js';
import type { RecoveredState } from '../../src/storage/wal.js';
import { collectSnapshot, snapshotChunksOf } from '../../src/state/snapshot.js';
import { SimFs } from './simfs.js';
import type { CrashOptions } from './simfs.js';

export interface CampaignOptions {
  readonly seed: number;
  /** Crash/reopen cycles. */
  readonly cycles: number;
  /** Wraps the simulated file system (mutation tests inject faults here). */
  readonly wrapFs?: (fs: SimFs) => StorageFs;
  readonly crash?: CrashOptions;
  /** Stop after this many milliseconds (the result says how many cycles ran). */
  readonly budgetMs?: number;
  /** Receives every file-system operation and crash (debugging a failing seed). */
  readonly trace?: (line: string) => void;
}

export interface CampaignResult {
  readonly seed: number;
  readonly cycles: number;
  readonly ops: number;
  readonly crashes: number;
  readonly midOpCrashes: number;
  readonly tornWrites: number;
  /** Completed operations, by kind. */
  readonly done: Record<string, number>;
  /** First violated property, with the cycle it was found in. */
  readonly failure?: string;
}

const DIR = '/data/node';
const MEMBERSHIP = { members: [{ id: 1, role: 'voter' as const }], removed: [] };

class Violation extends Error {}

/** A snapshot's bytes: usually a few bytes, sometimes several streamed chunks (a crash can hit between their writes). */
function snapshotBytes(meta: SnapshotMeta, rng: SeededRandom): Buffer {
  const label = Buffer.from(`snapshot ${meta.term}-${meta.index}`);
  if (!rng.chance(0.3)) return label;
  const size = 700 + rng.int(3000);
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = label[i % label.length]! ^ (i >> 8);
  return data;
}

function check(ok: boolean, what: () => string): void {
  if (!ok) throw new Violation(what());
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.index === b.index && a.term === b.term && a.type === b.type && Buffer.compare(Buffer.from(a.data), Buffer.from(b.data)) === 0;
}

export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const rng = new SeededRandom(o.seed);
  const crashRng = rng.fork();
  const sim = new SimFs();
  await sim.mkdir(DIR, { recursive: true });
  await sim.fsyncDir('/');
  await sim.fsyncDir('/data');
  await sim.fsyncDir(DIR);
  sim.trace = o.trace;
  const fs = o.wrapFs?.(sim) ?? sim;
  const walOptions = { fs, segmentBytesMax: 4096, pendingBytesMax: rng.chance(0.5) ? 64 : 1500, commitPersistEveryEntries: rng.int(4), snapshotsKept: 2 };
  const started = Date.now();

  // ---- the caller's model ----
  let base = 0; // snapshot index the log continues
  let log: Entry[] = []; // log[i] = entry base + 1 + i, as the caller has appended it
  let durableUpTo = 0; // entries <= this were acknowledged durable
  let hs: HardState = { term: 1, vote: 0, commit: 0 };
  let ackedHs: HardState = { term: 0, vote: 0, commit: 0 };
  let ackedSnap: SnapshotMeta | undefined;
  let installing: SnapshotMeta | undefined;
  const snapData = new Map<string, Buffer>(); // `${term}-${index}` -> data
  const everAppended = new Map<number, Entry[]>();
  let seq = 0;
  let midOpCrashes = 0;
  let tornWrites = 0;
  let cycle = 0;
  const done: Record<string, number> = { sync: 0, overwrite: 0, snapshot: 0, compact: 0, install: 0, restart: 0 };
  const crashOptions: CrashOptions = o.crash ?? { keepPrefix: 0.7, tear: 0.7 };

  const lastIndex = (): number => base + log.length;
  const termAt = (i: number): number | undefined => (i === base ? (ackedSnap?.index === base ? ackedSnap.term : undefined) : log[i - base - 1]?.term);
  const newEntry = (index: number, term: number): Entry => {
    const size = rng.chance(0.2) ? 300 + rng.int(900) : 1 + rng.int(120);
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (seq * 131 + i * 7 + index) & 0xff;
    seq++;
    const e: Entry = { index, term, type: rng.chance(0.1) ? 'conf' : 'normal', data };
    const list = everAppended.get(index) ?? [];
    list.push(e);
    everAppended.set(index, list);
    return e;
  };

  const verify = async (st: RecoveredState, storage: WalStorage): Promise<void> => {
    const snap = st.snapshot;
    const snapIndex = snap?.index ?? 0;
    const interruptedInstall = installing !== undefined && snap !== undefined && snap.index === installing.index && snap.term === installing.term;
    if (snap !== undefined) {
      const want = snapData.get(`${snap.term}-${snap.index}`);
      const got = await collectSnapshot(st.openSnapshot());
      check(st.snapshotBytes === got.length, () => `recovered snapshot term ${snap.term} index ${snap.index}: snapshotBytes ${st.snapshotBytes}, but ${got.length} bytes read`);
      check(want !== undefined && Buffer.compare(want, got) === 0, () => `recovered snapshot term ${snap.term} index ${snap.index} was never saved with this data`);
    }
    if (ackedSnap !== undefined) {
      check(snapIndex >= ackedSnap.index, () => `acknowledged snapshot index ${ackedSnap!.index} lost: recovered ${snap === undefined ? 'no snapshot' : `snapshot index ${snapIndex}`}`);
    }
    // Entries are contiguous after the snapshot and were all appended at some point.
    st.entries.forEach((e, k) => {
      check(e.index === snapIndex + 1 + k, () => `recovered entries not contiguous after snapshot ${snapIndex}: position ${k} holds index ${e.index}`);
      check((everAppended.get(e.index) ?? []).some((a) => sameEntry(a, e)), () => `recovered entry ${e.index} (term ${e.term}, ${e.data.length} bytes) was never appended`);
    });
    const recLast = snapIndex + st.entries.length;
    check(storage.lastIndex === recLast, () => `lastIndex ${storage.lastIndex}, but recovered entries end at ${recLast}`);
    if (interruptedInstall) {
      check(st.entries.length === 0, () => `an interrupted install of snapshot index ${snapIndex} was completed but ${st.entries.length} log entries remain after it`);
    } else {
      for (let i = Math.max(snapIndex, base) + 1; i <= durableUpTo; i++) {
        const want = log[i - base - 1]!;
        const got = st.entries[i - snapIndex - 1];
        check(got !== undefined && sameEntry(got, want), () => `acknowledged entry ${i} (term ${want.term}) lost or changed: recovered ${got === undefined ? `log ends at ${recLast}` : `term ${got.term}`}`);
      }
    }
    const h = st.hardState;
    check(h.term > ackedHs.term || (h.term === ackedHs.term && h.vote === ackedHs.vote), () => `acknowledged hard state term ${ackedHs.term} vote ${ackedHs.vote} lost: recovered term ${h.term} vote ${h.vote}`);
    check(h.commit <= recLast && h.commit >= snapIndex, () => `hard state commit ${h.commit} outside the recovered log (snapshot ${snapIndex}, last ${recLast})`);
    // Adopt the recovered state: recovery made it durable.
    base = snapIndex;
    log = [...st.entries];
    durableUpTo = recLast;
    hs = { ...h, term: h.term };
    ackedHs = h;
    ackedSnap = snap;
    installing = undefined;
  };

  const open = async (): Promise<WalStorage | undefined> => {
    // A crash may also hit recovery; reopen until it completes.
    for (let attempt = 0; ; attempt++) {
      if (attempt < 3 && rng.chance(0.2)) sim.scheduleCrash(rng.int(40), crashRng, crashOptions);
      try {
        const { storage, state } = await WalStorage.open(DIR, walOptions);
        sim.cancelCrash();
        await verify(state, storage);
        return storage;
      } catch (err) {
        if (!sim.down) {
          if (err instanceof Violation) throw err;
          throw new Violation(`recovery failed: ${(err as Error).message}`);
        }
        midOpCrashes++;
        tornWrites += sim.lastCrash?.tornWrites ?? 0;
        sim.reboot();
      }
    }
  };

  let storage: WalStorage | undefined;
  try {
    storage = await open();
    for (cycle = 0; cycle < o.cycles; cycle++) {
      if (o.budgetMs !== undefined && Date.now() - started > o.budgetMs) break;
      const steps = 1 + rng.int(12);
      const midOp = rng.chance(0.6);
      if (midOp) sim.scheduleCrash(rng.int(60), crashRng, crashOptions);
      let crashed = false;
      for (let s = 0; s < steps && !crashed; s++) {
        const st = storage!;
        try {
          const r = rng.next();
          if (r < 0.35) {
            const n = 1 + rng.int(6);
            const es: Entry[] = [];
            for (let i = 1; i <= n; i++) es.push(newEntry(lastIndex() + i, hs.term));
            log.push(...es);
            if (rng.chance(0.3)) {
              hs = { ...hs, commit: Math.max(hs.commit, Math.min(lastIndex(), hs.commit + rng.int(8))) };
              await st.save(hs, es, true);
              durableUpTo = lastIndex();
              ackedHs = hs;
              done.sync!++;
            } else await st.append(es);
          } else if (r < 0.45 && lastIndex() > Math.max(hs.commit, base)) {
            // A new leader overwrites the uncommitted suffix from j.
            const j = Math.max(hs.commit, base) + 1 + rng.int(lastIndex() - Math.max(hs.commit, base));
            hs = { term: hs.term + 1, vote: 0, commit: hs.commit };
            st.setHardState(hs);
            const n = 1 + rng.int(4);
            const es: Entry[] = [];
            for (let i = 0; i < n; i++) es.push(newEntry(j + i, hs.term));
            log.length = j - base - 1;
            durableUpTo = Math.min(durableUpTo, j - 1);
            log.push(...es);
            await st.append(es);
            done.overwrite!++;
          } else if (r < 0.55) {
            hs = rng.chance(0.3) ? { term: hs.term + 1, vote: 1 + rng.int(3), commit: hs.commit } : { ...hs, commit: Math.max(hs.commit, Math.min(lastIndex(), hs.commit + rng.int(8))) };
            st.setHardState(hs);
          } else if (r < 0.8) {
            const upTo = lastIndex();
            const h = hs;
            await st.sync();
            durableUpTo = upTo;
            ackedHs = h;
            done.sync!++;
          } else if (r < 0.88) {
            // A local snapshot of applied (committed, durable) state, then compaction.
            const top = Math.min(hs.commit, durableUpTo);
            const lo = Math.max(base, ackedSnap?.index ?? 0);
            if (top > lo) {
              const index = lo + 1 + rng.int(top - lo);
              const meta: SnapshotMeta = { index, term: termAt(index)!, membership: MEMBERSHIP };
              const data = snapshotBytes(meta, rng);
              snapData.set(`${meta.term}-${index}`, data);
              await st.saveSnapshot(meta, snapshotChunksOf(data, 700));
              ackedSnap = meta;
              done.snapshot!++;
              if (rng.chance(0.7)) {
                await st.compact(index);
                done.compact!++;
              }
            }
          } else if (r < 0.93) {
            // A snapshot from the leader, beyond the log.
            const index = lastIndex() + 1 + rng.int(5);
            const meta: SnapshotMeta = { index, term: hs.term, membership: MEMBERSHIP };
            const data = snapshotBytes(meta, rng);
            snapData.set(`${meta.term}-${index}`, data);
            installing = meta;
            await st.installSnapshot(meta, snapshotChunksOf(data, 700));
            installing = undefined;
            ackedSnap = meta;
            base = index;
            log = [];
            durableUpTo = index;
            if (hs.commit < index) hs = { ...hs, commit: index };
            done.install!++;
          } else {
            // A clean restart.
            sim.cancelCrash();
            await st.close();
            storage = await open();
            done.restart!++;
          }
        } catch (err) {
          if (err instanceof Violation) throw err;
          if (!sim.down) throw new Violation(`operation failed without a crash: ${(err as Error).stack ?? String(err)}`);
          crashed = true;
          midOpCrashes++;
          tornWrites += sim.lastCrash?.tornWrites ?? 0;
          sim.reboot();
        }
      }
      if (!crashed) {
        sim.cancelCrash();
        tornWrites += sim.crash(crashRng, crashOptions).tornWrites;
      }
      // The old instance is dead (its handles are closed by the crash).
      storage = await open();
    }
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    return { seed: o.seed, cycles: cycle, ops: sim.ops, crashes: sim.crashes, midOpCrashes, tornWrites, done, failure: `seed ${o.seed} cycle ${cycle}: ${err.message}` };
  }
  return { seed: o.seed, cycles: cycle, ops: sim.ops, crashes: sim.crashes, midOpCrashes, tornWrites, done };
}
