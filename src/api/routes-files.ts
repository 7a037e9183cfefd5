// /v1/files: replicated files (SPEC §4 "Data"; docs/api.md "Replicated files").
//   PUT    /v1/files/{path}   streamed body; the leader chunks it through the log (forwarded, streamed, from other nodes)
//   GET    /v1/files/{path}   streamed, verified against its SHA-256 first; Range; ETag = "sha256"
//   DELETE /v1/files/{path}
//   GET    /v1/files?prefix=&limit=&startAfter=   the listing, with size, SHA-256 and revision
// Writes and linearizable reads run on the leader; `consistency=stale`
// reads are served from this node's copy.
import { pipeline } from 'node:stream/promises';
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { forwardToLeader, onLeader } from './leader.js';
import type { FileInfo, FilesService, OpenedFile } from './ports-files.js';
import type { ProposeOptions } from './ports.js';
import { idempotencyKey } from './validate.js';
import { FilePathError, validateFilePath } from '../files/command.js';

export const FILES_PREFIX = '/v1/files/';
const DEFAULT_LIST_LIMIT = 1000;
const MAX_LIST_LIMIT = 10_000;

function service(ctx: RequestContext): FilesService {
  const s = ctx.app.files;
  if (s === undefined) throw new ApiError('not_found', 'this server does not serve replicated files');
  return s;
}

/** The path of /v1/files/{path}, percent-decoded and validated (400 invalid_path naming the field). */
export function filePathOf(raw: string): string {
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    throw new ApiError('invalid_path', 'path: malformed percent-encoding in the URL path', { field: 'path' });
  }
  try {
    return validateFilePath(path, 'path');
  } catch (e) {
    if (e instanceof FilePathError) throw new ApiError('invalid_path', e.message, { field: e.field });
    throw e;
  }
}

export function fileJson(f: FileInfo): Record<string, unknown> {
  return { path: f.path, size: f.size, sha256: f.sha256, revision: f.revision, modifiedAt: new Date(f.at).toISOString() };
}

/** Linearizable: on the leader after a read barrier (forwarded from followers); stale: here, once this node has written what it applied. */
async function read(ctx: RequestContext, serve: () => Promise<void>): Promise<void> {
  const s = service(ctx);
  if (ctx.consistency() === 'stale') {
    await s.caughtUp();
    return serve();
  }
  await onLeader(ctx, false, async () => {
    await s.readBarrier();
    await serve();
  });
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range); undefined = the whole file. */
function range(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const unsatisfiable = (): never => {
    throw new ApiError('range_not_satisfiable', `Range: ${JSON.stringify(header.slice(0, 60))} does not fit a file of ${size} bytes (one range, bytes=start-end, bytes=start- or bytes=-suffix)`, { field: 'Range' }, { 'content-range': `bytes */${size}` });
  };
  if (m === null || (m[1] === '' && m[2] === '')) return unsatisfiable();
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return unsatisfiable();
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return unsatisfiable();
  return { start, end };
}

async function serveFile(ctx: RequestContext, s: FilesService, path: string): Promise<void> {
  const f: OpenedFile | undefined = await s.open(path);
  if (f === undefined) throw new ApiError('not_found', `no file ${JSON.stringify(path.slice(0, 200))} (list them with GET /v1/files?prefix=)`, { field: 'path' });
  try {
    try {
      await s.verify(f);
    } catch (e) {
      ctx.app.logger.error({ event: 'file_corrupt', path, err: (e as Error).message }, (e as Error).message);
      throw e;
    }
    const etag = `"${f.info.sha256}"`;
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream', etag, 'accept-ranges': 'bytes', 'cache-control': 'no-cache',
      'last-modified': new Date(f.info.at).toUTCString(), 'x-quorate-file-revision': String(f.info.revision),
    };
    if (ctx.header('if-none-match') === etag) {
      ctx.res.writeHead(304, headers);
      ctx.res.end();
      return;
    }
    const r = range(ctx.header('range'), f.info.size);
    const start = r?.start ?? 0;
    const end = r?.end ?? f.info.size - 1;
    headers['content-length'] = String(Math.max(0, end - start + 1));
    if (r !== undefined) headers['content-range'] = `bytes ${start}-${end}/${f.info.size}`;
    ctx.res.writeHead(r !== undefined ? 206 : 200, headers);
    if (ctx.method === 'HEAD' || end < start) {
      ctx.res.end();
      return;
    }
    await pipeline(f.handle.createReadStream({ start, end, autoClose: false, highWaterMark: 1024 * 1024 }), ctx.res);
  } finally {
    await f.handle.close();
  }
}

