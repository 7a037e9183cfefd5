// Whole snapshots of a MachineRegistry (./machines.ts), kept apart for size:
// writing one (the composite streaming format, or the previous release's
// legacy QKVS 2 while the cluster feature level is below 2) and reading one
// back (restore, or validate without keeping anything). The layouts are in
// ./snapshot.ts; the registry decides which format to write.
import { packCanonical, unpackCanonical } from './commands.js';
import { SnapshotCorruptError, SnapshotMachineError, SnapshotVersionError } from './errors.js';
import { KV_MACHINE_ID, type LegacyKvMachine, type RegistryState, type RestoreCommit, type StateMachine } from './machines.js';
import { resultFromTuple } from './results.js';
import type { SessionRecord } from './sessions.js';
import {
  COMPOSITE_MAGIC_BYTES, COMPOSITE_SNAPSHOT_VERSION, ChunkBuilder, ChunkReader, EMPTY_SNAPSHOT, RecordReader, SECTION_FRAME_BYTES,
  SNAPSHOT_CHUNK_BYTES, SNAPSHOT_LEGACY_FORMAT_VERSION, SNAPSHOT_MAGIC_BYTES, SNAPSHOT_STREAM_HEADER_BYTES, frameSnapshot, nat,
  snapshotChunksOf, unframeSnapshot,
} from './snapshot.js';
import type { Bad } from './snapshot.js';

/** What the snapshot code reads from (and loads into) its registry. */
export interface RegistrySnapshotHost {
  readonly machines: ReadonlyMap<string, StateMachine>;
  /** Registered machines in id order (the order of sections). */
  ordered(): StateMachine[];
  sessionTuples(): unknown[];
  appliedIndex(): number;
  clockMs(): number;
  /** The newest entry format the registry applies (1: it reads only legacy snapshots, as the previous release did). */
  readonly maxFormat: number;
  load(s: RegistryState): void;
}

export class RegistrySnapshots {
  readonly #h: RegistrySnapshotHost;

  constructor(h: RegistrySnapshotHost) {
    this.#h = h;
  }

