// GET /v1/alerts (the node's built-in alerts: active and recent; src/node/alerts.ts)
// and GET /v1/diagnostics (the diagnostic bundle of every member, a .tar.gz;
// src/node/diagnostics.ts) with GET /v1/diagnostics/node (one node's part, JSON,
// which the node assembling a bundle asks every other member for).
import type { RequestContext, Route } from './context.js';
import { ApiError } from './errors.js';
import type { AlertsPort, DiagnosticsPart, DiagnosticsPort } from './ports-ops.js';
import { historyJson } from './routes-cluster.js';
import { tarGz } from '../ops/tar.js';

/** How long the assembling node waits for each member's part. */
const PART_TIMEOUT_MS = 10_000;

function alertsOf(ctx: RequestContext): AlertsPort {
  const a = ctx.app.ops?.alerts;
  if (a === undefined) throw new ApiError('not_found', `${ctx.path} is served by \`quorate agent\` only`);
  return a;
}

function diagnosticsOf(ctx: RequestContext): DiagnosticsPort {
  const d = ctx.app.ops?.diagnostics;
  if (d === undefined) throw new ApiError('not_found', `${ctx.path} is served by \`quorate agent\` only`);
  return d;
}

async function peerPart(url: string, authorization: string | undefined): Promise<DiagnosticsPart> {
  const res = await fetch(`${url.replace(/\/+$/, '')}/v1/diagnostics/node`, {
    headers: authorization !== undefined ? { authorization } : {},
    signal: AbortSignal.timeout(PART_TIMEOUT_MS),
  });
  const text = await res.text();
  if (res.status !== 200) {
    let msg = text;
    try { msg = String((JSON.parse(text) as { message?: unknown }).message ?? text); } catch { /* not JSON */ }
    throw new Error(`HTTP ${res.status}: ${msg.slice(0, 300)}`);
  }
  const body = JSON.parse(text) as { files?: unknown };
  if (typeof body.files !== 'object' || body.files === null) throw new Error('the answer holds no files');
  const files: Record<string, string> = {};
  for (const [k, v] of Object.entries(body.files as Record<string, unknown>)) {
    // Each name is one plain file name: a member cannot write outside its directory.
    if (typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(k)) files[k] = v;
  }
  return { files };
}

const README = `quorate diagnostic bundle

manifest.json        who collected it, when, and which members answered
history.json         the cluster history (leadership, membership) as applied by the collecting node
nodes/NAME/          one directory per member:
  node.json          version, Node.js, platform, pid, uptime
  status.json        the node's own view (GET /v1/cluster/status)
  modes.json         failover mode, paused, drained
  health.json        its health checks (and, on the leader, the other members' as last polled)
  alerts.json        its built-in alerts, active and recent (GET /v1/alerts)
  metrics.txt        GET /metrics at collection time
  config.json        its config file as loaded, secrets redacted
  logs.jsonl         the newest log lines the agent keeps in memory (empty when not kept)
  error.txt          instead of the above when the member did not answer

Secrets are redacted: connection strings, credentials and query strings of URLs,
NAME=value pairs of commands whose NAME looks like a password, secret, token or
key, and every token and secret the node holds, wherever it appears.
`;

export const opsRoutes: Record<string, Record<string, Route>> = {
  '/v1/cluster/netdisk': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        const n = ctx.app.ops?.netdisk;
        if (n === undefined) throw new ApiError('not_found', `${ctx.path} is served by \`quorate agent\` only`);
        ctx.json(200, n.view());
      },
    },
  },
  '/v1/alerts': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        ctx.json(200, alertsOf(ctx).view());
      },
    },
  },
  '/v1/diagnostics/node': {
    GET: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const part = await diagnosticsOf(ctx).localPart();
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, files: part.files });
      },
    },
  },
  '/v1/diagnostics': {
    GET: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const diag = diagnosticsOf(ctx);
        const cluster = ctx.app.cluster;
        const st = cluster.status();
        const now = new Date();
        const stamp = now.toISOString().replace(/[:.]/g, '-');
        const root = `quorate-diagnostics-${st.haId.replace(/[^A-Za-z0-9_.-]/g, '_')}-${stamp}`;
        const auth = ctx.header('authorization');
        const members = st.peers.map((p) => ({ nodeName: p.nodeName, apiUrl: p.apiUrl, self: p.self }));
        if (!members.some((m) => m.self)) members.unshift({ nodeName: cluster.nodeName, apiUrl: undefined, self: true });
        const parts = await Promise.all(members.map(async (m) => {
          try {
            if (m.self) return { m, part: await diag.localPart() };
            if (m.apiUrl === undefined) throw new Error('no API URL is recorded for this member');
            return { m, part: await peerPart(m.apiUrl, auth) };
          } catch (e) {
            return { m, error: (e as Error).message };
          }
        }));
        const files: { path: string; content: string }[] = [];
        const manifest = {
          cluster: st.haId, collectedBy: cluster.nodeName, collectedAt: now.toISOString(), leader: st.leaderName ?? null, term: st.term,
          nodes: parts.map((p) => ({ nodeName: p.m.nodeName, apiUrl: p.m.apiUrl ?? null, ok: p.error === undefined, ...(p.error !== undefined ? { error: p.error } : {}) })),
        };
        files.push({ path: `${root}/manifest.json`, content: `${JSON.stringify(manifest, null, 2)}\n` });
        files.push({ path: `${root}/README.txt`, content: README });
        const h = cluster.clusterHistory();
        files.push({ path: `${root}/history.json`, content: `${JSON.stringify({ nodeName: cluster.nodeName, appliedIndex: h.appliedIndex, records: h.records.map(historyJson) }, null, 2)}\n` });
        for (const p of parts) {
          const dir = `${root}/nodes/${p.m.nodeName.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
          if (p.error !== undefined) files.push({ path: `${dir}/error.txt`, content: `${p.m.nodeName} (${p.m.apiUrl ?? 'no API URL'}) did not answer: ${p.error}\n` });
          else for (const [name, content] of Object.entries(p.part.files)) files.push({ path: `${dir}/${name}`, content });
        }
        const archive = tarGz(files, now);
        ctx.app.logger.info({ event: 'diagnostics_collected', by: ctx.principal?.name, nodes: manifest.nodes.length, failed: manifest.nodes.filter((n) => !n.ok).map((n) => n.nodeName), bytes: archive.length }, `diagnostic bundle collected (${archive.length} bytes)`);
        ctx.res.writeHead(200, {
          'content-type': 'application/gzip',
          'content-length': String(archive.length),
          'content-disposition': `attachment; filename="${root}.tar.gz"`,
          'cache-control': 'no-store',
        });
        ctx.res.end(archive);
      },
    },
  },
};
