// loadConfig / parseConfig: file → env overrides → schema (types, defaults,
// unknown keys) → keys for unbuilt features (./unbuilt.ts) → cross-key rules →
// path resolution. Any problem is one
// ConfigError listing every issue by key path.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { applyEnvOverrides, type AppliedOverride } from './env.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import { configSchema, parseEndpoint, type RawConfig } from './schema.js';
import { unbuiltIssues } from './unbuilt.js';
import { redisIssues } from './redis-rules.js';
import { externalIssues } from './external-rules.js';
import { vipChecks } from './vip-rules.js';

/** The validated configuration: defaults filled, paths absolute, derived values set. */
export type QuorateConfig = Omit<RawConfig, 'database'> & {
  /**
   * writeQuorum stays undefined when the file does not set it: it then means a
   * majority of the voters *in the current membership*, which the node knows
   * and this file does not (a peer may be an observer or a DR node).
   */
  readonly database: RawConfig['database'];
};

export interface ParseOptions {
  /** Directory relative paths resolve against (the config file's). Default: process.cwd(). */
  readonly baseDir?: string;
  /** Prefix for error messages, usually the file path. */
  readonly source?: string;
}

/** Reads and validates a config file. Throws ConfigError (code 'invalid_config'). */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): QuorateConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'file not found (create one with `quorate init`)' : e.message;
    throw new ConfigError([{ path: '', message: `cannot read config ${path}: ${why}` }], { cause: err });
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([{ path: '', message: `${path} is not valid JSON: ${(err as Error).message}` }], { cause: err });
  }
  return parseConfig(obj, env, { baseDir: dirname(resolve(path)), source: path });
}

/** Validates an already-parsed config object. Throws ConfigError (code 'invalid_config'). */
export function parseConfig(obj: unknown, env: NodeJS.ProcessEnv = process.env, options: ParseOptions = {}): QuorateConfig {
  const srcOpt = options.source !== undefined ? { source: options.source } : {};
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError([{ path: '', message: `the config must be a JSON object, got ${describe(obj)}` }], srcOpt);
  }
  const { merged, applied } = applyEnvOverrides(obj as Record<string, unknown>, env);
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    throw new ConfigError(withEnvNames(parsed.error.issues.flatMap((i) => describeIssue(i, merged)), applied), srcOpt);
  }
  const raw = parsed.data;
  const unbuilt = unbuiltIssues(raw);
  // One issue per key: a key refused as unbuilt gets no cross-key rule on top.
  const issues = [...unbuilt, ...[...crossChecks(raw), ...redisIssues(raw), ...externalIssues(raw)].filter((i) => !unbuilt.some((u) => u.path === i.path))];
  if (issues.length > 0) throw new ConfigError(withEnvNames(issues, applied), srcOpt);
  return finish(raw, options.baseDir ?? process.cwd());
}

/** Number of voters the file implies: this node (unless dr) plus every peer endpoint. */
export function votersOf(cfg: Pick<RawConfig, 'node' | 'cluster'>): number {
  return cfg.cluster.peerEndpoints.length + (cfg.node.role === 'dr' ? 0 : 1);
}

