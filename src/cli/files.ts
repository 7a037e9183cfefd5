// files put | get | ls | rm: replicated files (/v1/files). put and get
// stream (a file of any size in bounded memory); get checks the content's
// SHA-256 against the node's ETag and writes the output file atomically.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { QuorateHttpError, UnavailableError } from '../api/client.js';
import { UsageError, int, str } from './args.js';
import { validateFilePath } from '../files/command.js';
import { EXIT, cell, table, type Verb, type Context } from './command.js';

// Errors that prove the request never reached the node: the next URL is tried.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

function positionals(ctx: Context, min: number, max: number, names: string): string[] {
  const p = ctx.args.positionals;
  if (p.length < min || p.length > max) throw new UsageError(`"quorate ${ctx.command.name}" takes ${names}, got ${p.length === 0 ? 'none' : p.map((s) => JSON.stringify(s)).join(' ')}`, ctx.command.name);
  return [...p];
}

/** The URL path of a file, after the checks the node makes (a "../x" would otherwise be resolved away by URL parsing). */
function filePath(ctx: Context, p: string): string {
  try {
    validateFilePath(p, 'PATH');
  } catch (e) {
    throw new UsageError((e as Error).message, ctx.command.name);
  }
  return p.split('/').map(encodeURIComponent).join('/');
}

export async function errorOf(res: IncomingMessage, url: string): Promise<QuorateHttpError> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch { /* not JSON */ }
  const code = typeof body['error'] === 'string' ? body['error'] : `http_${res.statusCode}`;
  const message = typeof body['message'] === 'string' ? body['message'] : `HTTP ${res.statusCode}`;
  return new QuorateHttpError(res.statusCode ?? 0, code, message, body, url);
}

/** One streamed request, trying each --url until one is reached (a body is only sent to the one that accepted the connection). */
export async function stream(ctx: Context, method: string, path: string, o: { body?: () => Readable; length?: number; headers?: Record<string, string> } = {}): Promise<{ res: IncomingMessage; url: string }> {
  const token = ctx.token();
  const ik = method === 'PUT' ? randomUUID() : undefined;
  let last: unknown;
  for (const base of ctx.urls()) {
    const url = `${base.replace(/\/+$/, '')}${path}`;
    const u = new URL(url);
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    if (ik !== undefined) headers['idempotency-key'] = ik;
    if (o.body !== undefined) headers['content-type'] = 'application/octet-stream';
    if (o.length !== undefined) headers['content-length'] = String(o.length);
    try {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = (u.protocol === 'https:' ? https : http).request(u, { method, headers });
        req.on('response', resolve);
        req.on('error', reject);
        if (o.body === undefined) req.end();
        else o.body().on('error', (e) => req.destroy(e)).pipe(req);
      });
      return { res, url };
    } catch (e) {
      last = e;
      if (!NOT_SENT.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
  }
  throw new UnavailableError(ctx.urls(), { cause: last });
}

