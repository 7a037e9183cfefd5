// Backups (SPEC §4 "Cluster administration"; docs/api.md "Backups"):
//   GET  /v1/cluster/backup    stream a consistent backup archive of this node's applied state
//   POST /v1/cluster/backups   the leader writes one into its backup dir now (forwarded to the leader)
//   GET  /v1/cluster/backups   the archives in this node's backup dir
//   POST /v1/cluster/restore?confirm=true   restore an archive (the body) into this running cluster through the log
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RequestContext, Route } from './context.js';
import { ApiError } from './errors.js';
import { forwardToLeader, onLeader } from './leader.js';
import type { BackupPort } from './ports.js';

function backupsOf(ctx: RequestContext): BackupPort {
  const b = ctx.app.cluster.backups;
  if (b === undefined) throw new ApiError('not_found', `${ctx.app.cluster.nodeName} does not take backups`);
  return b;
}

export const backupRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/cluster/restore': {
    POST: {
      auth: 'admin',
      query: ['confirm'],
      handle: async (ctx) => {
        const r = ctx.app.cluster.clusterRestore;
        if (r === undefined) throw new ApiError('not_found', `${ctx.app.cluster.nodeName} does not restore backups`);
        if (ctx.query.get('confirm') !== 'true') {
          throw new ApiError('confirm_required', 'restoring a backup replaces the data of the running cluster (KV, SQL, files, queues, locks, outbox) on every node; add ?confirm=true to do it (membership, tokens, revocations and the audit log are kept)', { field: 'confirm' });
        }
        const ct = ctx.header('content-type') ?? '';
        if (ct !== '' && !/^application\/octet-stream\s*(;|$)/i.test(ct)) throw new ApiError('invalid_content_type', `send the archive as Content-Type: application/octet-stream, got ${JSON.stringify(ct.slice(0, 80))}`);
        // The archive is streamed to the leader (never read into memory here), with an idle deadline only.
        ctx.streamedBody();
        if (!ctx.app.cluster.isLeader()) return forwardToLeader(ctx, true, 10 * 60_000, false, true);
        ctx.auditTarget = 'cluster state';
        const result = await r.restore(ctx.req);
        ctx.auditTarget = `backup of ${result.clusterId} at index ${result.backupIndex}`;
        ctx.app.logger.warn({ event: 'cluster_restore_done', by: ctx.principal?.name, backupIndex: result.backupIndex, index: result.index }, `backup of ${result.clusterId} at index ${result.backupIndex} restored into the running cluster (entry ${result.index})`);
        ctx.json(200, result);
      },
    },
  },
  '/v1/cluster/backup': {
    GET: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        if (ctx.method === 'HEAD') {
          // No capture for a HEAD: only what a GET would answer with.
          backupsOf(ctx);
          ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' });
          ctx.res.end();
          return;
        }
        const b = await backupsOf(ctx).open();
        ctx.res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-disposition': `attachment; filename="${b.filename}"`,
          'x-quorate-backup-index': String(b.index),
          'cache-control': 'no-store',
        });
        await pipeline(Readable.from(b.chunks, { objectMode: false }), ctx.res);
      },
    },
  },
  '/v1/cluster/backups': {
    GET: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const b = backupsOf(ctx);
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, dir: b.dir, backups: await b.list() });
      },
    },
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        await ctx.jsonBody(true); // an optional empty JSON object
        await onLeader(ctx, true, async () => {
          const info = await backupsOf(ctx).writeToDir('manual');
          ctx.app.logger.info({ event: 'backup_created', by: ctx.principal?.name, file: info.file, index: info.index }, `backup ${info.file} created on request`);
          ctx.json(200, { nodeName: ctx.app.cluster.nodeName, backup: info });
        }, 10 * 60_000);
      },
    },
  },
};
