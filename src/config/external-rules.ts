// The rules of `database.mode: "external-shared"` (src/external):
// - it needs database.external.connectionString (a postgres:// URL or
//   libpq key=value words); the message never echoes it (it may hold a password);
// - it is led by the Redis lease in this version: coordination "raft" on a
//   shared PostgreSQL (three or more Raft voters electing who writes) is not
//   built, so that combination is refused naming database.mode;
// - a connection string with local-sync would be silently unused: refused.
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
  } else if (cs !== '') {
    add('database.external.connectionString', `is used only with database.mode "external-shared" (this file says "${c.database.mode}", where every node keeps its own copy): remove it, or set database.mode to "external-shared"`);
  }
  return issues;
}
