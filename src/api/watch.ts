// GET /v1/watch?prefix=&fromRevision=: server-sent events of KV changes.
//
// Each event is `id: <revision>` + `data: <json WatchEvent>`; a client that
// reconnects resumes with fromRevision = last id + 1. Served from this node's
// applied state (any node; events are committed entries). A start revision
// older than the retained history answers 410 `compacted` with
// oldestRevision. Comment lines (`: heartbeat`) keep proxies from timing out.
//
// Bounded memory (ApiLimits):
// - Open streams are capped per node and per token: 429 `too_many_watches`.
// - Events are written while the socket accepts them; once it pushes back
//   (res.write returns false) further events are queued as references to the
//   hub's event objects (shared, not copies) and written on 'drain'. A stream
//   whose unsent bytes (socket buffer + queued events) pass
//   watchMaxBufferedBytes, or with more than watchMaxQueuedEvents live events
//   queued, is closed: the socket is destroyed (its buffers go with it), the
//   watcher unsubscribed, and a warning logged. The client resumes from its
//   last id when it reads again.
import type { WatchEvent } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { HEADER_SERVED_BY } from './context.js';
import { ApiError } from './errors.js';
import { checkKey } from './validate.js';

export function sseEvent(e: WatchEvent): string {
  return `id: ${e.revision}\ndata: ${JSON.stringify(e)}\n\n`;
}

/** Approximate bytes of an event on the wire (JSON escaping aside). */
const eventBytes = (e: WatchEvent): number => e.key.length + (e.value?.length ?? 0) + 128;

/** Reserves a watch slot for `token` or throws 429 too_many_watches naming the limit. */
function reserve(ctx: RequestContext, token: string): void {
  const { limits, watches, watchesByToken } = ctx.app;
  if (watches.size >= limits.maxWatches) {
    throw new ApiError(
      'too_many_watches',
      `this node already serves ${watches.size} watch streams, its limit per node (${limits.maxWatches}); close watches you no longer need, watch a common prefix with one stream instead of several, or watch from another node`,
      { limit: 'node', maxWatches: limits.maxWatches },
      { 'retry-after': '5' },
    );
  }
  const mine = watchesByToken.get(token) ?? 0;
  if (mine >= limits.maxWatchesPerToken) {
    throw new ApiError(
      'too_many_watches',
      `token "${token}" already has ${mine} watch streams open on this node, the limit per token (${limits.maxWatchesPerToken}); close watches you no longer need (one watch of a common prefix can replace several) or spread watchers over other nodes`,
      { limit: 'token', maxWatches: limits.maxWatchesPerToken },
      { 'retry-after': '5' },
    );
  }
}

async function serveWatch(ctx: RequestContext): Promise<void> {
  const app = ctx.app;
  const { cluster, kv, logger, limits } = app;
  const prefix = ctx.query.get('prefix') ?? '';
  if (prefix !== '') checkKey(prefix, 'prefix');
  const from = ctx.intParam('fromRevision');
  // fromRevision=0 means "from the first revision".
  const fromRevision = from === undefined ? undefined : Math.max(1, from);
  const token = ctx.principal?.name ?? '';
  reserve(ctx, token);
  const res = ctx.res;

  let live = false;
  let closed = false;
  /** The socket pushed back: queue until 'drain'. */
  let blocked = false;
  // Events not yet written: queue[head..]. The first `replayLeft` of them are
  // replayed history (bounded by the hub's history); the rest arrived live.
  let queue: WatchEvent[] = [];
  let head = 0;
  let replayLeft = 0;
  let queuedLiveBytes = 0;
  let stop = (): void => {};
  let overflow = (_why: string): void => {};

  const write = (chunk: string): void => {
    if (!res.write(chunk)) blocked = true;
  };
  const flush = (): void => {
    while (!closed && !blocked && head < queue.length) {
      const e = queue[head]!;
      queue[head++] = undefined as unknown as WatchEvent;
      if (replayLeft > 0) replayLeft--;
      else queuedLiveBytes -= eventBytes(e);
      write(sseEvent(e));
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  };
  const onEvent = (e: WatchEvent): void => {
    if (closed) return;
    if (!live) {
      // Replayed history arrives synchronously inside kv.watch, before the
      // headers are out (so a CompactedError can still become a 410).
      queue.push(e);
      replayLeft++;
      return;
    }
    if (!blocked && head === queue.length) {
      write(sseEvent(e));
      return;
    }
    queue.push(e);
    queuedLiveBytes += eventBytes(e);
    const liveQueued = queue.length - head - replayLeft;
    if (liveQueued > limits.watchMaxQueuedEvents) overflow(`${liveQueued} events queued (limit ${limits.watchMaxQueuedEvents})`);
    else if (res.writableLength + queuedLiveBytes > limits.watchMaxBufferedBytes) {
      overflow(`${res.writableLength + queuedLiveBytes} bytes unsent (limit ${limits.watchMaxBufferedBytes})`);
    }
  };
  const unsubscribe = (() => {
    // Count the slot from here on; kv.watch may throw (410 compacted).
    app.watchesByToken.set(token, (app.watchesByToken.get(token) ?? 0) + 1);
    try {
      return kv.watch(prefix, fromRevision, onEvent, {
        onCancel: (err) => {
          if (closed) return;
          // History was skipped (snapshot install): tell the client, then end.
          const wasBlocked = blocked;
          res.write(`event: error\ndata: ${JSON.stringify({ error: err.code, message: err.message, oldestRevision: err.oldestRevision })}\n\n`);
          stop();
          // A client that is not reading would hold the ended response's buffers: cut it.
          if (wasBlocked) res.destroy();
        },
      });
    } catch (err) {
      release();
      throw err;
    }
  })();
  function release(): void {
    const n = (app.watchesByToken.get(token) ?? 1) - 1;
    if (n <= 0) app.watchesByToken.delete(token);
    else app.watchesByToken.set(token, n);
  }

  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (!closed && !blocked && head === queue.length) write(': heartbeat\n\n');
    }, app.heartbeatMs);
    timer.unref();
    const cleanup = (): boolean => {
      if (closed) return false;
      closed = true;
      unsubscribe();
      clearInterval(timer);
      app.watches.delete(stop);
      release();
      queue = [];
      head = 0;
      res.off('drain', onDrain);
      resolve();
      return true;
    };
    stop = (): void => {
      if (cleanup() && !res.writableEnded) res.end();
    };
    overflow = (why: string): void => {
      const buffered = res.writableLength;
      if (!cleanup()) return;
      logger.warn(
        { event: 'watch_closed_slow_consumer', prefix, token, buffered, reason: why },
        `watch consumer too slow (${why}); closing its stream (it resumes from its last id when it reconnects)`,
      );
      // Destroying (not ending) frees the socket and everything buffered for it now.
      res.destroy();
    };
    const onDrain = (): void => {
      blocked = false;
      flush();
    };
    res.on('drain', onDrain);
    res.on('close', stop);
    app.watches.add(stop);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      [HEADER_SERVED_BY]: cluster.nodeName,
    });
    write(`retry: 1000\n: watching ${JSON.stringify(prefix)} from revision ${fromRevision ?? kv.revision + 1}\n\n`);
    live = true;
    flush();
  });
}

export const watchRoutes: Readonly<Record<string, Route>> = {
  GET: { auth: 'reader', query: ['prefix', 'fromRevision'], handle: serveWatch },
};