const put: Verb = {
  name: 'files put',
  usage: 'SOURCE PATH',
  description: 'Streams SOURCE to PUT /v1/files/PATH; the leader cuts it into chunks through the log and the file appears on every node at once, whole, when all of it is committed. Prints the revision, size and SHA-256.',
  flags: [],
  examples: ['quorate files put ./boot.iso isos/boot.iso', 'tar c conf | quorate files put - backups/conf.tar --json'],
  remote: true,
  async run(ctx) {
    const [source, path] = positionals(ctx, 2, 2, 'SOURCE and PATH');
    let length: number | undefined;
    if (source !== '-') {
      try {
        length = statSync(source!).size;
      } catch (e) {
        throw new UsageError(`cannot read ${source}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, ctx.command.name);
      }
    }
    const body = (): Readable => (source === '-' ? process.stdin : createReadStream(source!));
    const { res, url } = await stream(ctx, 'PUT', `/v1/files/${filePath(ctx, path!)}`, { body, ...(length !== undefined ? { length } : {}) });
    if (res.statusCode !== 200) throw await errorOf(res, url);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const r = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { path: string; revision: number; size: number; sha256: string };
    ctx.print(r, () => `OK ${r.path}: ${r.size} bytes, revision ${r.revision}, sha256 ${r.sha256}`);
    return EXIT.ok;
  },
};

const get: Verb = {
  name: 'files get',
  usage: 'PATH [DEST] [--consistency linearizable|stale]',
  description: 'The node checks the file against its SHA-256 before sending it; this command checks it again on arrival and writes DEST atomically (a temp file renamed into place), so DEST is never half written.',
  flags: [{ name: 'consistency', type: 'string', value: 'MODE', help: 'linearizable (default: as the leader sees it) or stale (this node\'s copy)' }],
  examples: ['quorate files get isos/boot.iso ./boot.iso', 'quorate files get conf/app.yaml', 'quorate files get isos/boot.iso ./boot.iso --consistency stale --url http://node2:7101'],
  remote: true,
  async run(ctx) {
    const [path, dest] = positionals(ctx, 1, 2, 'PATH and optionally DEST');
    const consistency = str(ctx.args, 'consistency');
    if (consistency !== undefined && consistency !== 'linearizable' && consistency !== 'stale') throw new UsageError(`--consistency must be linearizable or stale, got ${JSON.stringify(consistency)}`, ctx.command.name);
    const { res, url } = await stream(ctx, 'GET', `/v1/files/${filePath(ctx, path!)}${consistency !== undefined ? `?consistency=${consistency}` : ''}`);
    if (res.statusCode !== 200) throw await errorOf(res, url);
    const etag = String(res.headers['etag'] ?? '').replace(/"/g, '');
    const h = createHash('sha256');
    let size = 0;
    const tap = new Transform({ transform(c: Buffer, _e, cb) { h.update(c); size += c.length; cb(null, c); } });
    const toStdout = dest === undefined || dest === '-';
    const tmp = toStdout ? undefined : `${dest}.${process.pid}.part`;
    try {
      if (toStdout) {
        await pipeline(res, tap, process.stdout, { end: false });
      } else {
        await pipeline(res, tap, createWriteStream(tmp!));
      }
      const sha256 = h.digest('hex');
      if (etag !== '' && sha256 !== etag) throw new Error(`the content of ${path} arrived with SHA-256 ${sha256}, the node announced ${etag}; ${toStdout ? 'discard what was printed and ' : ''}retry`);
      if (tmp !== undefined) await rename(tmp, dest!);
      if (!toStdout) ctx.print({ path, dest, size, sha256, revision: Number(res.headers['x-quorate-file-revision']) }, () => `OK ${path} -> ${dest}: ${size} bytes, sha256 ${sha256}`);
      return EXIT.ok;
    } finally {
      if (tmp !== undefined) await rm(tmp, { force: true });
    }
  },
};

interface Listed { path: string; size: number; sha256: string; revision: number; modifiedAt: string }

const ls: Verb = {
  name: 'files ls',
  usage: '[--prefix P] [--limit N] [--consistency linearizable|stale]',
  flags: [
    { name: 'prefix', type: 'string', value: 'P', help: 'only paths starting with P' },
    { name: 'limit', type: 'int', value: 'N', help: 'at most N files (default 1000)' },
    { name: 'consistency', type: 'string', value: 'MODE', help: 'linearizable (default) or stale (this node\'s copy)' },
  ],
  examples: ['quorate files ls', 'quorate files ls --prefix isos/ --json'],
  remote: true,
  async run(ctx) {
    positionals(ctx, 0, 0, 'no positional arguments (use --prefix)');
    const query = { prefix: str(ctx.args, 'prefix') ?? '', limit: int(ctx.args, 'limit'), consistency: str(ctx.args, 'consistency') };
    const r = (await ctx.client().request<{ files: Listed[]; more: boolean }>('GET', '/v1/files', { query })).body;
    ctx.print(r, () => {
      if (r.files.length === 0) return '(no files)';
      const body = table(['PATH', 'SIZE', 'REVISION', 'MODIFIED', 'SHA256'], r.files.map((f) => [f.path, cell(f.size), cell(f.revision), f.modifiedAt, f.sha256]));
      return r.more ? `${body}\n(more files: raise --limit)` : body;
    });
    return EXIT.ok;
  },
};

const rmCmd: Verb = {
  name: 'files rm',
  usage: 'PATH',
  flags: [],
  examples: ['quorate files rm isos/old.iso'],
  remote: true,
  async run(ctx) {
    const [path] = positionals(ctx, 1, 1, 'one PATH');
    const r = (await ctx.client().request<{ path: string; revision: number; deleted: boolean }>('DELETE', `/v1/files/${filePath(ctx, path!)}`, { write: true })).body;
    ctx.print(r, () => (r.deleted ? `deleted ${path} (revision ${r.revision})` : `${path} did not exist`));
    return EXIT.ok;
  },
};

export const filesCommands: readonly Verb[] = [put, get, ls, rmCmd];
