// This node's part of the diagnostic bundle (GET /v1/diagnostics,
// `quorate diagnostics -o FILE`; docs/operations.md "Diagnostic bundle"):
// its status, modes, health checks, alerts, metrics, the config with secrets
// redacted, and the recent log lines the agent keeps in memory (./log-ring.ts).
//
// Secrets never leave: the config's connection strings, URL credentials and
// query strings, and NAME=value pairs of commands whose NAME looks like a
// password/secret/token/key are replaced by "<redacted>"; then every file is
// scrubbed of the secrets this node holds (admin token, managed tokens of
// tokens.json, the cluster secret, the alerts secret) wherever they appear.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AppCoordination } from '../api/ports-app.js';
import type { AlertsPort, DiagnosticsPart, DiagnosticsPort } from '../api/ports-ops.js';
import type { ClusterControl } from '../api/ports.js';
import type { QuorateConfig } from '../config/index.js';
import type { LogRing } from './log-ring.js';
import { VERSION } from './status.js';

export const REDACTED = '<redacted>';
const SECRET_NAME = /(pass(word)?|secret|token|api[_-]?key|credential)/i;

/** A URL without its user info and query string. */
function redactUrl(s: string): string {
  try {
    const u = new URL(s);
    if (u.username === '' && u.password === '' && u.search === '' && u.hash === '') return s;
    const had = u.search !== '' || u.hash !== '';
    return `${u.protocol}//${u.host}${u.pathname}${had ? `?${REDACTED}` : ''}`;
  } catch {
    return s;
  }
}

/** NAME=value (and --name=value) where NAME looks like a secret. */
function redactCommand(s: string): string {
  return s.replace(/([A-Za-z0-9_.-]+)=("[^"]*"|'[^']*'|\S+)/g, (m, name: string) => (SECRET_NAME.test(name) ? `${name}=${REDACTED}` : m));
}

function redactValue(key: string, v: unknown): unknown {
  if (typeof v === 'string') {
    if (v === '') return v;
    if (/connectionString/i.test(key)) return REDACTED;
    if (/File$/.test(key) || /dir$/i.test(key)) return v; // paths, not contents
    if (SECRET_NAME.test(key)) return REDACTED;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return redactUrl(v);
    return redactCommand(v);
  }
  if (Array.isArray(v)) return v.map((x) => redactValue(key, x));
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactValue(k, x)]));
  return v;
}

/** The config as loaded, with secrets redacted (see the top of this file). */
export function redactConfig(config: QuorateConfig): Record<string, unknown> {
  return redactValue('', JSON.parse(JSON.stringify(config)) as unknown) as Record<string, unknown>;
}

function readTrim(path: string): string | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
}

/** The secrets this node can read: they must not appear anywhere in the bundle. */
export function knownSecrets(config: QuorateConfig): string[] {
  const out = new Set<string>();
  for (const f of [config.security.adminTokenFile, join(config.node.dataDir, 'admin.token'), config.security.clusterSecretFile, config.alerts.secretFile]) {
    if (f === '') continue;
    const s = readTrim(f);
    if (s !== undefined) out.add(s);
  }
  try {
    const tokens = JSON.parse(readFileSync(join(config.node.dataDir, 'tokens.json'), 'utf8')) as unknown;
    if (Array.isArray(tokens)) for (const t of tokens) if (typeof (t as { token?: unknown }).token === 'string') out.add((t as { token: string }).token);
  } catch { /* no tokens file */ }
  for (const s of [config.database.external.connectionString, config.redis.connectionString]) if (s !== '' && /[:@]/.test(s) && s.includes('@')) out.add(s);
  // Very short values would blank unrelated text; such secrets are refused elsewhere anyway.
  return [...out].filter((s) => s.length >= 8);
}

/** Replaces every occurrence of each secret (and its hex/base64 forms when they differ) in `text`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let t = text;
  for (const s of secrets) {
    for (const form of new Set([s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('hex')])) t = t.split(form).join(REDACTED);
  }
  return t;
}

export interface DiagnosticsSources {
  readonly config: QuorateConfig;
  readonly cluster: ClusterControl;
  readonly coord?: AppCoordination;
  readonly alerts?: AlertsPort;
  readonly logs?: LogRing;
}

export class NodeDiagnostics implements DiagnosticsPort {
  readonly #s: DiagnosticsSources;

  constructor(s: DiagnosticsSources) {
    this.#s = s;
  }

  async localPart(): Promise<DiagnosticsPart> {
    const { config, cluster, coord, alerts, logs } = this.#s;
    const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;
    const files: Record<string, string> = {
      'node.json': json({ nodeName: cluster.nodeName, version: VERSION, node: process.version, platform: `${process.platform} ${process.arch}`, pid: process.pid, uptimeSeconds: Math.round(process.uptime()), collectedAt: new Date().toISOString() }),
      'status.json': json(cluster.status()),
      'modes.json': json(cluster.modes()),
      'config.json': json(redactConfig(config)),
      'metrics.txt': await cluster.metricsText(),
    };
    const health = coord?.health();
    files['health.json'] = json({ checks: health ?? null, peers: coord?.peerHealth() ?? {} });
    if (alerts !== undefined) files['alerts.json'] = json(alerts.view());
    files['logs.jsonl'] = logs !== undefined ? logs.text() : '';
    const secrets = knownSecrets(config);
    return { files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, scrub(v, secrets)])) };
  }
}
