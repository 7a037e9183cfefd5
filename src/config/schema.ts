// The config file of SPEC §3 as a zod schema. Every object is strict (an
// unknown key is an error) and every key has a default, so `{}` is a valid
// single-node file. Cross-key rules (quorum, timeouts, duplicate peers) live in
// ./load.ts because they need the whole file. Keys for features this version
// does not have accept only their default: ./unbuilt.ts.
import { z } from 'zod';
import { hostname } from 'node:os';
import { Cron } from 'croner';

/** "host:port" with a port 1..65535; host may be a name, IPv4 or [IPv6]. */
export const HOST_PORT_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/;

const hostPort = z.string().superRefine((s, ctx) => {
  const m = HOST_PORT_RE.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be host:port (e.g. 0.0.0.0:7101), got ${JSON.stringify(s)}` });
  }
});

/** An http(s) URL with an explicit port; bare "host:port" is accepted too. */
const endpoint = z.string().superRefine((s, ctx) => {
  if (parseEndpoint(s) === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a URL with a port (e.g. https://10.0.1.11:5201) or host:port, got ${JSON.stringify(s)}` });
  }
});

/** An empty string means "derive from the bind address". */
const optionalEndpoint = z.string().superRefine((s, ctx) => {
  if (s !== '' && parseEndpoint(s) === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a URL with a port (e.g. https://10.0.1.10:7101) or "", got ${JSON.stringify(s)}` });
  }
});

export interface Endpoint { readonly scheme: 'http' | 'https' | ''; readonly host: string; readonly port: number }

/** Parses "https://h:p", "http://h:p" or "h:p"; undefined when it is neither. */
export function parseEndpoint(s: string): Endpoint | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    let u: URL;
    try { u = new URL(s); } catch { return undefined; }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    if (u.port === '' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') return undefined;
    const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return { scheme: u.protocol === 'https:' ? 'https' : 'http', host, port: Number(u.port) };
  }
  const m = HOST_PORT_RE.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  return { scheme: '', host: (m[1] ?? '').replace(/^\[|\]$/g, '').toLowerCase(), port };
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

export const ROLES = ['voter', 'observer', 'dr'] as const;
export const COORDINATIONS = ['raft', 'redis'] as const;
export const FAILOVER_MODES = ['automatic', 'manual', 'approval'] as const;
export const DATABASE_MODES = ['local-sync', 'external-shared'] as const;

const nodeSchema = z.object({
  nodeName: z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must start with a letter or digit and hold only letters, digits, "_", "." and "-"')
    .default(() => defaultNodeName()),
  dataDir: z.string().min(1).default('./data'),
  apiAddress: hostPort.default('0.0.0.0:7101'),
  /** Loopback by default: with security.tls "auto" or "off" peer traffic is plain TCP, accepted only on loopback. */
  peerAddress: hostPort.default('127.0.0.1:5201'),
  advertiseApiUrl: optionalEndpoint.default(''),
  advertisePeerUrl: optionalEndpoint.default(''),
  role: z.enum(ROLES).default('voter'),
}).strict();

const clusterSchema = z.object({
  haId: z.string().min(1).max(128).default('quorate'),
  peerEndpoints: z.array(endpoint).max(64).default([]),
  coordination: z.enum(COORDINATIONS).default('raft'),
  electionTimeoutMs: int(10, 600_000).default(1000),
  heartbeatIntervalMs: int(1, 60_000).default(100),
  leaderLockTtlSeconds: int(1, 3600).default(30),
  leaderRenewalIntervalSeconds: int(1, 3600).default(10),
  failover: z.enum(FAILOVER_MODES).default('automatic'),
  virtualIp: z.string().default(''),
  vipInterface: z.string().default(''),
  vipScript: z.string().default(''),
  loadBalanced: z.boolean().default(false),
  fenceScript: z.string().default(''),
  /** A standby more than this many log entries behind is "lagging" (not failover-ready). */
  maxLagOnFailover: int(0).default(1000),
  /** Take a snapshot and compact the log after this many applied entries. */
  snapshotEntries: int(100, 100_000_000).default(10_000),
  /**
   * Entries kept in the log before a snapshot, so a briefly lagging follower (a
   * restart, a rolling upgrade) catches up without one: as many as snapshotEntries,
   * so a follower that missed up to that many writes is sent entries, not the whole
   * state (etcd keeps 5000). Bounded in bytes by snapshotTrailingBytes.
   */
  snapshotTrailingEntries: int(0, 100_000_000).default(10_000),
  /** ... or after this many bytes of applied entry data (large entries, such as file chunks, are held in memory until then). */
  snapshotBytes: int(1024 * 1024, 1024 * 1024 * 1024).default(8 * 1024 * 1024),
  /** The trailing entries are bounded in bytes of entry data too. */
  snapshotTrailingBytes: int(0, 1024 * 1024 * 1024).default(4 * 1024 * 1024),
  /** Cluster history records kept (oldest dropped); the leader puts its value in each history entry. */
  historyMax: int(1, 100_000).default(1000),
}).strict();

/** A cron pattern croner accepts: 5 fields (minute first) or 6 (seconds first), in the node's local time zone. */
export const cronPattern = z.string().min(1).superRefine((s, ctx) => {
  try {
    new Cron(s, { paused: true });
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a cron pattern such as "0 2 * * *" (minute hour day-of-month month day-of-week, optionally seconds first), got ${JSON.stringify(s.slice(0, 80))}: ${(e as Error).message.replace(/^CronPattern: /, '')}` });
  }
});

const backupSchema = z.object({
  /** Scheduled backups by the leader (src/node/backups.ts). */
  enabled: z.boolean().default(false),
  schedule: cronPattern.default('0 2 * * *'),
  retentionDays: int(1, 36_500).default(30),
  dir: z.string().min(1).default('./backups'),
}).strict();

const databaseSchema = z.object({
  mode: z.enum(DATABASE_MODES).default('local-sync'),
  /** Absent: a majority of voters. */
  writeQuorum: int(1).optional(),
  external: z.object({
    dbType: z.literal('postgres').default('postgres'),
    connectionString: z.string().default(''),
    /** external-shared: PostgreSQL connections per node (src/external/pg-log.ts). */
    poolSize: int(1, 100).default(4),
    /** external-shared: statement_timeout of every connection, ms. */
    statementTimeoutMs: int(100, 600_000).default(5000),
    /** external-shared: the PostgreSQL schema /v1/db/* statements run in (src/external/pg-sql.ts); created at start. */
    sqlSchema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case PostgreSQL identifier: a letter or "_", then letters, digits or "_" (at most 63)')
      .refine((v) => !v.startsWith('pg_'), 'must not start with "pg_" (reserved by PostgreSQL)').default('quorate_sql'),
  }).strict().default({}),
  outboxPollIntervalSeconds: int(1, 86_400).default(5),
  backup: backupSchema.default({}),
  /** Witness mode (coordination "redis", local-sync): a standby silent for an election timeout leaves the in-sync set and writes go on with the leader alone (src/coord/WITNESS.md). */
  inSyncDegrade: z.boolean().default(false),
}).strict();

const redisSchema = z.object({
  enabled: z.boolean().default(false),
  connectionString: z.string().min(1).default('127.0.0.1:6379'),
  keyPrefix: z.string().default('quorate:'),
  tlsEnabled: z.boolean().default(false),
}).strict();

const tlsFiles = z.object({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  caFile: z.string().min(1),
}).strict();

const securitySchema = z.object({
  tls: z.union([z.literal('auto'), z.literal('off'), tlsFiles], {
    errorMap: (issue, ctx) => (issue.code === z.ZodIssueCode.invalid_union
      ? { message: `must be "auto", "off" or {"certFile","keyFile","caFile"}, got ${JSON.stringify(ctx.data)}` }
      : { message: ctx.defaultError }),
  }).default('auto'),
  apiTls: z.union([z.literal('auto'), z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).strict()], {
    errorMap: (issue, ctx) => (issue.code === z.ZodIssueCode.invalid_union
      ? { message: `must be "auto" (a certificate from the cluster CA) or {"certFile","keyFile"}, got ${JSON.stringify(ctx.data)}` }
      : { message: ctx.defaultError }),
  }).optional(),
  /** security.tls "auto": a new root every this many seconds, each valid three periods (default 30 days). */
  caRotationSeconds: z.number().int().min(10).max(10 * 365 * 86400).default(30 * 86400),
  /** "" means <dataDir>/admin.token. */
  adminTokenFile: z.string().default(''),
  /** The secret peers authenticate each other with in the handshake; "" means <dataDir>/cluster.secret. */
  clusterSecretFile: z.string().default(''),
}).strict();

/** A command: argv (["/usr/bin/check", "--x"]) or one string run by /bin/sh -c. */
const commandSpec = z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(64)], {
  errorMap: (issue, ctx) => (issue.code === z.ZodIssueCode.invalid_union
    ? { message: `must be a command line (string, run by /bin/sh -c) or an argv array of non-empty strings, got ${JSON.stringify(ctx.data)?.slice(0, 80)}` }
    : { message: ctx.defaultError }),
});

/** `redis` needs redis.enabled (./load.ts). */
export const BUILTIN_CHECKS = ['storage-writable', 'disk-free', 'database', 'redis'] as const;

/** health.checks[]: exactly one of command, url, builtin (checked in ./load.ts). */
const healthCheckSchema = z.object({
  name: z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must start with a letter or digit and hold only letters, digits, "_", "." and "-"'),
  command: commandSpec.optional(),
  /** http(s) URL; healthy on a 2xx answer. */
  url: z.string().url().optional(),
  builtin: z.enum(BUILTIN_CHECKS).optional(),
  /** disk-free: unhealthy below this percentage of free space on the data dir's file system. */
  minFreePercent: z.number().min(0).max(100).default(10),
  intervalMs: int(100, 3_600_000).default(5000),
  timeoutMs: int(10, 600_000).default(2000),
  failuresBeforeUnhealthy: int(1, 1000).default(3),
  critical: z.boolean().default(false),
}).strict();

const healthSchema = z.object({
  checks: z.array(healthCheckSchema).max(64).default([]),
  /** A leader whose critical check fails hands leadership to a healthy caught-up voter. */
  failoverOnFailure: z.boolean().default(false),
}).strict();

const hooksSchema = z.object({
  onRoleChange: commandSpec.optional(),
  onStart: commandSpec.optional(),
  onStop: commandSpec.optional(),
  timeoutMs: int(100, 3_600_000).default(30_000),
}).strict();

const outboxSchema = z.object({
  /** Where the leader delivers outbox messages (POST, Idempotency-Key = message id); "" = no delivery. */
  webhookUrl: z.union([z.literal(''), z.string().url().regex(/^https?:\/\//i, 'must be an http:// or https:// URL')]).default(''),
}).strict();

/** alerts: built-in alert webhooks (src/node/alerts.ts; docs/monitoring.md "Alert webhooks"). */
const alertsSchema = z.object({
  /** Where fire/resolve notifications are POSTed (JSON); "" = evaluate and list (GET /v1/alerts) but send nothing. */
  webhookUrl: z.union([z.literal(''), z.string().url().regex(/^https?:\/\//i, 'must be an http:// or https:// URL')]).default(''),
  /** File holding the secret the X-Quorate-Signature HMAC-SHA256 header is computed with; "" = unsigned. Never the cluster secret. */
  secretFile: z.string().default(''),
  /** A peer further behind the leader than this (ms) fires replication_lag (rConfig: 5-10 s). */
  replicationLagMsMax: int(1, 86_400_000).default(5000),
  /** Free space on the data dir's file system below this percentage fires disk_low. */
  diskFreePercentMin: z.number().min(0).max(100).default(20),
  /** A certificate file with fewer days left than this fires certificate_expiring (an auto one: less than one renewal period left). */
  certificateDaysMin: int(1, 3650).default(14),
  /** More leader changes than this within leaderChangesWindowSeconds fires leader_flapping (etcd's rule: 4 in 15 min). */
  leaderChangesMax: int(1, 10_000).default(4),
  leaderChangesWindowSeconds: int(10, 86_400).default(900),
  /** A condition must hold this long before it fires (0 = at once), like a Prometheus rule's \`for\`. */
  forSeconds: int(0, 86_400).default(30),
  /** How often the node evaluates the conditions. */
  evaluateIntervalMs: int(100, 600_000).default(5000),
  /** Delivery attempts per notification (exponential backoff from retryBackoffMs, doubling). */
  maxAttempts: int(1, 20).default(5),
  retryBackoffMs: int(10, 600_000).default(1000),
  timeoutMs: int(100, 120_000).default(5000),
}).strict();

/** jobs[]: leader-only scheduled jobs (src/node/jobs.ts). Names are checked unique in ./load.ts. */
const jobSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit'),
  schedule: cronPattern,
  /** Run with /bin/sh -c on the leader. */
  command: z.string().min(1).max(4096),
  timeoutSeconds: int(1, 7 * 86_400).default(3600),
  catchUp: z.enum(['once', 'skip']).default('skip'),
}).strict();

/** `quorate drill` (src/drill/runner.ts): whether this node carries out faults on itself, and the RTO target. */
const drillsSchema = z.object({
  enabled: z.boolean().default(false),
  rtoTargetMs: int(1, 3_600_000).default(15_000),
  /** A passing drill is due at least this often (hours; 0 = no period, never overdue): drill_overdue, QuorateDrillOverdue, quorate doctor. */
  maxIntervalHours: int(0, 87_600).default(0),
}).strict();

export const configSchema = z.object({
  node: nodeSchema.default({}),
  cluster: clusterSchema.default({}),
  database: databaseSchema.default({}),
  jobs: z.array(jobSchema).max(64).default([]),
  redis: redisSchema.default({}),
  security: securitySchema.default({}),
  health: healthSchema.default({}),
  hooks: hooksSchema.default({}),
  outbox: outboxSchema.default({}),
  alerts: alertsSchema.default({}),
  drills: drillsSchema.default({}),
  /**
   * Replicated files (src/files): the largest file accepted by PUT /v1/files (default 4 GiB, at most 64 GiB);
   * how long a streamed upload (PUT /v1/files/*, POST /v1/cluster/restore) may go without a byte of its body
   * before it is answered 408 (it has no total deadline).
   */
  files: z.object({
    maxFileBytes: int(1, 64 * 1024 ** 3).default(4 * 1024 ** 3),
    uploadIdleTimeoutMs: int(1000, 3_600_000).default(60_000),
  }).strict().default({}),
}).strict();

/** The file after schema defaults, before cross-key rules and path resolution. */
export type RawConfig = z.output<typeof configSchema>;

function defaultNodeName(): string {
  const h = hostname().split('.')[0] ?? '';
  return /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(h) ? h.slice(0, 63) : 'node1';
}
