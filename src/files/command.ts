// The "files" machine's commands (payloads of format-2 entries), path
// validation and the limits of replicated files.
//
// A file travels through the log in chunks, so that no entry is larger than
// FILE_CHUNK_BYTES (plus a few bytes of framing) whatever the file's size:
//
//   [1, 'chunk',  uploadId, offset, bytes]          append to the upload's staging file
//   [1, 'commit', uploadId, path, size, sha256]     make the upload the file at `path` (atomically)
//   [1, 'abort',  uploadId]                         drop an upload
//   [1, 'delete', path]                             remove a file
//
// An upload is visible to nobody until its commit applies; a commit whose
// staged bytes do not have the announced size and SHA-256 is refused (on
// every node alike: the staged bytes are the same everywhere). Uploads that
// see no command for UPLOAD_IDLE_MS of the replicated clock are dropped.
import { createHash } from 'node:crypto';
import { packCanonical, packCanonicalWithBytes, unpackVersionedArray } from '../state/commands.js';
import { InvalidCommandError } from '../state/errors.js';

export const FILES_MACHINE_ID = 'files';
export const FILES_PAYLOAD_VERSION = 1;

/** Bytes of file content in one log entry (the bound on entry size). */
export const FILE_CHUNK_BYTES = 1024 * 1024;
/** Longest path, in UTF-8 bytes. */
export const FILE_PATH_MAX_BYTES = 1024;
/** Longest path segment (a file system's name limit). */
export const FILE_SEGMENT_MAX_BYTES = 255;
/** An upload that sees no command for this long (replicated clock) is dropped on every node. */
export const UPLOAD_IDLE_MS = 10 * 60_000;
/** Default largest file (`files.maxFileBytes`). */
export const DEFAULT_MAX_FILE_BYTES = 4 * 1024 ** 3;
/** The hard ceiling the machine enforces on any upload (a config may lower the limit, not raise it past this). */
export const FILE_HARD_MAX_BYTES = 64 * 1024 ** 3;

/** Paths the cluster uses itself (a backup's state staged by a restore, src/node/cluster-restore.ts): refused to API clients, hidden from listings. */
export const RESERVED_FILES_PREFIX = '.quorate/';

const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

export type FilesCommand =
  | { readonly op: 'chunk'; readonly uploadId: string; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly op: 'commit'; readonly uploadId: string; readonly path: string; readonly size: number; readonly sha256: string }
  | { readonly op: 'abort'; readonly uploadId: string }
  | { readonly op: 'delete'; readonly path: string };

/** A bad file path: `field` names what to fix (HTTP 400 invalid_path). */
export class FilePathError extends Error {
  readonly code = 'invalid_path';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'FilePathError';
    this.field = field;
  }
}

/**
 * Checks a file path: relative, '/'-separated, no empty, '.' or '..'
 * segment, no NUL or other control character, no backslash, at most
 * FILE_PATH_MAX_BYTES (each segment FILE_SEGMENT_MAX_BYTES). Such a path
 * cannot name anything outside the files directory. Returns it unchanged.
 */
export function validateFilePath(path: unknown, field = 'path'): string {
  if (typeof path !== 'string' || path === '') throw new FilePathError(field, `${field}: a file path is required (like "reports/2026/jan.csv")`);
  const bytes = Buffer.byteLength(path);
  if (bytes > FILE_PATH_MAX_BYTES) throw new FilePathError(field, `${field}: ${bytes} bytes; the limit is ${FILE_PATH_MAX_BYTES} bytes`);
  if (path.includes('\0')) throw new FilePathError(field, `${field}: contains a NUL character`);
  if (/[\x01-\x1f\x7f]/.test(path)) throw new FilePathError(field, `${field}: contains a control character`);
  if (path.includes('\\')) throw new FilePathError(field, `${field}: contains a backslash; separate directories with "/"`);
  if (path.startsWith('/')) throw new FilePathError(field, `${field}: ${JSON.stringify(path.slice(0, 80))} is absolute; give a path relative to the replicated files (no leading "/")`);
  for (const seg of path.split('/')) {
    if (seg === '') throw new FilePathError(field, `${field}: ${JSON.stringify(path.slice(0, 80))} has an empty segment ("//" or a trailing "/")`);
    if (seg === '.' || seg === '..') throw new FilePathError(field, `${field}: ${JSON.stringify(path.slice(0, 80))} contains a "${seg}" segment; paths may not leave or refer to their directory`);
    if (Buffer.byteLength(seg) > FILE_SEGMENT_MAX_BYTES) throw new FilePathError(field, `${field}: the segment ${JSON.stringify(seg.slice(0, 40))}… is longer than ${FILE_SEGMENT_MAX_BYTES} bytes`);
  }
  return path;
}

