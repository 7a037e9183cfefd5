// The HTTP API's port to replicated files (src/node/files-service.ts, src/files).
import type { FileHandle } from 'node:fs/promises';
import type { ProposeOptions } from './ports.js';

export interface FileInfo {
  readonly path: string;
  readonly size: number;
  /** Hex SHA-256 of the content (the ETag). */
  readonly sha256: string;
  /** Log index of the commit that wrote it. */
  readonly revision: number;
  /** Leader-stamped time of that commit (ms since the epoch). */
  readonly at: number;
}

/** An open file, consistent with its info; close the handle. */
export interface OpenedFile {
  readonly info: FileInfo;
  readonly handle: FileHandle;
  /** Where its content is on this node's disk (named when it is corrupt). */
  readonly diskFile: string;
}

/**
 * Replicated files. `put` and `delete` run on the leader and throw
 * not_leader elsewhere (the API forwards); reads see this node's copy as of
 * now (after `readBarrier` for a linearizable read).
 */
export interface FilesService {
  /** The largest file accepted (files.maxFileBytes). */
  readonly maxFileBytes: number;
  /** Streams `body` through the log in chunks and commits it at `path`; the file is visible only once all of it is committed. */
  put(path: string, body: AsyncIterable<Uint8Array>, options: ProposeOptions & { readonly contentLength?: number }): Promise<{ revision: number; size: number; sha256: string }>;
  delete(path: string, options?: ProposeOptions): Promise<{ revision: number; deleted: boolean }>;
  /** Linearizable: resolves once this node's files reflect every write acknowledged before the call. */
  readBarrier(timeoutMs?: number): Promise<void>;
  /** Resolves once this node has written every file it applied before the call (a stale read of what it applied). */
  caughtUp(): Promise<void>;
  list(prefix: string, limit: number, startAfter?: string): { files: FileInfo[]; more: boolean; appliedIndex: number };
  /** Opens `path`; undefined when there is no such file. */
  open(path: string): Promise<OpenedFile | undefined>;
  /** Reads the whole file and checks its size and SHA-256; throws file_corrupt naming the path. */
  verify(f: OpenedFile): Promise<void>;
  /** Checksum of the files' state at the applied index it names. */
  checksum(): Promise<{ appliedIndex: number; checksum: string }>;
}
