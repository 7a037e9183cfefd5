// Backup verbs (SPEC §5 `quorate backup create|list|verify|restore`; docs/cli.md "Backups").
// create and list talk to a node's HTTP API; verify and restore work on local
// files (an archive, a stopped node's data dir), like init.
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { QuorateClient } from '../api/client.js';
import type { BackupInfo } from '../api/ports.js';
import { loadConfig } from '../config/index.js';
import { checkArchive } from '../node/backup-archive.js';
import { restoreBackup, verifyBackup, type Progress } from '../node/backup-restore.js';
import { listBackups } from '../node/backups.js';
import { UsageError, bool, str } from './args.js';
import { EXIT, cell, keyValues, objectTable, type Verb, type Context } from './command.js';
import { errorOf, stream } from './files.js';

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Progress on stderr, at most once per second (never with --json). */
function progressPrinter(ctx: Context): Progress {
  let last = 0;
  return (phase, bytes, total) => {
    const now = Date.now();
    if (ctx.json || now - last < 1000) return;
    last = now;
    ctx.io.err(`${phase}: ${mib(bytes)}${total > 0 ? ` of ${mib(total)} (${Math.round((100 * bytes) / total)}%)` : ''}`);
  };
}

function oneFile(ctx: Context, verb: string): string {
  const [file, ...extra] = ctx.args.positionals;
  if (file === undefined || extra.length > 0) throw new UsageError(`${verb} takes one archive file`, verb);
  return resolve(ctx.io.cwd, file);
}

const create: Verb = {
  name: 'backup create',
  usage: '[--out FILE]',
  description:
    'Without --out: POST /v1/cluster/backups (forwarded to the leader), which writes one archive into the leader\'s database.backup.dir (as scheduled backups are) and prints where. ' +
    'With --out FILE: streams GET /v1/cluster/backup from the node at --url into FILE (the leader\'s state after a read barrier, or a follower\'s as applied), showing progress, then checks the archive. ' +
    'An archive holds the whole replicated state at one index and a manifest (cluster id, index, term, time, version, SHA-256 of each part); it holds no secrets (tokens, cluster secret, keys).',
  flags: [{ name: 'out', type: 'string', value: 'FILE', help: 'download the archive into FILE (written as FILE.part, renamed when complete)' }],
  examples: ['quorate backup create', 'quorate backup create --out ./cluster-$(date +%F).qbak'],
  remote: true,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError('backup create takes no arguments (did you mean --out FILE?)', 'backup create');
    const out = str(ctx.args, 'out');
    if (out === undefined) {
      const r = (await ctx.client().request<{ nodeName: string; backup: BackupInfo }>('POST', '/v1/cluster/backups', { body: {}, write: true, extraMs: 10 * 60_000 })).body;
      const b = r.backup;
      ctx.print(r, () => keyValues([['written by', r.nodeName], ['file', b.path], ['index', String(b.index)], ['term', String(b.term)], ['size', mib(b.bytes)], ['taken at', b.takenAt]]));
      return EXIT.ok;
    }
    const path = resolve(ctx.io.cwd, out);
    const part = `${path}.part`;
    const token = ctx.token();
    const url = ctx.urls()[0]!;
    const res = await fetch(`${url}/v1/cluster/backup`, { headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} }).catch((e: unknown) => {
      throw new Error(`cannot reach ${url} (${(e as Error).message}); is the node running? pass --url to reach another node`);
    });
    if (res.status !== 200 || res.body === null) {
      const text = await res.text();
      let msg = text;
      try { msg = String((JSON.parse(text) as { message?: unknown }).message ?? text); } catch { /* not JSON */ }
      throw new Error(`GET /v1/cluster/backup on ${url} answered HTTP ${res.status}: ${msg.slice(0, 500)}`);
    }
    const progress = progressPrinter(ctx);
    let bytes = 0;
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (c: Buffer) => { bytes += c.length; progress('downloaded', bytes, 0); });
    try {
      await pipeline(body, createWriteStream(part, { mode: 0o600 }));
      const r = await checkArchive(part, (n, t) => progress('checked', n, t));
      await rename(part, path);
      const m = r.manifest;
      ctx.print({ file: path, bytes: r.fileBytes, manifest: m }, () => keyValues([['file', path], ['index', String(m.index)], ['term', String(m.term)], ['size', mib(r.fileBytes)], ['taken at', m.takenAt], ['taken by', m.takenBy]]));
      return EXIT.ok;
    } catch (e) {
      await unlink(part).catch(() => undefined);
      throw new Error(`the download from ${url} did not complete (${(e as Error).message}); nothing was kept at ${path}`);
    }
  },
};