export function majorityOf(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

function crossChecks(c: RawConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  const cl = c.cluster;

  if (cl.electionTimeoutMs < 5 * cl.heartbeatIntervalMs) {
    add('cluster.electionTimeoutMs', `must be at least 5 × heartbeatIntervalMs (${5 * cl.heartbeatIntervalMs}), got ${cl.electionTimeoutMs}`);
  }

  // Peers: no duplicates, none equal to this node.
  const api = parseEndpoint(c.node.apiAddress);
  const peer = parseEndpoint(c.node.peerAddress);
  const self = c.node.advertisePeerUrl !== '' ? parseEndpoint(c.node.advertisePeerUrl) : undefined;
  const seen = new Map<string, number>();
  cl.peerEndpoints.forEach((s, i) => {
    const e = parseEndpoint(s);
    if (!e) return;
    const key = `${e.host}:${e.port}`;
    const first = seen.get(key);
    if (first !== undefined) add(`cluster.peerEndpoints[${i}]`, `duplicates cluster.peerEndpoints[${first}] (${key})`);
    else seen.set(key, i);
    if (self && self.host === e.host && self.port === e.port) {
      add(`cluster.peerEndpoints[${i}]`, `is this node's own node.advertisePeerUrl (${c.node.advertisePeerUrl}); list only the other nodes`);
    } else if (peer && !isWildcard(peer.host) && peer.host === e.host && peer.port === e.port) {
      add(`cluster.peerEndpoints[${i}]`, `is this node's own node.peerAddress (${c.node.peerAddress}); list only the other nodes`);
    }
  });
  if (api && peer && api.port === peer.port && (api.host === peer.host || isWildcard(api.host) || isWildcard(peer.host))) {
    add('node.peerAddress', `must not use the same port as node.apiAddress (${c.node.apiAddress}), got ${c.node.peerAddress}`);
  }

  // Jobs: unique names; "backup" is the scheduled backup's (database.backup).
  const jobNames = new Map<string, number>();
  c.jobs.forEach((j, i) => {
    const first = jobNames.get(j.name);
    if (first !== undefined) add(`jobs[${i}].name`, `duplicates jobs[${first}].name (${JSON.stringify(j.name)}): job names must be unique`);
    else if (j.name === 'backup') add(`jobs[${i}].name`, '"backup" is the name of the scheduled backup (database.backup); choose another name');
    else jobNames.set(j.name, i);
  });

  // Quorum.
  const voters = votersOf(c);
  if (voters === 0) {
    add('cluster.peerEndpoints', 'a dr node needs at least one peer to replicate from, got none');
  } else {
    const majority = majorityOf(voters);
    const wq = c.database.writeQuorum;
    const what = `${voters} voter${voters === 1 ? '' : 's'} (${c.node.role === 'dr' ? '' : 'this node + '}${cl.peerEndpoints.length} peerEndpoints)`;
    if (wq !== undefined && wq < majority) add('database.writeQuorum', `must be at least a majority of the ${what}: ${majority}, got ${wq}`);
    if (wq !== undefined && wq > voters) add('database.writeQuorum', `must be at most the number of voters, ${what}, got ${wq}`);
  }
  if (c.node.role === 'observer' && cl.peerEndpoints.length === 0) {
    add('node.role', 'an observer never leads, so a cluster of one observer has no leader: add peerEndpoints or use role "voter"');
  }

  // health.checks: one kind each, unique names.
  const names = new Set<string>();
  c.health.checks.forEach((h, i) => {
    const kinds = [h.command !== undefined && 'command', h.url !== undefined && 'url', h.builtin !== undefined && 'builtin'].filter(Boolean);
    if (kinds.length !== 1) add(`health.checks[${i}]`, `must have exactly one of command, url, builtin, got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
    if (names.has(h.name)) add(`health.checks[${i}].name`, `duplicates another check's name ${JSON.stringify(h.name)}`);
    if (h.builtin === 'redis' && !c.redis.enabled) add(`health.checks[${i}].builtin`, '"redis" checks the node\'s Redis connection, which exists only with redis.enabled: true (and redis.connectionString); enable Redis or remove the check');
    names.add(h.name);
  });
  if (c.health.failoverOnFailure && !c.health.checks.some((h) => h.critical)) {
    add('health.failoverOnFailure', 'needs at least one check with "critical": true (only a failing critical check moves leadership)');
  }

  // The rules of Redis and coordination "redis": ./redis-rules.ts; of the
  // virtual IP and fencing: ./vip-rules.ts; of external-shared:
  // ./external-rules.ts.
  issues.push(...vipChecks(cl));

  // Plain-TCP peer traffic only on loopback. "auto" is plain TCP on a
  // loopback-only cluster and the cluster CA's mutual TLS 1.3 anywhere else
  // (src/node/tls-auto.ts), so only "off" has the rule.
  const tlsMode = c.security.tls;
  if (tlsMode === 'off') {
    const plain = 'security.tls "off" is accepted only when every peer address is loopback';
    const fix = 'or set security.tls to "auto" (certificates from the cluster CA) or {"certFile","keyFile","caFile"} (your own PKI) to run peers over mutual TLS';
    if (peer && !isLoopback(peer.host)) {
      add('node.peerAddress', `${plain}; node.peerAddress binds ${peer.host}${isWildcard(peer.host) ? ' (every interface)' : ''}: bind it to 127.0.0.1 (e.g. "127.0.0.1:${peer.port}"), ${fix}`);
    }
    if (self && !isLoopback(self.host)) {
      add('node.advertisePeerUrl', `${plain}; node.advertisePeerUrl is ${self.host}: advertise a loopback address (e.g. "http://127.0.0.1:${self.port}"), ${fix}`);
    }
    cl.peerEndpoints.forEach((s, i) => {
      const e = parseEndpoint(s);
      if (e && !isLoopback(e.host)) add(`cluster.peerEndpoints[${i}]`, `${plain}; this peer is ${e.host}: list loopback peers only, ${fix}`);
    });
  }
  if (c.security.apiTls === 'auto' && tlsMode !== 'auto') {
    add('security.apiTls', `"auto" serves the API with a certificate from the cluster CA, which exists only with security.tls "auto" (security.tls is ${JSON.stringify(tlsMode)}): set security.tls to "auto", or give security.apiTls {"certFile","keyFile"}`);
  }
  return issues;
}

function finish(c: RawConfig, baseDir: string): QuorateConfig {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const dataDir = abs(c.node.dataDir);
  const plainPeers = c.security.tls === 'off';
  const peerScheme = plainPeers ? 'http' : 'https';
  const api = parseEndpoint(c.node.apiAddress)!;
  const peer = parseEndpoint(c.node.peerAddress)!;
  const tls = c.security.tls;
  return {
    node: {
      ...c.node,
      dataDir,
      advertiseApiUrl: c.node.advertiseApiUrl !== '' ? c.node.advertiseApiUrl : url(c.security.apiTls ? 'https' : 'http', advertisedHost(api.host), api.port),
      advertisePeerUrl: c.node.advertisePeerUrl !== '' ? c.node.advertisePeerUrl : url(peerScheme, advertisedHost(peer.host), peer.port),
    },
    cluster: {
      ...c.cluster,
      peerEndpoints: c.cluster.peerEndpoints.map((s) => {
        const e = parseEndpoint(s)!;
        return e.scheme === '' ? url(peerScheme, e.host, e.port) : s.replace(/\/$/, '');
      }),
    },
    database: {
      ...c.database,
      ...(c.database.writeQuorum !== undefined ? { writeQuorum: c.database.writeQuorum } : {}),
      backup: { ...c.database.backup, dir: abs(c.database.backup.dir) },
    },
    jobs: c.jobs,
    redis: c.redis,
    health: c.health,
    hooks: c.hooks,
    outbox: c.outbox,
    alerts: { ...c.alerts, secretFile: c.alerts.secretFile !== '' ? abs(c.alerts.secretFile) : '' },
    drills: c.drills,
    security: {
      ...c.security,
      tls: typeof tls === 'string' ? tls : { certFile: abs(tls.certFile), keyFile: abs(tls.keyFile), caFile: abs(tls.caFile) },
      ...(c.security.apiTls === 'auto' ? { apiTls: 'auto' as const } : c.security.apiTls ? { apiTls: { certFile: abs(c.security.apiTls.certFile), keyFile: abs(c.security.apiTls.keyFile) } } : {}),
      adminTokenFile: c.security.adminTokenFile !== '' ? abs(c.security.adminTokenFile) : join(dataDir, 'admin.token'),
      clusterSecretFile: c.security.clusterSecretFile !== '' ? abs(c.security.clusterSecretFile) : join(dataDir, 'cluster.secret'),
    },
  };
}

function url(scheme: string, host: string, port: number): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

export function isLoopback(host: string): boolean {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.startsWith('::ffff:')) h = h.slice('::ffff:'.length);
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** A wildcard bind is advertised as the first non-internal IPv4 address (else loopback). */
function advertisedHost(host: string): string {
  if (!isWildcard(host)) return host;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function pathString(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

function valueAt(obj: unknown, path: ReadonlyArray<string | number>): unknown {
  let cur = obj;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return String(v);
}

function describeIssue(issue: z.ZodIssue, input: unknown): ConfigIssue[] {
  const path = pathString(issue.path);
  const got = valueAt(input, issue.path);
  switch (issue.code) {
    case z.ZodIssueCode.unrecognized_keys: {
      const known = Object.keys(knownKeysAt(issue.path));
      return issue.keys.map((k) => {
        const near = known.find((n) => n.toLowerCase() === k.toLowerCase());
        return { path: pathString([...issue.path, k]), message: `unknown key${near ? ` (did you mean "${near}"?)` : known.length > 0 ? ` (expected one of: ${known.join(', ')})` : ''}` };
      });
    }
    case z.ZodIssueCode.invalid_type:
      if (issue.received === 'undefined') return [{ path, message: 'is required' }];
      if (issue.expected === 'integer') return [{ path, message: `must be an integer, got ${describe(got)}` }];
      return [{ path, message: `expected ${issue.expected}, got ${issue.received}${typeof got === 'string' || typeof got === 'number' ? ` ${describe(got)}` : ''}` }];
    case z.ZodIssueCode.invalid_enum_value:
      return [{ path, message: `must be one of ${issue.options.map((o) => JSON.stringify(o)).join(', ')}, got ${describe(got)}` }];
    case z.ZodIssueCode.invalid_literal:
      return [{ path, message: `must be ${JSON.stringify(issue.expected)}, got ${describe(got)}` }];
    case z.ZodIssueCode.too_small:
      if (issue.type === 'string') return [{ path, message: issue.minimum === 1 ? 'must not be empty' : `must be at least ${String(issue.minimum)} characters` }];
      if (issue.type === 'array') return [{ path, message: `needs at least ${String(issue.minimum)} entries` }];
      return [{ path, message: `must be at least ${String(issue.minimum)}, got ${describe(got)}` }];
    case z.ZodIssueCode.too_big:
      if (issue.type === 'string') return [{ path, message: `must be at most ${String(issue.maximum)} characters` }];
      if (issue.type === 'array') return [{ path, message: `holds at most ${String(issue.maximum)} entries` }];
      return [{ path, message: `must be at most ${String(issue.maximum)}, got ${describe(got)}` }];
    case z.ZodIssueCode.invalid_union: {
      // For an object value, report the object branch's own issues (a missing keyFile) rather than "no branch matched".
      if (typeof got === 'object' && got !== null && !Array.isArray(got)) {
        const deeper = issue.unionErrors.find((e) => e.issues.every((i) => i.path.length > issue.path.length || i.code === z.ZodIssueCode.unrecognized_keys));
        if (deeper) return deeper.issues.flatMap((i) => describeIssue(i, input));
      }
      return [{ path, message: issue.message }];
    }
    case z.ZodIssueCode.invalid_string:
      return [{ path, message: `${issue.message}, got ${describe(got)}` }];
    default:
      return [{ path, message: issue.message }];
  }
}

/** The keys the schema allows at an object path (for "did you mean"). */
function knownKeysAt(path: ReadonlyArray<string | number>): Record<string, unknown> {
  let s: z.ZodTypeAny = configSchema;
  for (const p of path) {
    while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s._def.innerType as z.ZodTypeAny;
    if (!(s instanceof z.ZodObject)) return {};
    const next = (s.shape as Record<string, z.ZodTypeAny>)[String(p)];
    if (next === undefined) return {};
    s = next;
  }
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s._def.innerType as z.ZodTypeAny;
  if (s instanceof z.ZodUnion) s = (s.options as z.ZodTypeAny[]).find((o) => o instanceof z.ZodObject) ?? s;
  return s instanceof z.ZodObject ? (s.shape as Record<string, unknown>) : {};
}

function withEnvNames(issues: ConfigIssue[], applied: readonly AppliedOverride[]): ConfigIssue[] {
  if (applied.length === 0) return issues;
  return issues.map((i) => {
    const o = applied.find((a) => i.path === a.path || i.path.startsWith(`${a.path}.`) || i.path.startsWith(`${a.path}[`));
    return o ? { path: i.path, message: `${i.message} (set by ${o.variable})` } : i;
  });
}
