// The rules of `database.mode: "external-shared"` (src/external):
// - it needs database.external.connectionString (a postgres:// URL or
//   libpq key=value words); the message never echoes it (it may hold a password);
// - it is led by the Redis lease (coordination "redis", two or more nodes) or
//   by a Raft group of the configured members (coordination "raft",
//   src/external/raft-lead.ts), which needs three or more voting members:
//   fewer is refused naming cluster.peerEndpoints (a two-member Raft group
//   cannot elect after losing one; two nodes use the Redis lease). With
//   "raft", redis.enabled (the leader mirror) and database.writeQuorum are
//   not used by this mode: refused naming them;
// - a connection string with local-sync would be silently unused: refused;
// - leader-only features the external-shared node does not run (virtual IP,
//   failover modes, observer/dr roles, scheduled backups, jobs, failover on a
//   failing check) are refused naming their key rather than ignored.
// (coordination "redis" with local-sync is refused by ./redis-rules.ts.)
import type { ConfigIssue } from './errors.js';
import type { RawConfig } from './schema.js';

export function externalIssues(c: RawConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  const cs = c.database.external.connectionString;
  if (c.database.mode === 'external-shared') {
    if (cs === '') add('database.external.connectionString', 'is required with database.mode "external-shared": every node connects to this PostgreSQL (e.g. "postgres://quorate:PASSWORD@db.example:5432/quorate")');
    else if (!/^postgres(ql)?:\/\//.test(cs) && !/(^|\s)(host|dbname|user)=/.test(cs)) {
      add('database.external.connectionString', 'the value (not shown: it may hold a password) is neither a postgres:// (postgresql://) URL nor libpq key=value words (host=… dbname=… user=…)');
    }
    if (c.cluster.coordination === 'raft') {
      const members = 1 + new Set(c.cluster.peerEndpoints.map((e) => e.replace(/^[a-z]+:\/\//, '').toLowerCase())).size;
      if (members < 3) {
        add('cluster.peerEndpoints', `lists ${members - 1} other node${members === 2 ? '' : 's'}, but "external-shared" led by Raft (cluster.coordination "raft") needs at least 3 voting members: a ${members}-member Raft group cannot elect a leader after losing one. List the other members here, or for ${members === 2 ? 'two nodes' : 'fewer nodes'} set cluster.coordination to "redis" (the Redis leader lease, redis.enabled: true)`);
      }
      if (c.redis.enabled) add('redis.enabled', 'true is not used with database.mode "external-shared" led by Raft (cluster.coordination "raft"): the leader mirror to Redis is not available in this mode; set it to false, or set cluster.coordination to "redis" to be led by the Redis lease');
      if (c.database.writeQuorum !== undefined) add('database.writeQuorum', 'is not used with database.mode "external-shared": the writes land in PostgreSQL, and the Raft group commits its token claims by majority; remove it');
    }
    // Leader-only features a Raft node runs that the external-shared node does not run yet: refused rather than ignored.
    const notHere = (path: string, what: string) => add(path, `${what} is not available with database.mode "external-shared" in this version; remove it (docs/operations.md "External-shared mode")`);
    if (c.cluster.virtualIp !== '') notHere('cluster.virtualIp', 'the virtual IP');
    if (c.cluster.failover !== 'automatic') notHere('cluster.failover', `failover mode "${c.cluster.failover}" (leadership fails over automatically: the Redis lease, or a Raft election)`);
    if (c.node.role !== 'voter') notHere('node.role', `role "${c.node.role}" (every node may lead; leave node.role at "voter")`);
    if (c.database.backup.enabled) notHere('database.backup.enabled', 'scheduled backups by quorate (back up PostgreSQL instead, e.g. pg_dump)');
    if (c.jobs.length > 0) notHere('jobs', 'leader-only scheduled jobs');
    if (c.health.failoverOnFailure) notHere('health.failoverOnFailure', 'failover on a failing health check (it needs a switchover)');
    if (c.drills.enabled) notHere('drills.enabled', 'failover drills (`quorate drill`)');
    if (c.drills.maxIntervalHours > 0) notHere('drills.maxIntervalHours', 'a drill period (there are no drills to be overdue)');
    if (c.security.apiTls === 'auto') notHere('security.apiTls', 'the API over HTTPS from the automatic cluster CA ("auto"); give {"certFile","keyFile"} instead, or leave it unset');
  } else {
    if (cs !== '') add('database.external.connectionString', `is used only with database.mode "external-shared" (this file says "${c.database.mode}", where every node keeps its own copy): remove it, or set database.mode to "external-shared"`);
    if (c.database.external.sqlSchema !== 'quorate_sql') add('database.external.sqlSchema', `is used only with database.mode "external-shared" (with "${c.database.mode}", /v1/db/* runs the replicated SQLite database): remove it`);
  }
  return issues;
}
