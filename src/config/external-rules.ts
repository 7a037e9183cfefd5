// The rules of `database.mode: "external-shared"` (src/external):
// - it needs database.external.connectionString (a postgres:// URL or
//   libpq key=value words); the message never echoes it (it may hold a password);
// - it is led by the Redis lease in this version: coordination "raft" on a
//   shared PostgreSQL (three or more Raft voters electing who writes) is not
//   built, so that combination is refused naming database.mode;
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
    if (c.cluster.coordination !== 'redis') {
      add('database.mode', '"external-shared" is led by the Redis leader lease in this version: set cluster.coordination to "redis" and redis.enabled to true (with redis.connectionString); Raft-elected leaders on a shared PostgreSQL are not available');
    }
    // Leader-only features a Raft node runs that the external-shared node does not run yet: refused rather than ignored.
    const notHere = (path: string, what: string) => add(path, `${what} is not available with database.mode "external-shared" in this version; remove it (docs/operations.md "External-shared mode")`);
    if (c.cluster.virtualIp !== '') notHere('cluster.virtualIp', 'the virtual IP');
    if (c.cluster.failover !== 'automatic') notHere('cluster.failover', `failover mode "${c.cluster.failover}" (the Redis lease fails over automatically)`);
    if (c.node.role !== 'voter') notHere('node.role', `role "${c.node.role}" (every node may take the lease; leave node.role at "voter")`);
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
