// `/v1/db/execute` in external-shared mode when the connection to PostgreSQL
// breaks during COMMIT (src/external/pg-sql.ts): the answer is
// `commit_unknown` (never a success, never a plain failure that invites a
// blind retry), and a retry with the same Idempotency-Key applies the
// statements exactly once whichever way the COMMIT went. A TCP proxy between
// the service and a private PostgreSQL forwards the COMMIT and then drops the
// connection before PostgreSQL's answer reaches the service (the transaction
// committed), or drops it with the COMMIT unsent (it did not). The KV and
// everything else in this mode go through the log append, tested the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { PgLog } from '../../src/external/pg-log.js';
import { PgSqlService } from '../../src/external/pg-sql.js';
import { NodeError } from '../../src/node/errors.js';
import { SQL_LIMITS } from '../../src/sql/command.js';
import type { SqlExecResult } from '../../src/state/index.js';
import { TestPostgres } from '../support/pg-server.js';
import { captureLogger } from '../support/log.js';
import { reservePorts } from '../support/ports.js';

/** The simple-protocol Query message `COMMIT`: 'Q', length 11 (itself + "COMMIT\0"), the text. */
const COMMIT_QUERY = Buffer.concat([Buffer.from('Q'), Buffer.from([0, 0, 0, 11]), Buffer.from('COMMIT\0')]);

type Cut = 'none' | 'after-commit' | 'before-commit';

/** A loopback proxy to PostgreSQL that, when armed, cuts the connection that sends COMMIT (once). */
class CommitCutter {
  cut: Cut = 'none';
  cuts = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  private constructor(server: Server) { this.#server = server; }

  static async start(port: number, pgPort: number): Promise<CommitCutter> {
    const server = createServer();
    const p = new CommitCutter(server);
    server.on('connection', (client) => p.#pipe(client, pgPort));
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve); });
    return p;
  }

  #pipe(client: Socket, pgPort: number): void {
    const upstream = connect({ host: '127.0.0.1', port: pgPort });
    for (const s of [client, upstream]) { this.#sockets.add(s); s.on('close', () => this.#sockets.delete(s)); s.on('error', () => undefined); }
    let dropReply = false;
    client.on('data', (chunk: Buffer) => {
      if (this.cut !== 'none' && chunk.includes(COMMIT_QUERY)) {
        const how = this.cut;
        this.cut = 'none';
        this.cuts++;
        if (how === 'before-commit') {
          // The COMMIT never reaches PostgreSQL: the transaction is rolled back when its backend sees the end.
          client.destroy();
          upstream.destroy();
          return;
        }
        dropReply = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (dropReply) {
        // PostgreSQL answered the COMMIT (CommandComplete): it committed. The service never hears it.
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

test('an execute whose COMMIT loses its connection answers commit_unknown, and its retry with the same Idempotency-Key applies it exactly once', async () => {
  const db = await TestPostgres.start();
  const [proxyPort] = await reservePorts(1);
  const proxy = await CommitCutter.start(proxyPort!, db.port);
  const viaProxy = db.connectionString.replace(`:${db.port}/`, `:${proxyPort}/`);
  assert.notEqual(viaProxy, db.connectionString, 'the service connects through the proxy');
  const log = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info') });
  const svc = new PgSqlService({
    connectionString: viaProxy, schema: 'app', limits: SQL_LIMITS, logger: captureLogger('info'),
    fence: () => ({ writable: true, token: 7 }), fenced: () => undefined, notLeader: () => new NodeError('not_leader', 'not the leader'), appliedIndex: () => 0,
  });
  const exec = (sql: string, params: (string | number)[], key: string) =>
    svc.execute({ statements: [{ sql, params }], transaction: true }, { idempotencyKey: key }) as Promise<SqlExecResult>;
  const count = async (v: string) => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM app.t WHERE v = $1', [v]))[0]!.n);
  try {
    await log.migrate();
    await svc.prepare();
    assert.deepEqual(await log.takeover(7, 'a/1'), { token: 7, owner: 'a/1' });
    await exec('CREATE TABLE t (id bigserial PRIMARY KEY, v text)', [], 'create');

    for (const cut of ['after-commit', 'before-commit'] as const) {
      proxy.cut = cut;
      const cutsBefore = proxy.cuts;
      await assert.rejects(exec('INSERT INTO t (v) VALUES ($1)', [cut], `insert-${cut}`), (e: unknown) => {
        assert.ok(e instanceof NodeError, String(e));
        assert.equal(e.code, 'commit_unknown', e.message);
        assert.match(e.message, new RegExp(`^the connection to PostgreSQL at 127\\.0\\.0\\.1:${proxyPort}/\\S+ failed during COMMIT .*may or may not have been applied`));
        return true;
      }, `${cut}: the broken COMMIT is answered commit_unknown`);
      assert.equal(proxy.cuts, cutsBefore + 1, 'the proxy cut the COMMIT');
      assert.equal(await count(cut), cut === 'after-commit' ? 1 : 0, `${cut}: what PostgreSQL holds`);
      // The client retries with the same key: the statements land once, and the answer is the first one's when it committed.
      const again = await exec('INSERT INTO t (v) VALUES ($1)', [cut], `insert-${cut}`);
      assert.equal(again.failed, undefined);
      assert.equal(again.sql[0]!.rowsAffected, 1);
      assert.equal(await count(cut), 1, `${cut}: applied exactly once after the retry`);
      const third = await exec('INSERT INTO t (v) VALUES ($1)', [cut], `insert-${cut}`);
      assert.deepEqual(third, again, 'a further retry gets the recorded answer');
      assert.equal(await count(cut), 1);
    }
  } finally {
    await svc.close();
    await log.close();
    await proxy.stop();
    await db.stop();
  }
});

test('a log append whose COMMIT loses its connection answers commit_unknown; the log holds the entry only if PostgreSQL got the COMMIT, and stays contiguous', async () => {
  const db = await TestPostgres.start();
  const [proxyPort] = await reservePorts(1);
  const proxy = await CommitCutter.start(proxyPort!, db.port);
  const log = new PgLog({ connectionString: db.connectionString.replace(`:${db.port}/`, `:${proxyPort}/`), logger: captureLogger('info') });
  const enc = (s: string) => new TextEncoder().encode(s);
  try {
    await log.migrate();
    await log.takeover(3, 'a/1');
    assert.equal(await log.append(3, [enc('one')]), 1);
    for (const [cut, end] of [['after-commit', 2], ['before-commit', 2]] as const) {
      proxy.cut = cut;
      await assert.rejects(log.append(3, [enc(cut)]), (e: unknown) => {
        assert.ok(e instanceof NodeError, String(e));
        assert.equal(e.code, 'commit_unknown', e.message);
        assert.match(e.message, /failed during COMMIT .*may or may not have been applied: read the key back/);
        return true;
      });
      assert.equal(await log.lastIndex(), end, `${cut}: the log's end`);
    }
    assert.equal(await log.append(3, [enc('next')]), 3, 'the next append follows without a gap');
    assert.deepEqual((await log.read(0, 10)).map((r) => new TextDecoder().decode(r.payload)), ['one', 'after-commit', 'next']);
  } finally {
    await log.close();
    await proxy.stop();
    await db.stop();
  }
});