  /** `local`: machines with snapshotLocal() write that (a snapshot for this node's storage only). */
  compositeSnapshot(local = false): AsyncIterable<Uint8Array> {
    // A machine in its empty state (isEmpty) gets no section: it restores to empty.
    const machines = this.#h.ordered().filter((m) => !(m.isEmpty?.() ?? false));
    const sessions = this.#h.sessionTuples();
    const head = packCanonical([this.#h.appliedIndex(), this.#h.clockMs(), sessions.length, machines.length]);
    const sections = machines.map((m) => ({ id: m.id, it: (local && m.snapshotLocal !== undefined ? m.snapshotLocal() : m.snapshot())[Symbol.asyncIterator]() }));
    const releaseAll = async (): Promise<void> => {
      for (const s of sections) await s.it.return?.();
    };
    const gen = writeComposite(head, sessions, sections);
    const it: AsyncIterator<Uint8Array> = {
      next: async () => {
        try {
          return await gen.next();
        } catch (e) {
          await releaseAll();
          throw e;
        }
      },
      return: async () => {
        await gen.return(undefined);
        await releaseAll();
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => it };
  }

  /**
   * A snapshot (composite or legacy) with every machine's section passed
   * through its expandSection(): a local snapshot as snapshot() writes it.
   * The stored trailer is checked (at the end: a consumer that must not act
   * on a bad one reads it all first) and a new one written. Legacy
   * snapshots pass through unchanged.
   */
  async *expand(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const r = new ChunkReader(chunks);
    const header = await r.read(SNAPSHOT_STREAM_HEADER_BYTES);
    if (header === undefined || !startsWith(header, COMPOSITE_MAGIC_BYTES)) {
      if (header !== undefined) yield header;
      for (let c = await r.chunk(); c !== undefined; c = await r.chunk()) yield c;
      return;
    }
    const rr = new RecordReader(r);
    const head = await rr.next('head');
    if (!Array.isArray(head) || head.length !== 4) return rr.bad('head', 'expected [appliedIndex, clockMs, sessionCount, sectionCount]');
    const sessionCount = nat(rr.bad, 'sessionCount', head[2]);
    const sectionCount = nat(rr.bad, 'sectionCount', head[3]);
    const sessions: unknown[] = [];
    for (let i = 0; i < sessionCount; i++) sessions.push(await rr.next(`sessions[${i}]`));
    const machines = this.#h.machines;
    async function* sections(): AsyncGenerator<{ id: string; it: AsyncIterator<Uint8Array> }> {
      for (let i = 0; i < sectionCount; i++) {
        const id = await rr.next(`sections[${i}].machine`);
        if (typeof id !== 'string' || id.length === 0) return rr.bad(`sections[${i}].machine`, 'expected a machine id (string)');
        const m = machines.get(id);
        const section = new SectionReader(r, id);
        yield { id, it: (m?.expandSection !== undefined ? m.expandSection(section) : section)[Symbol.asyncIterator]() };
        if (!section.ended) throw new SnapshotCorruptError(r.offset, `${id}.end`, `machine ${JSON.stringify(id)} stopped reading before the end of its section`);
      }
    }
    yield* writeComposite(packCanonical(head), sessions, sections());
    const at = r.offset;
    const digest = r.hash.digest();
    r.hashing = false;
    const stored = await r.read(32);
    if (stored === undefined || !Buffer.from(digest).equals(stored)) throw new SnapshotCorruptError(at, 'checksum', `SHA-256 of bytes 0..${at} does not match the trailer`);
    if (!(await r.atEnd())) throw new SnapshotCorruptError(r.offset, 'trailer', 'bytes follow the SHA-256 trailer');
  }

  /**
   * The previous release's format: QKVS version 2, one msgpack body
   * [appliedIndex, revision, clockMs, keys, sessions], framed with its
   * SHA-256. The key tuples are captured at the call (references to the
   * immutable records); the body is packed and framed whole at the first
   * read: about twice the encoded state in memory while it is written (the
   * previous release could not stream either). Only the KV can be in it.
   */
  legacySnapshot(): AsyncIterable<Uint8Array> {
    const kv = this.#legacyKv();
    for (const [id, m] of this.#h.machines) {
      if (id !== KV_MACHINE_ID && m.isEmpty?.() !== true) throw new Error(`a legacy (QKVS) snapshot holds only the KV; machine ${JSON.stringify(id)} needs the composite format (cluster feature level >= 2)`);
    }
    const { revision, keys } = kv.legacyCapture();
    const body = [this.#h.appliedIndex(), revision, this.#h.clockMs(), keys, this.#h.sessionTuples()];
    async function* stream(): AsyncGenerator<Uint8Array> {
      yield* snapshotChunksOf(frameSnapshot(packCanonical(body), SNAPSHOT_LEGACY_FORMAT_VERSION), SNAPSHOT_CHUNK_BYTES);
    }
    return stream();
  }

  #legacyKv(): StateMachine & LegacyKvMachine {
    const kv = this.#h.machines.get(KV_MACHINE_ID) as (StateMachine & Partial<LegacyKvMachine>) | undefined;
    if (kv?.legacyCapture === undefined || kv.legacyRestore === undefined) throw new Error('a legacy (QKVS) snapshot needs the "kv" machine registered');
    return kv as StateMachine & LegacyKvMachine;
  }


  /**
   * `only`: restore just these machines (the others' sections are checked,
   * not kept; their state and the registry's record stay as they are): a
   * backup restored into a running cluster (composite snapshots only).
   */
  async read(chunks: AsyncIterable<Uint8Array>, build: boolean, only?: ReadonlySet<string>): Promise<RestoreCommit | undefined> {
    const r = new ChunkReader(chunks);
    try {
      const header = await r.read(SNAPSHOT_STREAM_HEADER_BYTES);
      if (header === undefined) throw new SnapshotCorruptError(r.offset, 'header', `truncated: ${r.offset} bytes, the header alone is ${SNAPSHOT_STREAM_HEADER_BYTES}`);
      const version = Buffer.from(header.buffer, header.byteOffset, header.byteLength).readUInt32BE(4);
      // A registry run as the previous release knows only QKVS, exactly as that release did.
      if (this.#h.maxFormat >= 2 && startsWith(header, COMPOSITE_MAGIC_BYTES)) {
        if (version > COMPOSITE_SNAPSHOT_VERSION) throw new SnapshotVersionError(version, COMPOSITE_SNAPSHOT_VERSION);
        if (version !== COMPOSITE_SNAPSHOT_VERSION) throw new SnapshotCorruptError(4, 'version', `unknown composite format version ${version}`);
        return await this.#readComposite(r, build, only);
      }
      for (let i = 0; i < SNAPSHOT_MAGIC_BYTES.length; i++) {
        if (header[i] !== SNAPSHOT_MAGIC_BYTES[i]) {
          throw new SnapshotCorruptError(i, 'magic', this.#h.maxFormat >= 2 ? `expected "QSMS" (composite) or "QKVS" (legacy)` : 'expected "QKVS"');
        }
      }
      if (version > SNAPSHOT_LEGACY_FORMAT_VERSION) throw new SnapshotVersionError(version, SNAPSHOT_LEGACY_FORMAT_VERSION);
      if (only !== undefined) throw new SnapshotCorruptError(0, 'magic', 'restoring some machines needs a composite ("QSMS") snapshot');
      const rest = await r.rest(LEGACY_SNAPSHOT_BYTES_MAX);
      return await this.#readLegacy(Buffer.concat([header, rest]), build);
    } finally {
      await r.close();
    }
  }

  async #readLegacy(bytes: Uint8Array, build: boolean): Promise<RestoreCommit | undefined> {
    const { version, body } = unframeSnapshot(bytes);
    const at = 48;
    const bad: Bad = (field, reason) => {
      throw new SnapshotCorruptError(at, field, reason);
    };
    let raw: unknown;
    try {
      raw = unpackCanonical(body);
    } catch (err) {
      throw new SnapshotCorruptError(at, 'body', `not valid msgpack (${(err as Error).message})`, { cause: err });
    }
    if (!Array.isArray(raw) || raw.length !== 5) return bad('body', 'expected an array of 5 fields');
    const [appliedIndexRaw, revision, clockMsRaw, keys, sessionsRaw] = raw as unknown[];
    const appliedIndex = nat(bad, 'appliedIndex', appliedIndexRaw);
    nat(bad, 'revision', revision);
    const clockMs = nat(bad, 'clockMs', clockMsRaw);
    if (!Array.isArray(keys)) return bad('keys', 'expected an array');
    if (!Array.isArray(sessionsRaw)) return bad('sessions', 'expected an array');
    const kvCommit = this.#h.machines.has(KV_MACHINE_ID)
      ? this.#legacyKv().legacyRestore(revision, keys, bad)
      : keys.length === 0 ? undefined : bad('keys', 'this registry runs no "kv" machine');
    const check = new SessionChecker(clockMs, version === 1 ? 3 : 4);
    const sessions = (sessionsRaw as unknown[]).map((t, i) => check.session(t, `sessions[${i}]`, bad));
    if (!build) return undefined;
    const others = [...this.#h.machines.values()].filter((m) => m.id !== KV_MACHINE_ID);
    return this.#commitAll(kvCommit === undefined ? [] : [kvCommit], others, { appliedIndex, clockMs, sessions });
  }

  async #readComposite(r: ChunkReader, build: boolean, only?: ReadonlySet<string>): Promise<RestoreCommit | undefined> {
    const rr = new RecordReader(r);
    const head = await rr.next('head');
    if (!Array.isArray(head) || head.length !== 4) return rr.bad('head', 'expected [appliedIndex, clockMs, sessionCount, sectionCount]');
    const appliedIndex = nat(rr.bad, 'appliedIndex', head[0]);
    const clockMs = nat(rr.bad, 'clockMs', head[1]);
    const sessionCount = nat(rr.bad, 'sessionCount', head[2]);
    const sectionCount = nat(rr.bad, 'sectionCount', head[3]);
    const check = new SessionChecker(clockMs, 4);
    const sessions: SessionRecord[] = [];
    for (let i = 0; i < sessionCount; i++) {
      const f = `sessions[${i}]`;
      sessions.push(check.session(await rr.next(f), f, rr.bad));
    }
    const commits: RestoreCommit[] = [];
    const seen = new Set<string>();
    let prev: string | undefined;
    for (let i = 0; i < sectionCount; i++) {
      const id = await rr.next(`sections[${i}].machine`);
      if (typeof id !== 'string' || id.length === 0) return rr.bad(`sections[${i}].machine`, 'expected a machine id (string)');
      if (prev !== undefined && !(prev < id)) rr.bad(`sections[${i}].machine`, `sections out of id order or duplicated: ${JSON.stringify(prev)} then ${JSON.stringify(id)}`);
      prev = id;
      const m = this.#h.machines.get(id);
      if (m === undefined) throw new SnapshotMachineError(id, rr.at);
      seen.add(id);
      const section = new SectionReader(r, id);
      try {
        if (build && (only === undefined || only.has(id))) commits.push(await m.restore(section));
        else await m.validate(section);
      } catch (e) {
        throw section.translate(e);
      }
      if (!section.ended) throw new SnapshotCorruptError(r.offset, `${id}.end`, `machine ${JSON.stringify(id)} stopped reading before the end of its section`);
    }
    const at = r.offset;
    const digest = r.hash.digest();
    r.hashing = false;
    const stored = await r.read(32);
    if (stored === undefined) throw new SnapshotCorruptError(at, 'checksum', `truncated: the stream ends at byte ${r.offset}, before the 32-byte SHA-256 trailer`);
    if (!Buffer.from(digest).equals(stored)) throw new SnapshotCorruptError(at, 'checksum', `SHA-256 of bytes 0..${at} does not match the trailer`);
    if (!(await r.atEnd())) throw new SnapshotCorruptError(r.offset, 'trailer', 'bytes follow the SHA-256 trailer');
    if (!build) return undefined;
    const absent = [...this.#h.machines.values()].filter((m) => !seen.has(m.id) && (only === undefined || only.has(m.id)));
    return this.#commitAll(commits, absent, only === undefined ? { appliedIndex, clockMs, sessions } : undefined);
  }

  /** Builds the empty state of the `absent` machines, then returns one commit for everything (the machines, then the registry). */
  async #commitAll(commits: RestoreCommit[], absent: StateMachine[], s: RegistryState | undefined): Promise<RestoreCommit> {
    for (const m of absent) commits.push(await m.restore(EMPTY_SNAPSHOT));
    return () => {
      for (const c of commits) c();
      if (s !== undefined) this.#h.load(s);
    };
  }
}

/** Largest legacy (QKVS 1/2) snapshot read (those are held in memory whole). */
const LEGACY_SNAPSHOT_BYTES_MAX = 2 ** 31 - 1;

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false;
  return true;
}

/** Checks session records of either format (`fields` 3: format 1, without the fingerprint). */
class SessionChecker {
  #prevAt = 0;
  readonly #seen = new Set<string>();
  constructor(readonly clockMs: number, readonly fields: 3 | 4) {}

  session(t: unknown, f: string, bad: Bad): SessionRecord {
    const n = this.fields;
    if (!Array.isArray(t) || t.length !== n) bad(f, n === 3 ? 'expected [idempotencyKey, atMs, result]' : 'expected [idempotencyKey, atMs, result, fingerprint]');
    const [key, atRaw, resultRaw, fpRaw] = t as unknown[];
    if (typeof key !== 'string' || key.length === 0) return bad(`${f}.idempotencyKey`, 'expected a non-empty string');
    if (this.#seen.has(key)) bad(`${f}.idempotencyKey`, `duplicate ${JSON.stringify(key)}`);
    this.#seen.add(key);
    const atMs = nat(bad, `${f}.atMs`, atRaw);
    if (atMs < this.#prevAt || atMs > this.clockMs) bad(`${f}.atMs`, `expected non-decreasing times <= clockMs (${this.clockMs})`);
    this.#prevAt = atMs;
    const result = resultFromTuple(resultRaw);
    if (result === undefined) return bad(`${f}.result`, 'malformed result tuple');
    let fingerprint: string | undefined;
    if (fpRaw !== undefined && fpRaw !== null) {
      if (typeof fpRaw !== 'string' || !/^[0-9a-f]{32}$/.test(fpRaw)) return bad(`${f}.fingerprint`, 'expected 32 lowercase hex digits or nil');
      fingerprint = fpRaw;
    }
    return { key, atMs, fingerprint, result };
  }
}

/**
 * One machine's section of a composite snapshot, read from the shared
 * ChunkReader as the machine asks: data frames (uint32 length | bytes) up to
 * the end frame (uint32 0). Every frame but the last is exactly
 * SECTION_FRAME_BYTES long, so an offset in the machine's stream maps to one
 * in the snapshot (translate). Holds one frame at most.
 */
class SectionReader implements AsyncIterable<Uint8Array> {
  readonly #r: ChunkReader;
  readonly #id: string;
  /** Offset of the section's first frame. */
  readonly #start: number;
  #short = false;
  ended = false;
  /** Errors the framing itself raised (passed through as they are). */
  readonly #own = new Set<unknown>();

  constructor(r: ChunkReader, id: string) {
    this.#r = r;
    this.#id = id;
    this.#start = r.offset;
  }

  #fail(offset: number, field: string, reason: string): never {
    const e = new SnapshotCorruptError(offset, `${this.#id}.${field}`, reason);
    this.#own.add(e);
    throw e;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    const r = this.#r;
    while (!this.ended) {
      const at = r.offset;
      const len = await r.read(4);
      if (len === undefined) this.#fail(at, 'frame', `truncated: the stream ends at byte ${r.offset}, inside a frame length`);
      const n = ((len[0]! << 24) | (len[1]! << 16) | (len[2]! << 8) | len[3]!) >>> 0;
      if (n === 0) {
        this.ended = true;
        return;
      }
      if (n > SECTION_FRAME_BYTES) this.#fail(at, 'frame', `frame length ${n} is over ${SECTION_FRAME_BYTES}`);
      if (this.#short) this.#fail(at, 'frame', `a frame follows a short one (${n} bytes): only the last frame may be shorter than ${SECTION_FRAME_BYTES}`);
      if (n < SECTION_FRAME_BYTES) this.#short = true;
      const body = await r.read(n);
      if (body === undefined) this.#fail(at, 'frame', `truncated: the stream ends at byte ${r.offset}, inside a frame of ${n} bytes`);
      yield body;
    }
  }

  /** A machine's error, with its offset mapped to the snapshot's and its field prefixed with the machine id. */
  translate(e: unknown): unknown {
    if (this.#own.has(e) || !(e instanceof SnapshotCorruptError)) return e;
    const k = e.offset;
    const abs = this.#start + 4 * (Math.floor(k / SECTION_FRAME_BYTES) + 1) + k;
    const field = e.field.startsWith(`${this.#id}.`) ? e.field : `${this.#id}.${e.field}`;
    return new SnapshotCorruptError(abs, field, `${e.reason} (byte ${k} of machine ${JSON.stringify(this.#id)}'s section)`, { cause: e });
  }
}

/** Writes a composite snapshot (layout: snapshot.ts) from the captured registry state and the machines' streams. */
async function* writeComposite(
  head: Uint8Array,
  sessions: readonly unknown[],
  sections: Iterable<{ readonly id: string; readonly it: AsyncIterator<Uint8Array> }> | AsyncIterable<{ readonly id: string; readonly it: AsyncIterator<Uint8Array> }>,
): AsyncGenerator<Uint8Array> {
  const b = new ChunkBuilder();
  const header = Buffer.alloc(SNAPSHOT_STREAM_HEADER_BYTES);
  header.set(COMPOSITE_MAGIC_BYTES, 0);
  header.writeUInt32BE(COMPOSITE_SNAPSHOT_VERSION, 4);
  b.write(header);
  b.record(head);
  for (const s of sessions) {
    b.record(packCanonical(s));
    while (b.full.length > 0) yield b.full.shift()!;
  }
  const frame = Buffer.allocUnsafe(SECTION_FRAME_BYTES);
  for await (const { id, it } of sections) {
    b.record(packCanonical(id));
    let n = 0;
    for (;;) {
      const r = await it.next();
      if (r.done === true) break;
      const c = r.value;
      let at = 0;
      while (at < c.length) {
        const take = Math.min(c.length - at, SECTION_FRAME_BYTES - n);
        frame.set(c.subarray(at, at + take), n);
        n += take;
        at += take;
        if (n === SECTION_FRAME_BYTES) {
          b.u32(n);
          b.write(frame);
          n = 0;
        }
      }
      while (b.full.length > 0) yield b.full.shift()!;
    }
    if (n > 0) {
      b.u32(n);
      b.write(frame.subarray(0, n));
    }
    b.u32(0);
  }
  const digest = b.finish();
  while (b.full.length > 0) yield b.full.shift()!;
  yield digest;
}