const list: Verb = {
  name: 'backup list',
  usage: '[--dir DIR] [--all]',
  description:
    'Calls GET /v1/cluster/backups: the archives in the backup dir of the node at --url (scheduled backups are written by whichever node led at the time). ' +
    '--all asks every member (from GET /v1/cluster/status) and merges their lists. --dir DIR lists a local directory instead (no node involved).',
  flags: [
    { name: 'dir', type: 'string', value: 'DIR', help: 'list the archives in a local directory' },
    { name: 'all', type: 'boolean', help: 'ask every member of the cluster' },
  ],
  examples: ['quorate backup list', 'quorate backup list --all --json', 'quorate backup list --dir /mnt/backups'],
  remote: true,
  async run(ctx) {
    const dir = str(ctx.args, 'dir');
    let rows: (BackupInfo & { node?: string })[];
    if (dir !== undefined) {
      rows = await listBackups(resolve(ctx.io.cwd, dir));
    } else if (bool(ctx.args, 'all')) {
      const s = await ctx.client().clusterStatus();
      const urls = (s.peers ?? []).map((p) => (p.self ? ctx.urls()[0]! : p.apiUrl)).filter((u): u is string => typeof u === 'string');
      rows = [];
      for (const u of urls) {
        const token = ctx.token();
        try {
          const r = (await new QuorateClient({ urls: [u], ...(token !== undefined ? { token } : {}) }).request<{ nodeName: string; backups: BackupInfo[] }>('GET', '/v1/cluster/backups')).body;
          rows.push(...r.backups.map((b) => ({ ...b, node: r.nodeName })));
        } catch (e) {
          ctx.io.err(`warning: ${u} did not answer (${(e as Error).message}); its backups are not listed`);
        }
      }
      rows.sort((a, b) => (a.takenAt < b.takenAt ? 1 : -1));
    } else {
      const r = (await ctx.client().request<{ nodeName: string; backups: BackupInfo[] }>('GET', '/v1/cluster/backups')).body;
      rows = r.backups.map((b) => ({ ...b, node: r.nodeName }));
    }
    ctx.print({ backups: rows }, () => rows.length === 0 ? 'no backups' : objectTable(rows.map((b) => ({
      ...(b.node !== undefined ? { node: b.node } : {}), takenAt: b.takenAt, index: b.index, term: b.term, size: mib(b.bytes), kind: b.kind, file: b.path, ...(b.error !== undefined ? { error: b.error } : {}),
    })), ['node', 'takenAt', 'index', 'term', 'size', 'kind', 'file']));
    return EXIT.ok;
  },
};

const verify: Verb = {
  name: 'backup verify',
  usage: 'FILE',
  description:
    'Reads the whole archive and checks the SHA-256 of every part against its manifest (a single changed byte anywhere fails, naming where), restores the state into a scratch copy of the state machines under the system temp dir, ' +
    'takes the restored state\'s snapshot and compares it with the manifest again. Exit 0 when it verifies, 1 otherwise. Local: no node involved.',
  flags: [],
  examples: ['quorate backup verify backups/quorate-prod-20260101T020000Z-i12345.qbak'],
  remote: false,
  async run(ctx) {
    const file = oneFile(ctx, 'backup verify');
    const started = Date.now();
    const r = await verifyBackup(file, tmpdir(), progressPrinter(ctx));
    const m = r.manifest;
    ctx.print({ ok: true, file, bytes: r.fileBytes, manifest: m, checksums: r.checksums, ms: Date.now() - started }, () => [
      `${file}: OK (every part matches the manifest, and the restored state gives the same parts)`,
      keyValues([['cluster', m.clusterId], ['index', String(m.index)], ['term', String(m.term)], ['taken at', m.takenAt], ['taken by', m.takenBy], ['size', mib(r.fileBytes)],
        ...Object.entries(r.checksums).map(([k, v]) => [`checksum ${k}`, cell(v)] as const)]),
    ].join('\n'));
    return EXIT.ok;
  },
};

