// `quorate alerts` (GET /v1/alerts of every member) and `quorate diagnostics -o FILE`
// (GET /v1/diagnostics); docs/cli.md "Alerts and diagnostics".
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { QuorateClient } from '../api/client.js';
import { UsageError, bool, str } from './args.js';
import { EXIT, objectTable, type Verb, type Context } from './command.js';

interface AlertRow { id: string; name: string; severity: string; scope: string; node: string; subject?: string; summary: string; since: string; firedAt: string; resolvedAt?: string; status?: string }
interface AlertsView { nodeName: string; leader: string | null; active: AlertRow[]; recent: AlertRow[]; webhook: { configured: boolean; signed: boolean; delivered: number; failed: number; pending: number; lastError: string | null } }

/** Every member's API URL (the --url node first), from its status. */
async function memberUrls(ctx: Context): Promise<string[]> {
  const s = await ctx.client().clusterStatus();
  const first = ctx.urls()[0]!;
  const others = (s.peers ?? []).filter((p) => !p.self).map((p) => p.apiUrl).filter((u): u is string => typeof u === 'string' && u !== '');
  return [first, ...others.filter((u) => u !== first)];
}

const alerts: Verb = {
  name: 'alerts',
  usage: '[--local] [--recent N]',
  description:
    'Calls GET /v1/alerts on every member (their URLs from GET /v1/cluster/status; --local: only the node at --url) and merges what is firing. ' +
    'Cluster alerts (quorum_lost, replication_lag, leader_flapping) are evaluated by the leader; node alerts (no_leader, disk_low, health_check_failing, storage_failing, split_brain) by each node. ' +
    'Thresholds and the webhook: config section `alerts` (docs/configuration.md). A member that does not answer is listed as unreachable.',
  flags: [
    { name: 'local', type: 'boolean', help: 'ask only the node at --url' },
    { name: 'recent', type: 'int', value: 'N', help: 'also list the newest N notifications (default 10; 0 = none)' },
  ],
  examples: ['quorate alerts', 'quorate alerts --json', 'quorate alerts --local --url http://10.0.1.11:7101'],
  remote: true,
  async run(ctx) {
    const urls = bool(ctx.args, 'local') ? [ctx.urls()[0]!] : await memberUrls(ctx);
    const token = ctx.token();
    const results = await Promise.all(urls.map(async (url) => {
      try {
        const c = url === ctx.urls()[0] ? ctx.client() : new QuorateClient({ urls: [url], ...(token !== undefined ? { token } : {}), timeoutMs: 5000 });
        return { url, view: (await c.request<AlertsView>('GET', '/v1/alerts')).body };
      } catch (e) {
        return { url, error: (e as Error).message };
      }
    }));
    const active = new Map<string, AlertRow>();
    for (const r of results) for (const a of r.view?.active ?? []) if (!active.has(a.id)) active.set(a.id, a);
    const recentN = Number(str(ctx.args, 'recent') ?? '10');
    const recent = results.flatMap((r) => r.view?.recent ?? []).sort((a, b) => (b.resolvedAt ?? b.firedAt).localeCompare(a.resolvedAt ?? a.firedAt)).slice(0, recentN);
    const unreachable = results.filter((r) => r.error !== undefined).map((r) => ({ url: r.url, error: r.error! }));
    const out = { active: [...active.values()], recent, unreachable, nodes: results.filter((r) => r.view !== undefined).map((r) => r.view!) };
    ctx.print(out, () => {
      const lines: string[] = [];
      lines.push(out.active.length === 0 ? 'no alerts firing' : objectTable(out.active.map((a) => ({ ...a, summary: a.summary.slice(0, 100) })), ['severity', 'name', 'node', 'subject', 'since', 'summary']));
      if (recent.length > 0) lines.push('', 'recent:', objectTable(recent.map((a) => ({ at: a.resolvedAt ?? a.firedAt, status: a.status, name: a.name, node: a.node, subject: a.subject })), ['at', 'status', 'name', 'node', 'subject']));
      for (const v of out.nodes) {
        const w = v.webhook;
        if (w.configured) lines.push(`${v.nodeName}: webhook ${w.signed ? 'signed' : 'unsigned'}, ${w.delivered} delivered, ${w.failed} failed, ${w.pending} pending${w.lastError ? `; last error: ${w.lastError}` : ''}`);
      }
      for (const u of unreachable) lines.push(`unreachable: ${u.url}: ${u.error}`);
      return lines.join('\n');
    });
    return EXIT.ok;
  },
};

const diagnostics: Verb = {
  name: 'diagnostics',
  usage: '-o FILE',
  description:
    'Streams GET /v1/diagnostics (admin) from the node at --url into FILE (a .tar.gz; written as FILE.part, renamed when complete). ' +
    'That node asks every other member for its part with the same token; a member that does not answer is named in manifest.json and nodes/NAME/error.txt. ' +
    'Secrets are redacted (docs/operations.md "Diagnostic bundle").',
  flags: [{ name: 'out', type: 'string', value: 'FILE', help: 'where to write the archive (-o FILE)' }],
  examples: ['quorate diagnostics -o quorate-diag.tar.gz', 'tar tzf quorate-diag.tar.gz'],
  remote: true,
  async run(ctx) {
    const out = str(ctx.args, 'out');
    if (out === undefined || out === '') throw new UsageError('diagnostics needs -o FILE (where to write the .tar.gz)', 'diagnostics');
    const path = resolve(ctx.io.cwd, out);
    const part = `${path}.part`;
    const token = ctx.token();
    const url = ctx.urls()[0]!;
    const res = await ctx.fetch()(`${url}/v1/diagnostics`, { headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} }).catch((e: unknown) => {
      throw new Error(`cannot reach ${url} (${(e as Error).message}); is the node running? pass --url to reach another node`);
    });
    if (res.status !== 200 || res.body === null) {
      const text = await res.text();
      let msg = text;
      try { msg = String((JSON.parse(text) as { message?: unknown }).message ?? text); } catch { /* not JSON */ }
      throw new Error(`GET /v1/diagnostics on ${url} answered HTTP ${res.status}: ${msg.slice(0, 500)}${res.status === 403 || res.status === 401 ? ' (the bundle needs an admin token: --token or --data-dir)' : ''}`);
    }
    let bytes = 0;
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (c: Buffer) => { bytes += c.length; });
    try {
      await pipeline(body, createWriteStream(part, { mode: 0o600 }));
      await rename(part, path);
    } catch (e) {
      await unlink(part).catch(() => undefined);
      throw new Error(`the download from ${url} did not complete (${(e as Error).message}); nothing was kept at ${path}`);
    }
    ctx.print({ file: path, bytes }, () => `wrote ${path} (${bytes} bytes); list it with \`tar tzf ${out}\``);
    return EXIT.ok;
  },
};

export const opsCommands: readonly Verb[] = [alerts, diagnostics];