function options(ctx: RequestContext): ProposeOptions {
  const ik = idempotencyKey(ctx.header('idempotency-key'));
  return ik !== undefined ? { idempotencyKey: ik } : {};
}

function contentLength(ctx: RequestContext): number | undefined {
  const v = ctx.header('content-length');
  if (v === undefined) return undefined;
  if (!/^\d{1,16}$/.test(v)) throw badField('Content-Length', 'must be a non-negative integer');
  return Number(v);
}

export function filePathRoutes(rawPath: string): Readonly<Record<string, Route>> {
  return {
    GET: {
      auth: 'reader',
      query: ['consistency'],
      handle: async (ctx) => {
        const path = filePathOf(rawPath);
        const s = service(ctx);
        await read(ctx, () => serveFile(ctx, s, path));
      },
    },
    PUT: {
      auth: 'operator',
      query: [],
      handle: async (ctx) => {
        const path = filePathOf(rawPath);
        ctx.auditTarget = path;
        const s = service(ctx);
        const o = options(ctx);
        const length = contentLength(ctx);
        // Any size: only an idle gap in the body ends it (408), not the 60 s request deadline.
        ctx.streamedBody();
        if (length !== undefined && length > s.maxFileBytes) {
          throw new ApiError('file_too_large', `the file is ${length} bytes (Content-Length); the limit is ${s.maxFileBytes} bytes (files.maxFileBytes)`, { limit: `${s.maxFileBytes} bytes`, limitBytes: s.maxFileBytes, field: 'Content-Length' });
        }
        // Not onLeader: the body is streamed, so once it is being read here it cannot be forwarded any more.
        // The relay's socket may go quiet while the leader commits a large file (fsync) after the last byte: as long as a restore's.
        if (!ctx.app.cluster.isLeader()) return forwardToLeader(ctx, true, 10 * 60_000, false, true);
        ctx.req.setTimeout(0);
        const r = await s.put(path, ctx.req, { ...o, ...(length !== undefined ? { contentLength: length } : {}) });
        ctx.json(200, { path, revision: r.revision, size: r.size, sha256: r.sha256 });
      },
    },
    DELETE: {
      auth: 'operator',
      query: [],
      handle: async (ctx) => {
        const path = filePathOf(rawPath);
        ctx.auditTarget = path;
        const s = service(ctx);
        const o = options(ctx);
        await onLeader(ctx, true, async () => {
          const r = await s.delete(path, o);
          ctx.json(200, { path, revision: r.revision, deleted: r.deleted });
        });
      },
    },
  };
}

export const filesListRoutes: Readonly<Record<string, Route>> = {
  GET: {
    auth: 'reader',
    query: ['prefix', 'limit', 'startAfter', 'consistency'],
    handle: async (ctx) => {
      const s = service(ctx);
      const prefix = ctx.query.get('prefix') ?? '';
      if (prefix.includes('\0')) throw new ApiError('invalid_path', 'prefix: contains a NUL character', { field: 'prefix' });
      const startAfter = ctx.query.get('startAfter') ?? '';
      const limit = ctx.intParam('limit', 1, MAX_LIST_LIMIT) ?? DEFAULT_LIST_LIMIT;
      await read(ctx, async () => {
        const r = s.list(prefix, limit, startAfter);
        ctx.json(200, { files: r.files.map(fileJson), more: r.more, appliedIndex: r.appliedIndex });
      });
    },
  },
};
