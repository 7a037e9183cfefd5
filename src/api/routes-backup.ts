// Backups (SPEC §4 "Cluster administration"; docs/api.md "Backups"):
//   GET  /v1/cluster/backup    stream a consistent backup archive of this node's applied state
//   POST /v1/cluster/backups   the leader writes one into its backup dir now (forwarded to the leader)
//   GET  /v1/cluster/backups   the archives in this node's backup dir
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RequestContext, Route } from './context.js';
import { ApiError } from './errors.js';
import { onLeader } from './leader.js';
import type { BackupPort } from './ports.js';

function backupsOf(ctx: RequestContext): BackupPort {
  const b = ctx.app.cluster.backups;
  if (b === undefined) throw new ApiError('not_found', `${ctx.app.cluster.nodeName} does not take backups`);
  return b;
}

export const backupRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/cluster/backup': {
    GET: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const b = await backupsOf(ctx).open();
        ctx.res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-disposition': `attachment; filename="${b.filename}"`,
          'x-quorate-backup-index': String(b.index),
          'cache-control': 'no-store',
        });
        if (ctx.method === 'HEAD') {
          await (b.chunks as AsyncGenerator<Uint8Array>).return?.(undefined);
          ctx.res.end();
          return;
        }
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