const restore: Verb = {
  name: 'backup restore',
  usage: 'FILE --config F | FILE --running --confirm',
  description:
    'Verifies the archive, then makes the data dir of the node configured in F (which must hold no node data: move an old one aside; cluster.peerEndpoints must be empty, cluster.haId the backup\'s) ' +
    'the first node of a new one-node cluster holding the backup\'s state at its index. Start it with `quorate agent --config F`, then enroll the other nodes. ' +
    'Tokens and the cluster secret are not in backups: the data dir keeps (or `quorate init` writes) its own. Local: no node involved. ' +
    'With --running --confirm: sends the archive to a running cluster (POST /v1/cluster/restore, admin token): the leader checks it, then replaces the data (KV, SQL, files, queues, locks, outbox) on every node through the log; membership, tokens, revocations and the audit log stay.',
  flags: [
    { name: 'config', type: 'string', value: 'F', help: 'the config of the node to restore into (default ./quorate.json)' },
    { name: 'running', type: 'boolean', help: 'restore into the running cluster at --url instead (POST /v1/cluster/restore)' },
    { name: 'confirm', type: 'boolean', help: 'with --running: yes, replace the running cluster\'s data' },
  ],
  examples: ['quorate backup restore cluster.qbak --config /etc/quorate/quorate.json && quorate agent --config /etc/quorate/quorate.json', 'quorate backup restore cluster.qbak --running --confirm --url http://node1:7101'],
  remote: true,
  async run(ctx) {
    const file = oneFile(ctx, 'backup restore');
    if (bool(ctx.args, 'running')) return restoreRunning(ctx, file);
    const configPath = resolve(ctx.io.cwd, str(ctx.args, 'config') ?? 'quorate.json');
    const config = loadConfig(configPath, ctx.io.env);
    const r = await restoreBackup(file, config, progressPrinter(ctx));
    const m = r.manifest;
    ctx.print({ ok: true, dataDir: r.dataDir, nodeId: r.nodeId, manifest: m }, () => [
      `restored ${file} into ${r.dataDir}: a new one-node cluster at index ${m.index} (term ${m.term}, taken ${m.takenAt} by ${m.takenBy})`,
      `next: quorate agent --config ${configPath}; then enroll the other nodes (quorate join-token create, quorate enroll)`,
    ].join('\n'));
    return EXIT.ok;
  },
};

/** `backup restore FILE --running --confirm`: POST /v1/cluster/restore with the archive streamed. */
async function restoreRunning(ctx: Context, file: string): Promise<number> {
  if (!bool(ctx.args, 'confirm')) throw new UsageError('--running replaces the data of the running cluster on every node: add --confirm to do it', 'backup restore');
  let length: number;
  try {
    length = statSync(file).size;
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'backup restore');
  }
  const { res, url } = await stream(ctx, 'POST', '/v1/cluster/restore?confirm=true', { body: () => createReadStream(file), length });
  if (res.statusCode !== 200) throw await errorOf(res, url);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const r = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { clusterId: string; backupIndex: number; takenAt: string; index: number; machines: string[] };
  ctx.print(r, () => `restored ${file} into the running cluster ${r.clusterId}: the state of ${r.machines.join(', ')} as of index ${r.backupIndex} (taken ${r.takenAt}), in effect from log index ${r.index} on every node`);
  return EXIT.ok;
}

export const backupCommands: readonly Verb[] = [create, list, verify, restore];