const bad = (field: string, reason: string): never => {
  throw new InvalidCommandError(field, reason);
};

/** The payload of a chunk command whose bytes come in parts (as read from a request body), copied once. */
export function encodeChunkPayload(uploadId: string, offset: number, parts: readonly Uint8Array[]): Uint8Array {
  return packCanonicalWithBytes([FILES_PAYLOAD_VERSION, 'chunk', uploadId, offset], parts);
}

export function encodeFilesPayload(c: FilesCommand): Uint8Array {
  switch (c.op) {
    case 'chunk': return packCanonicalWithBytes([FILES_PAYLOAD_VERSION, 'chunk', c.uploadId, c.offset], c.bytes);
    case 'commit': return packCanonical([FILES_PAYLOAD_VERSION, 'commit', c.uploadId, c.path, c.size, c.sha256]);
    case 'abort': return packCanonical([FILES_PAYLOAD_VERSION, 'abort', c.uploadId]);
    case 'delete': return packCanonical([FILES_PAYLOAD_VERSION, 'delete', c.path]);
  }
}

const nat = (v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max ? v : bad(field, `must be an integer in 0..${max}`);
const uploadId = (v: unknown): string => (typeof v === 'string' && UPLOAD_ID_RE.test(v) ? v : bad('uploadId', 'must be 32 lowercase hex digits'));
function path(v: unknown): string {
  try {
    return validateFilePath(v);
  } catch (e) {
    return bad('path', (e as Error).message);
  }
}

export function decodeFilesPayload(payload: Uint8Array): FilesCommand {
  const r = unpackVersionedArray(payload, FILES_PAYLOAD_VERSION);
  if (!r.ok) return bad(r.field, r.reason);
  const v = r.v;
  if (v[0] !== FILES_PAYLOAD_VERSION) return bad('payload', `expected version ${FILES_PAYLOAD_VERSION}`);
  const op = v[1];
  switch (op) {
    case 'chunk': {
      if (v.length !== 5) return bad('payload', 'expected [1, "chunk", uploadId, offset, bytes]');
      const bytes = v[4];
      if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length > FILE_CHUNK_BYTES) return bad('bytes', `must be 1..${FILE_CHUNK_BYTES} bytes`);
      return { op, uploadId: uploadId(v[2]), offset: nat(v[3], 'offset', FILE_HARD_MAX_BYTES), bytes };
    }
    case 'commit': {
      if (v.length !== 6) return bad('payload', 'expected [1, "commit", uploadId, path, size, sha256]');
      const sha = v[5];
      if (typeof sha !== 'string' || !SHA256_RE.test(sha)) return bad('sha256', 'must be 64 lowercase hex digits');
      return { op, uploadId: uploadId(v[2]), path: path(v[3]), size: nat(v[4], 'size', FILE_HARD_MAX_BYTES), sha256: sha };
    }
    case 'abort':
      if (v.length !== 3) return bad('payload', 'expected [1, "abort", uploadId]');
      return { op, uploadId: uploadId(v[2]) };
    case 'delete':
      if (v.length !== 3) return bad('payload', 'expected [1, "delete", path]');
      return { op, path: path(v[2]) };
    default:
      return bad('op', `unknown operation ${JSON.stringify(String(op).slice(0, 20))} (chunk, commit, abort, delete)`);
  }
}

/** Client-session fingerprint (only commit and delete carry idempotency keys): the machine id and the command without the upload id (a retried upload draws a new one). */
export function filesFingerprint(c: FilesCommand): string {
  const h = createHash('sha256');
  h.update(FILES_MACHINE_ID);
  if (c.op === 'commit') h.update(packCanonical(['commit', c.path, c.size, c.sha256]));
  else if (c.op === 'delete') h.update(packCanonical(['delete', c.path]));
  else h.update(packCanonical([c.op, c.uploadId]));
  return h.digest('hex').slice(0, 32);
}
