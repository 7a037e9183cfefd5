// GET /v1/watch?prefix=&fromRevision=: server-sent events of KV changes.
//
// Each event is `id: <revision>` + `data: <json WatchEvent>`; a client that
// reconnects resumes with fromRevision = last id + 1. Served from this node's
// applied state (any node; events are committed entries). A start revision
// older than the retained history answers 410 `compacted` with
// oldestRevision. Comment lines (`: heartbeat`) keep proxies from timing out.
// A consumer that does not keep up (too many bytes buffered) is disconnected
// and resumes from its last id, so one slow reader cannot grow memory.
import type { WatchEvent } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { HEADER_SERVED_BY } from './context.js';
import { checkKey } from './validate.js';

/** Bytes buffered for one slow watcher before it is disconnected. */
export const WATCH_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

export function sseEvent(e: WatchEvent): string {
  return `id: ${e.revision}\ndata: ${JSON.stringify(e)}\n\n`;
}

async function serveWatch(ctx: RequestContext): Promise<void> {
  const { node, logger } = ctx.app;
  const prefix = ctx.query.get('prefix') ?? '';
  if (prefix !== '') checkKey(prefix, 'prefix');
  const from = ctx.intParam('fromRevision');
  // fromRevision=0 means "from the first revision".
  const fromRevision = from === undefined ? undefined : Math.max(1, from);
  const res = ctx.res;

  let live = false;
  let closed = false;
  const pending: WatchEvent[] = [];
  let stop = (): void => {};
  const send = (chunk: string): void => {
    if (closed) return;
    res.write(chunk);
    if (res.writableLength > WATCH_MAX_BUFFERED_BYTES) {
      logger.warn({ prefix, buffered: res.writableLength }, 'watch consumer too slow; closing its stream (it resumes from its last id)');
      stop();
    }
  };
  // Replayed history arrives synchronously inside kv.watch (before the
  // headers are out, so a CompactedError can still become a 410); buffer it.
  const unsubscribe = node.kv.watch(prefix, fromRevision, (e) => (live ? send(sseEvent(e)) : pending.push(e)), {
    onCancel: (err) => {
      send(`event: error\ndata: ${JSON.stringify({ error: err.code, message: err.message, oldestRevision: err.oldestRevision })}\n\n`);
      stop();
    },
  });

  await new Promise<void>((resolve) => {
    const timer = setInterval(() => send(': heartbeat\n\n'), ctx.app.heartbeatMs);
    timer.unref();
    stop = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(timer);
      ctx.app.watches.delete(stop);
      if (!res.writableEnded) res.end();
      resolve();
    };
    res.on('close', stop);
    ctx.app.watches.add(stop);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      [HEADER_SERVED_BY]: node.nodeName,
    });
    res.write(`retry: 1000\n: watching ${JSON.stringify(prefix)} from revision ${fromRevision ?? node.kv.revision + 1}\n\n`);
    live = true;
    for (const e of pending.splice(0)) send(sseEvent(e));
  });
}

export const watchRoutes: Readonly<Record<string, Route>> = {
  GET: { auth: 'reader', query: ['prefix', 'fromRevision'], handle: serveWatch },
};
