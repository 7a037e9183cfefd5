import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, UNBUILT, configSchema, loadConfig, parseConfig, type QuorateConfig } from './index.js';
import { unbuiltIssues } from './unbuilt.js';

const NOENV = {};
// Network peer addresses need peer TLS (own PKI): "auto" and "off" are plain TCP, loopback only.
const TLS_FILES = { certFile: 'c.pem', keyFile: 'k.pem', caFile: 'ca.pem' };
const base = { node: { nodeName: 'node1', advertisePeerUrl: 'https://10.0.1.10:5201' }, security: { tls: TLS_FILES } };

function fails(obj: unknown, pattern: RegExp, env: NodeJS.ProcessEnv = NOENV): ConfigError {
  try {
    parseConfig(obj, env, { baseDir: '/srv/q' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'invalid_config');
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`expected a ConfigError matching ${String(pattern)}`);
}

function ok(obj: unknown, env: NodeJS.ProcessEnv = NOENV): QuorateConfig {
  return parseConfig(obj, env, { baseDir: '/srv/q' });
}

test('defaults: {} is a valid single-node config', () => {
  const c = ok({ node: { nodeName: 'n1' } });
  assert.equal(c.node.role, 'voter');
  assert.equal(c.node.apiAddress, '0.0.0.0:7101');
  assert.equal(c.node.peerAddress, '127.0.0.1:5201', 'peers on loopback: "auto" is plain TCP in this release');
  assert.equal(c.node.advertisePeerUrl, 'https://127.0.0.1:5201');
  assert.equal(c.cluster.coordination, 'raft');
  assert.equal(c.cluster.electionTimeoutMs, 1000);
  assert.equal(c.cluster.heartbeatIntervalMs, 100);
  assert.equal(c.cluster.maxLagOnFailover, 1000);
  assert.equal(c.cluster.failover, 'automatic');
  assert.equal(c.database.mode, 'local-sync');
  assert.equal(c.database.writeQuorum, undefined, 'unset: a majority of the live voters');
  assert.equal(c.database.backup.retentionDays, 30);
  assert.equal(c.database.backup.enabled, false, 'scheduled backups are off by default');
  assert.equal(c.redis.keyPrefix, 'quorate:');
  assert.equal(c.security.tls, 'auto');
  assert.equal(c.security.apiTls, undefined);
  assert.equal(c.node.dataDir, '/srv/q/data');
  assert.equal(c.security.adminTokenFile, '/srv/q/data/admin.token');
  assert.equal(c.security.clusterSecretFile, '/srv/q/data/cluster.secret');
  // The very empty file loads too.
  assert.equal(parseConfig({}, NOENV, { baseDir: '/srv/q' }).node.peerAddress, '127.0.0.1:5201');
  // So does every key written out at its default (what `quorate init` writes).
  const full = JSON.parse(JSON.stringify(configSchema.parse({ node: { nodeName: 'n1' } }))) as Record<string, unknown>;
  assert.equal((full['cluster'] as Record<string, unknown>)['failover'], 'automatic');
  assert.equal(ok(full).database.backup.enabled, false);
});

test('security.clusterSecretFile resolves like adminTokenFile', () => {
  assert.equal(ok({ security: { clusterSecretFile: 'secrets/cluster.secret' } }).security.clusterSecretFile, '/srv/q/secrets/cluster.secret');
  assert.equal(ok({ security: { clusterSecretFile: '/etc/quorate/cluster.secret' } }).security.clusterSecretFile, '/etc/quorate/cluster.secret');
  assert.equal(ok({}, { QUORATE_SECURITY_CLUSTERSECRETFILE: '/x/s' }).security.clusterSecretFile, '/x/s');
  fails({ security: { clusterSecretFile: 5 } }, /security\.clusterSecretFile: expected string, got number/);
});

const SPEC_EXAMPLE = {
  node: { nodeName: 'node1', dataDir: './data/node1', apiAddress: '0.0.0.0:7101', peerAddress: '0.0.0.0:5201',
    advertiseApiUrl: 'https://10.0.1.10:7101', advertisePeerUrl: 'https://10.0.1.10:5201', role: 'voter' },
  cluster: { haId: 'prod-ha', peerEndpoints: ['https://10.0.1.11:5201', 'https://10.0.1.12:5201'], coordination: 'raft',
    electionTimeoutMs: 1000, heartbeatIntervalMs: 100, leaderLockTtlSeconds: 30, leaderRenewalIntervalSeconds: 10,
    failover: 'automatic', virtualIp: '', vipInterface: '', vipScript: '', loadBalanced: false, fenceScript: '' },
  database: { mode: 'local-sync', writeQuorum: 2, external: { dbType: 'postgres', connectionString: '' },
    outboxPollIntervalSeconds: 5, backup: { enabled: true, schedule: '0 2 * * *', retentionDays: 30, dir: './backups' } },
  redis: { enabled: false, connectionString: '127.0.0.1:6379', keyPrefix: 'quorate:', tlsEnabled: false },
  security: { tls: 'auto', adminTokenFile: '' },
};

test('the SPEC §3 example parses as written (tls "auto" on the network: the cluster CA), and with peer TLS files, backups on', () => {
  const auto = ok(SPEC_EXAMPLE);
  assert.equal(auto.security.tls, 'auto');
  assert.equal(auto.security.caRotationSeconds, 30 * 86400);
  assert.equal(auto.node.advertisePeerUrl, 'https://10.0.1.10:5201');
  // With peer TLS files every key of the example is built or at its default.
  const c = ok({ ...SPEC_EXAMPLE, security: { ...SPEC_EXAMPLE.security, tls: TLS_FILES } });
  assert.equal(c.cluster.failover, 'automatic');
  assert.equal(c.database.backup.enabled, true);
  assert.equal(c.database.backup.schedule, '0 2 * * *');
  assert.equal(c.database.writeQuorum, 2);
  assert.equal(c.node.dataDir, '/srv/q/data/node1');
  assert.equal(c.database.backup.dir, '/srv/q/backups');
  assert.equal(c.security.clusterSecretFile, '/srv/q/data/node1/cluster.secret');
  assert.deepEqual(c.cluster.peerEndpoints, ['https://10.0.1.11:5201', 'https://10.0.1.12:5201']);
});

test('database.backup.schedule must be a cron pattern (5 fields, or 6 with seconds); a bad one names the key', () => {
  assert.equal(ok({ database: { backup: { enabled: true, schedule: '*/5 * * * * *' } } }).database.backup.schedule, '*/5 * * * * *');
  assert.equal(ok({ database: { backup: { schedule: '30 3 * * 1-5' } } }).database.backup.schedule, '30 3 * * 1-5');
  fails({ database: { backup: { schedule: 'every day' } } }, /^database\.backup\.schedule: must be a cron pattern such as "0 2 \* \* \*".*got "every day"/);
  fails({ database: { backup: { schedule: '61 * * * *' } } }, /^database\.backup\.schedule: must be a cron pattern/);
  fails({ database: { backup: { retentionDays: 0 } } }, /^database\.backup\.retentionDays: /);
});

test('jobs: commands from the config, cron schedules, unique names; "backup" is reserved', () => {
  const c = ok({ jobs: [{ name: 'report', schedule: '0 3 * * *', command: './report.sh' }, { name: 'tick', schedule: '*/10 * * * * *', command: 'true', catchUp: 'once', timeoutSeconds: 5 }] });
  assert.deepEqual(c.jobs[0], { name: 'report', schedule: '0 3 * * *', command: './report.sh', timeoutSeconds: 3600, catchUp: 'skip' });
  assert.equal(c.jobs[1]!.catchUp, 'once');
  fails({ jobs: [{ name: 'a', schedule: 'hourly', command: 'x' }] }, /^jobs\[0\]\.schedule: must be a cron pattern/);
  fails({ jobs: [{ name: 'a', schedule: '* * * * *', command: 'x' }, { name: 'a', schedule: '* * * * *', command: 'y' }] }, /^jobs\[1\]\.name: duplicates jobs\[0\]\.name/);
  fails({ jobs: [{ name: 'backup', schedule: '* * * * *', command: 'x' }] }, /^jobs\[0\]\.name: "backup" is the name of the scheduled backup/);
  fails({ jobs: [{ name: 'a b', schedule: '* * * * *', command: 'x' }] }, /^jobs\[0\]\.name: must be 1-64 letters/);
  fails({ jobs: [{ name: 'a', schedule: '* * * * *', command: 'x', catchUp: 'all' }] }, /^jobs\[0\]\.catchUp: /);
  fails({ jobs: [{ name: 'a', schedule: '* * * * *' }] }, /^jobs\[0\]\.command: /);
});

test('unknown key names its path, with a suggestion', () => {
  fails({ cluster: { electionTimeout: 5 } }, /cluster\.electionTimeout: unknown key/);
  fails({ node: { nodename: 'x' } }, /node\.nodename: unknown key \(did you mean "nodeName"\?\)/);
  fails({ bogus: {} }, /^bogus: unknown key/);
  fails({ database: { backup: { keep: 3 } } }, /database\.backup\.keep: unknown key/);
});

test('wrong type names the path and what was given', () => {
  fails({ cluster: { electionTimeoutMs: '1000' } }, /cluster\.electionTimeoutMs: expected number, got string "1000"/);
  fails({ cluster: { loadBalanced: 'yes' } }, /cluster\.loadBalanced: expected boolean/);
  fails({ cluster: { peerEndpoints: 'a:1' } }, /cluster\.peerEndpoints: expected array/);
  fails({ database: { writeQuorum: 1.5 } }, /database\.writeQuorum: must be an integer, got 1\.5/);
  fails([], /must be a JSON object/);
});

test('enums: role, coordination, failover, mode', () => {
  fails({ node: { role: 'leader' } }, /node\.role: must be one of "voter", "observer", "dr", got "leader"/);
  fails({ cluster: { coordination: 'zk' } }, /cluster\.coordination: must be one of "raft", "redis"/);
  fails({ cluster: { failover: 'auto' } }, /cluster\.failover: must be one of "automatic", "manual", "approval"/);
  fails({ database: { mode: 'shared' } }, /database\.mode: must be one of "local-sync", "external-shared"/);
  // The SPEC's values that are not built yet are valid enum members, refused as "not available" (below).
  ok({ ...base, cluster: { failover: 'approval', peerEndpoints: ['https://10.0.1.11:5201'] }, node: { ...base.node, role: 'observer' } });
  ok({ ...base, cluster: { failover: 'automatic', peerEndpoints: ['https://10.0.1.11:5201'] }, node: { ...base.node, role: 'observer' } });
  ok({ ...base, cluster: { failover: 'manual', peerEndpoints: ['https://10.0.1.11:5201'] }, node: { ...base.node, role: 'observer' } });
});

test('cluster.historyMax: 1..100000, default 1000', () => {
  assert.equal(ok({}).cluster.historyMax, 1000);
  assert.equal(ok({ cluster: { historyMax: 5 } }).cluster.historyMax, 5);
  fails({ cluster: { historyMax: 0 } }, /cluster\.historyMax/);
  fails({ cluster: { historyMax: 100_001 } }, /cluster\.historyMax/);
});

test('electionTimeoutMs must be at least 5 × heartbeatIntervalMs', () => {
  const e = fails({ cluster: { electionTimeoutMs: 300, heartbeatIntervalMs: 100 } }, /cluster\.electionTimeoutMs: must be at least 5 × heartbeatIntervalMs \(500\), got 300/);
  assert.equal(e.path, 'cluster.electionTimeoutMs');
  ok({ cluster: { electionTimeoutMs: 500, heartbeatIntervalMs: 100 } });
});


test('writeQuorum: at least a majority of voters, at most their number', () => {
  const peers = ['https://10.0.1.11:5201', 'https://10.0.1.12:5201'];
  fails({ ...base, cluster: { peerEndpoints: peers }, database: { writeQuorum: 1 } }, /database\.writeQuorum: must be at least a majority of the 3 voters .*: 2, got 1/);
  fails({ ...base, cluster: { peerEndpoints: peers }, database: { writeQuorum: 4 } }, /database\.writeQuorum: must be at most the number of voters, 3 voters/);
  // Unset means "a majority of the current voters", decided by the node from the live membership.
  assert.equal(ok({ ...base, cluster: { peerEndpoints: peers } }).database.writeQuorum, undefined);
  assert.equal(ok({ ...base, cluster: { peerEndpoints: peers }, database: { writeQuorum: 3 } }).database.writeQuorum, 3);
  // Two nodes: majority is 2 (SPEC §2).
  fails({ ...base, cluster: { peerEndpoints: peers.slice(0, 1) }, database: { writeQuorum: 1 } }, /at least a majority of the 2 voters .*: 2, got 1/);
  // A dr node is not a voter: its peers are.
  const dr = { ...base, node: { ...base.node, role: 'dr' }, cluster: { peerEndpoints: peers } };
  assert.equal(ok({ ...dr, database: { writeQuorum: 2 } }).database.writeQuorum, 2);
  fails({ ...dr, database: { writeQuorum: 3 } }, /at most the number of voters, 2 voters/);
  fails({ node: { role: 'dr' } }, /cluster\.peerEndpoints: a dr node needs at least one peer/);
  fails({ database: { writeQuorum: 0 } }, /database\.writeQuorum: must be at least 1, got 0/);
});

test('peers: duplicates and self refused, addresses must be host:port', () => {
  fails({ ...base, cluster: { peerEndpoints: ['https://10.0.1.11:5201', 'https://10.0.1.11:5201/'] } }, /cluster\.peerEndpoints\[1\]: duplicates cluster\.peerEndpoints\[0\] \(10\.0\.1\.11:5201\)/);
  fails({ ...base, cluster: { peerEndpoints: ['10.0.1.11:5201', 'https://10.0.1.11:5201'] } }, /peerEndpoints\[1\]: duplicates/);
  fails({ ...base, cluster: { peerEndpoints: ['https://10.0.1.10:5201'] } }, /cluster\.peerEndpoints\[0\]: is this node's own node\.advertisePeerUrl/);
  fails({ cluster: { peerEndpoints: ['https://10.0.1.11'] } }, /cluster\.peerEndpoints\[0\]: must be a URL with a port/);
  fails({ cluster: { peerEndpoints: ['ftp://10.0.1.11:21'] } }, /cluster\.peerEndpoints\[0\]: must be a URL with a port/);
  fails({ node: { apiAddress: '7101' } }, /node\.apiAddress: must be host:port/);
  fails({ node: { peerAddress: 'h:99999' } }, /node\.peerAddress: must be host:port/);
  fails({ node: { apiAddress: '0.0.0.0:7101', peerAddress: '127.0.0.1:7101' } }, /node\.peerAddress: must not use the same port/);
  const c = ok({ ...base, cluster: { peerEndpoints: ['10.0.1.11:5201', '[::1]:5202'] } });
  assert.deepEqual(c.cluster.peerEndpoints, ['https://10.0.1.11:5201', 'https://[::1]:5202']);
});

test('security.tls: auto | off | files; off only on loopback; apiTls optional, "auto" only with tls "auto"', () => {
  fails({ security: { tls: 'on' } }, /security\.tls: must be "auto", "off" or \{"certFile","keyFile","caFile"\}, got "on"/);
  fails({ security: { tls: { certFile: 'c.pem' } } }, /security\.tls\.keyFile: is required/);
  const files = ok({ node: { peerAddress: '0.0.0.0:5201' }, security: { tls: { certFile: 'c.pem', keyFile: '/k.pem', caFile: 'ca.pem' } } });
  assert.deepEqual(files.security.tls, { certFile: '/srv/q/c.pem', keyFile: '/k.pem', caFile: '/srv/q/ca.pem' });
  for (const tls of ['off']) {
    fails({ security: { tls }, cluster: { peerEndpoints: ['http://10.0.1.11:5201'] } },
      new RegExp(`cluster\\.peerEndpoints\\[0\\]: security\\.tls "${tls}" .*accepted only when every peer address is loopback; this peer is 10\\.0\\.1\\.11: list loopback peers only, or set security\\.tls to "auto" .* or \\{"certFile","keyFile","caFile"\\}`));
    for (const bind of ['0.0.0.0', '[::]', '10.0.1.10']) {
      fails({ security: { tls }, node: { peerAddress: `${bind}:5201` } }, /node\.peerAddress: security\.tls .* node\.peerAddress binds .*: bind it to 127\.0\.0\.1 \(e\.g\. "127\.0\.0\.1:5201"\), or set security\.tls to/);
    }
    fails({ security: { tls }, node: { advertisePeerUrl: 'http://192.0.2.10:5201' } }, /node\.advertisePeerUrl: security\.tls .* node\.advertisePeerUrl is 192\.0\.2\.10: advertise a loopback address \(e\.g\. "http:\/\/127\.0\.0\.1:5201"\)/);
  }
  const off = ok({ node: { peerAddress: '127.0.0.1:5201', apiAddress: '127.0.0.1:7101' }, security: { tls: 'off' }, cluster: { peerEndpoints: ['127.0.0.1:5202', 'http://localhost:5203', 'http://[::1]:5204'] } });
  assert.equal(off.node.advertisePeerUrl, 'http://127.0.0.1:5201');
  assert.equal(off.node.advertiseApiUrl, 'http://127.0.0.1:7101');
  assert.deepEqual(off.cluster.peerEndpoints, ['http://127.0.0.1:5202', 'http://localhost:5203', 'http://[::1]:5204']);
  // The HTTP API may listen on the network: only peer traffic is plain TCP.
  const api = ok({ node: { apiAddress: '10.1.1.1:7101' }, security: { apiTls: { certFile: 'a', keyFile: 'b' } } });
  assert.equal(api.node.advertiseApiUrl, 'https://10.1.1.1:7101');
  assert.deepEqual(api.security.apiTls, { certFile: '/srv/q/a', keyFile: '/srv/q/b' });
  fails({ security: { apiTls: { certFile: 'a' } } }, /security\.apiTls\.keyFile: is required/);
  // "auto": the cluster CA's certificate, so only with tls "auto"; https advertised.
  const autoApi = ok({ node: { apiAddress: '10.1.1.1:7101' }, security: { apiTls: 'auto' } });
  assert.equal(autoApi.security.apiTls, 'auto');
  assert.equal(autoApi.node.advertiseApiUrl, 'https://10.1.1.1:7101');
  fails({ security: { tls: 'off', apiTls: 'auto' } }, /security\.apiTls: "auto" serves the API with a certificate from the cluster CA, which exists only with security\.tls "auto"/);
  fails({ security: { apiTls: 'on' } }, /security\.apiTls: must be "auto" \(a certificate from the cluster CA\) or \{"certFile","keyFile"\}, got "on"/);
  fails({ security: { caRotationSeconds: 5 } }, /security\.caRotationSeconds/);
});

// Every value SPEC §3 names for a feature this version does not have (none left: the table is empty),
// and the mechanism on a table of its own.
const REFUSED: ReadonlyArray<[obj: unknown, path: string, shown: string, only: string, why: RegExp]> = [];

const re = (s: string) => s.replace(/[.[\]()/|]/g, (c) => `\\${c}`);

test('a value for a feature this version does not have is refused at load, naming the key', () => {
  for (const [obj, path, shown, only, why] of REFUSED) {
    const e = fails(obj, new RegExp(`^${re(path)}: ${re(shown)} is not available in this version \\(only ${re(only)}\\); remove the key or set it to ${re(only)} — `));
    assert.deepEqual(e.issues.map((i) => i.path), [path], `${path}: one issue, nothing else (no cross-key noise)`);
    assert.match(e.issues[0]!.message, why, path);
  }
  const table = [{ path: 'cluster.failover', allowed: 'automatic', why: 'not built (a test table)' }, { path: 'database.external.connectionString', allowed: '', secret: true, why: 'not built' }];
  const issues = unbuiltIssues(configSchema.parse({ cluster: { failover: 'manual' }, database: { external: { connectionString: 'postgres://u:hunter2@db/q' } } }), table);
  assert.deepEqual(issues.map((i) => i.path), ['cluster.failover', 'database.external.connectionString']);
  assert.match(issues[0]!.message, /^"manual" is not available in this version \(only "automatic"\); remove the key or set it to "automatic" — not built \(a test table\)$/);
  assert.match(issues[1]!.message, /^the value \(not shown: it may hold a password\) is not available/);
  // coordination "redis" is built (the witness with local-sync; src/coord/WITNESS.md): it needs Redis.
  fails({ cluster: { coordination: 'redis' } }, /^cluster\.coordination: "redis" needs redis\.enabled: true/);
  assert.equal(ok({ cluster: { coordination: 'redis' }, redis: { enabled: true } }).cluster.coordination, 'redis');
  // cluster.failover "manual" and "approval" are built.
  assert.equal(ok({ cluster: { failover: 'manual' } }).cluster.failover, 'manual');
  assert.equal(ok({ cluster: { failover: 'approval' } }).cluster.failover, 'approval');
  // Every row is exercised above.
  assert.deepEqual([...new Set(REFUSED.map((r) => r[1]))].sort(), UNBUILT.map((r) => r.path).sort());
});

test('external-shared with the Redis lease loads; its rules name the key and never echo the connection string', () => {
  const c = ok({ cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { mode: 'external-shared', external: { connectionString: 'postgres://quorate:hunter2@db.example:5432/quorate' } } });
  assert.equal(c.database.mode, 'external-shared');
  assert.equal(c.cluster.coordination, 'redis');
  fails({ cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { mode: 'external-shared' } }, /^database\.external\.connectionString: is required with database\.mode "external-shared"/);
  const bad = fails({ cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { mode: 'external-shared', external: { connectionString: 'mysql://u:hunter2@db/q' } } }, /^database\.external\.connectionString: the value \(not shown: it may hold a password\) is neither a postgres/);
  assert.doesNotMatch(bad.message, /hunter2/);
  // Led by Raft: a single node (no peerEndpoints) is refused naming cluster.peerEndpoints (test below).
  fails({ database: { mode: 'external-shared', external: { connectionString: 'host=db dbname=q user=quorate' } } }, /^cluster\.peerEndpoints: lists 0 other nodes, but "external-shared" led by Raft/);
  fails({ database: { external: { connectionString: 'postgres://u:hunter2@db/q' } } }, /^database\.external\.connectionString: is used only with database\.mode "external-shared"/);
  const base = { cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { mode: 'external-shared', external: { connectionString: 'postgres://db/q' } } };
  const notHere = fails({ ...base, cluster: { coordination: 'redis', virtualIp: '10.0.0.5/24', vipInterface: 'eth0', failover: 'manual' }, node: { role: 'observer' }, jobs: [{ name: 'j', schedule: '* * * * *', command: '/bin/true' }], database: { ...base.database, backup: { enabled: true } } }, /problems:/);
  assert.deepEqual([...new Set(notHere.issues.map((i) => i.path))].sort(), ['cluster.failover', 'cluster.virtualIp', 'database.backup.enabled', 'jobs', 'node.role'].sort(), JSON.stringify(notHere.issues));
  assert.match(notHere.issues.find((i) => i.path === 'cluster.virtualIp')!.message, /^the virtual IP is not available with database\.mode "external-shared" in this version; remove it/);
  fails({ ...base, drills: { maxIntervalHours: 168 } }, /^drills\.maxIntervalHours: a drill period \(there are no drills to be overdue\) is not available with database\.mode "external-shared"/);
  assert.equal(ok({ ...base, drills: { maxIntervalHours: 0 } }).drills.maxIntervalHours, 0);
  // /v1/db/* on PostgreSQL: the schema is the operator's choice, a lower-case identifier, only with external-shared.
  assert.equal(c.database.external.sqlSchema, 'quorate_sql');
  assert.equal(ok({ ...base, database: { ...base.database, external: { ...base.database.external, sqlSchema: 'rppam_app' } } }).database.external.sqlSchema, 'rppam_app');
  fails({ ...base, database: { ...base.database, external: { ...base.database.external, sqlSchema: 'App; DROP' } } }, /^database\.external\.sqlSchema: must be a lower-case PostgreSQL identifier/);
  fails({ ...base, database: { ...base.database, external: { ...base.database.external, sqlSchema: 'pg_mine' } } }, /^database\.external\.sqlSchema: must not start with "pg_"/);
  fails({ database: { external: { sqlSchema: 'app' } } }, /^database\.external\.sqlSchema: is used only with database\.mode "external-shared"/);
  // coordination "redis" with local-sync is the two-node witness mode (src/coord/WITNESS.md).
  assert.equal(ok({ cluster: { coordination: 'redis' }, redis: { enabled: true } }).database.mode, 'local-sync');
});

test('external-shared led by Raft loads with three or more voting members; fewer, redis.enabled and writeQuorum are refused naming the key', () => {
  const db = { mode: 'external-shared', external: { connectionString: 'postgres://quorate:hunter2@db.example:5432/quorate' } };
  const three = { cluster: { coordination: 'raft', peerEndpoints: ['http://10.0.0.2:5201', 'http://10.0.0.3:5201'] }, database: db };
  const c = ok(three);
  assert.equal(c.cluster.coordination, 'raft');
  assert.equal(c.database.mode, 'external-shared');
  assert.equal(ok({ ...three, cluster: { ...three.cluster, peerEndpoints: [...three.cluster.peerEndpoints, 'http://10.0.0.4:5201', 'http://10.0.0.5:5201'] } }).cluster.peerEndpoints.length, 4);
  const two = fails({ ...three, cluster: { coordination: 'raft', peerEndpoints: ['http://10.0.0.2:5201'] } }, /^cluster\.peerEndpoints: lists 1 other node, but "external-shared" led by Raft \(cluster\.coordination "raft"\) needs at least 3 voting members: a 2-member Raft group cannot elect a leader after losing one/);
  assert.match(two.message, /for two nodes set cluster\.coordination to "redis" \(the Redis leader lease/);
  // The same endpoint twice is one member.
  const dup = fails({ ...three, cluster: { coordination: 'raft', peerEndpoints: ['http://10.0.0.2:5201', 'http://10.0.0.2:5201'] } }, /problems:/);
  assert.match(dup.message, /cluster\.peerEndpoints: lists 1 other node/);
  fails({ ...three, redis: { enabled: true } }, /^redis\.enabled: true is not used with database\.mode "external-shared" led by Raft/);
  fails({ ...three, database: { ...db, writeQuorum: 2 } }, /^database\.writeQuorum: is not used with database\.mode "external-shared"/);
  // Features this mode does not run stay refused naming their key, as with the Redis lease.
  fails({ ...three, cluster: { ...three.cluster, virtualIp: '10.0.0.9/24', vipInterface: 'eth0' } }, /^cluster\.virtualIp: the virtual IP is not available with database\.mode "external-shared"/);
  fails({ ...three, node: { role: 'dr' } }, /^node\.role: role "dr" \(every node may lead; leave node\.role at "voter"\)/);
});

test('unbuilt keys: the allowed value is the schema default, accepted when written out; all refusals are listed at once', () => {
  const defaults = configSchema.parse({}) as unknown as Record<string, Record<string, unknown>>;
  const at = (o: unknown, path: string): unknown => path.split('.').reduce<unknown>((cur, k) => (cur as Record<string, unknown>)[k], o);
  for (const row of UNBUILT) assert.equal(at(defaults, row.path), row.allowed, `${row.path}: allowed value is the default`);
  // Every allowed value written explicitly loads.
  const explicit: Record<string, Record<string, unknown>> = {};
  for (const row of UNBUILT) {
    const keys = row.path.split('.');
    let cur: Record<string, unknown> = explicit;
    for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
    cur[keys[keys.length - 1]!] = row.allowed;
  }
  ok(explicit);
  // Several problems: one issue each, in one error.
  const e = fails({ cluster: { coordination: 'redis' }, database: { mode: 'external-shared' } }, /^2 problems:/);
  assert.deepEqual(e.issues.map((i) => i.path), ['cluster.coordination', 'database.external.connectionString']);
  // loadBalanced is built (written to ha-state.json): both values load.
  assert.equal(ok({ cluster: { loadBalanced: true } }).cluster.loadBalanced, true);
});

test('every schema key is either built or in the table of unbuilt features', () => {
  // A new key must be classified: used by the node, or refused at a non-default value.
  const BUILT = [
    'node.nodeName', 'node.dataDir', 'node.apiAddress', 'node.peerAddress', 'node.advertiseApiUrl', 'node.advertisePeerUrl', 'node.role',
    'cluster.haId', 'cluster.peerEndpoints', 'cluster.electionTimeoutMs', 'cluster.heartbeatIntervalMs', 'cluster.loadBalanced', 'cluster.failover',
    'cluster.virtualIp', 'cluster.vipInterface', 'cluster.vipScript', 'cluster.fenceScript',
    'cluster.maxLagOnFailover', 'cluster.snapshotEntries', 'cluster.snapshotTrailingEntries', 'cluster.snapshotBytes', 'cluster.snapshotTrailingBytes', 'cluster.historyMax',
    'database.writeQuorum', 'database.external.dbType',
    'jobs',
    'security.tls', 'security.apiTls', 'security.adminTokenFile', 'security.clusterSecretFile', 'security.caRotationSeconds',
    'database.outboxPollIntervalSeconds', 'health.checks', 'health.failoverOnFailure',
    'hooks.onRoleChange', 'hooks.onStart', 'hooks.onStop', 'hooks.timeoutMs', 'outbox.webhookUrl',
    'database.backup.enabled', 'database.backup.schedule', 'database.backup.retentionDays', 'database.backup.dir',
    'cluster.coordination', 'database.mode', 'database.external.connectionString', 'database.external.poolSize', 'database.external.statementTimeoutMs', 'database.external.sqlSchema',
    'cluster.leaderLockTtlSeconds', 'cluster.leaderRenewalIntervalSeconds', 'redis.enabled', 'redis.connectionString', 'redis.keyPrefix', 'redis.tlsEnabled',
    'alerts.webhookUrl', 'alerts.secretFile', 'alerts.replicationLagMsMax', 'alerts.diskFreePercentMin', 'alerts.leaderChangesMax', 'alerts.leaderChangesWindowSeconds',
    'alerts.forSeconds', 'alerts.certificateDaysMin', 'alerts.evaluateIntervalMs', 'alerts.maxAttempts', 'alerts.retryBackoffMs', 'alerts.timeoutMs',
    'drills.enabled', 'drills.rtoTargetMs', 'drills.maxIntervalHours',
    'files.maxFileBytes', 'files.uploadIdleTimeoutMs',
    'database.inSyncDegrade',
  ];
  const leaves: string[] = [];
  const walk = (s: unknown, prefix: string): void => {
    let t = s as { _def: { innerType?: unknown; typeName: string }; shape?: Record<string, unknown> };
    while (t._def.innerType !== undefined) t = t._def.innerType as typeof t;
    if (t._def.typeName === 'ZodObject' && (prefix.split('.').length < 2 || prefix === 'database.external' || prefix === 'database.backup')) {
      for (const [k, v] of Object.entries(t.shape!)) walk(v, prefix === '' ? k : `${prefix}.${k}`);
    } else {
      leaves.push(prefix);
    }
  };
  walk(configSchema, '');
  assert.deepEqual(leaves.sort(), [...BUILT, ...UNBUILT.map((r) => r.path)].sort());
});

test('environment overrides', () => {
  const c = ok({ cluster: { electionTimeoutMs: 2000 } }, {
    QUORATE_CLUSTER_ELECTIONTIMEOUTMS: '800', QUORATE_NODE_NODENAME: 'x', quorate_cluster_loadbalanced: 'true',
    QUORATE_CLUSTER_PEERENDPOINTS: '["http://127.0.0.1:5202","http://127.0.0.1:5203"]',
    QUORATE_DATABASE_EXTERNAL_DBTYPE: 'postgres', QUORATE_SECURITY_TLS: 'off', QUORATE_NODE_PEERADDRESS: '127.0.0.1:5201',
    QUORATE_URL: 'http://x:1', QUORATE_TOKEN: 't', // the CLI's own: ignored
  });
  assert.equal(c.cluster.electionTimeoutMs, 800);
  assert.equal(c.node.nodeName, 'x');
  assert.equal(c.cluster.loadBalanced, true);
  assert.equal(c.database.external.dbType, 'postgres');
  assert.equal(c.database.writeQuorum, undefined);
  assert.equal(c.security.tls, 'off');
});

test('environment overrides: errors name the variable', () => {
  fails({}, /QUORATE_CLUSTER_BOGUS: unknown key "BOGUS" in cluster/, { QUORATE_CLUSTER_BOGUS: '1' });
  fails({}, /QUORATE_CLUSTER_HEARTBEATINTERVALMS: expected a number, got "fast"/, { QUORATE_CLUSTER_HEARTBEATINTERVALMS: 'fast' });
  fails({}, /QUORATE_CLUSTER_LOADBALANCED: expected true or false/, { QUORATE_CLUSTER_LOADBALANCED: 'maybe' });
  fails({}, /node\.role: must be one of .* \(set by QUORATE_NODE_ROLE\)/, { QUORATE_NODE_ROLE: 'boss' });
  fails({}, /QUORATE_DATABASE_BACKUP_NOPE: unknown key "NOPE" in database\.backup/, { QUORATE_DATABASE_BACKUP_NOPE: '1' });
  fails({}, /QUORATE_CLUSTER_PEERENDPOINTS: not valid JSON/, { QUORATE_CLUSTER_PEERENDPOINTS: '[oops' });
  fails({}, /^cluster\.coordination: "redis" needs redis\.enabled: true.* \(set by QUORATE_CLUSTER_COORDINATION\)$/, { QUORATE_CLUSTER_COORDINATION: 'redis' });
  fails({}, /^database\.backup\.schedule: must be a cron pattern.* \(set by QUORATE_DATABASE_BACKUP_SCHEDULE\)$/, { QUORATE_DATABASE_BACKUP_SCHEDULE: 'nightly' });
});

test('loadConfig: relative dataDir resolves against the file; bad JSON and missing file are ConfigErrors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-config-'));
  const file = join(dir, 'quorate.json');
  writeFileSync(file, JSON.stringify({ node: { nodeName: 'n', dataDir: 'd' } }));
  const c = loadConfig(file, {});
  assert.equal(c.node.dataDir, join(dir, 'd'));
  assert.equal(c.security.adminTokenFile, join(dir, 'd', 'admin.token'));
  writeFileSync(file, '{ "node": ');
  assert.throws(() => loadConfig(file, {}), (e: unknown) => e instanceof ConfigError && /is not valid JSON/.test(e.message));
  assert.throws(() => loadConfig(join(dir, 'missing.json'), {}), (e: unknown) => e instanceof ConfigError && /file not found/.test(e.message));
  writeFileSync(file, JSON.stringify({ cluster: { electionTimeoutMs: 300 } }));
  assert.throws(() => loadConfig(file, {}), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${file}: cluster.electionTimeoutMs:`));
  writeFileSync(file, JSON.stringify({ redis: { enabled: true, connectionString: 'redis://:hunter2@10.0.0.5:99999' } }));
  assert.throws(() => loadConfig(file, {}), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${file}: redis.connectionString: the value (not shown`) && !e.message.includes('hunter2'));
});

test('drills: off by default; enabled and rtoTargetMs load; a bad or unknown key is refused naming it', () => {
  const d = parseConfig({}, {});
  assert.deepEqual(d.drills, { enabled: false, rtoTargetMs: 15_000, maxIntervalHours: 0 });
  assert.deepEqual(parseConfig({ drills: { enabled: true, rtoTargetMs: 5000, maxIntervalHours: 168 } }, {}).drills, { enabled: true, rtoTargetMs: 5000, maxIntervalHours: 168 });
  assert.throws(() => parseConfig({ drills: { maxIntervalHours: -1 } }, {}), /drills\.maxIntervalHours/);
  assert.throws(() => parseConfig({ drills: { maxIntervalHours: 1.5 } }, {}), /drills\.maxIntervalHours/);
  assert.throws(() => parseConfig({ drills: { maxIntervalHours: '7d' } }, {}), /drills\.maxIntervalHours/);
  assert.throws(() => parseConfig({ drills: { rtoTargetMs: 0 } }, {}), /drills\.rtoTargetMs/);
  assert.throws(() => parseConfig({ drills: { enable: true } }, {}), /drills/);
});
