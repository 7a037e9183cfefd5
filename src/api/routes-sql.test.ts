import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from './errors.js';
import type { SqlService } from './ports.js';
import { parseExecute } from './routes-sql.js';

const limits = { statementBytes: 64, statementsPerRequest: 3, paramsPerStatement: 2, queryRows: 10, queryBytes: 1000, queryTimeoutMs: 1000 };
const service = { limits } as unknown as SqlService;

const fails = (body: unknown, code: string, re: RegExp): void => {
  assert.throws(() => parseExecute(service, body), (e: unknown) => e instanceof ApiError && e.code === code && re.test(e.message), JSON.stringify(body));
};

describe('POST /v1/db/execute: request checks before anything is proposed', () => {
  it('parses statements with typed parameters; transaction defaults to true', () => {
    const r = parseExecute(service, { statements: [['INSERT INTO t VALUES (?, ?)', 1.5, { base64: 'AAE=' }], 'DELETE FROM t', ['UPDATE t SET a = ?', true]] });
    assert.equal(r.transaction, true);
    assert.deepEqual(r.statements.map((s) => s.sql), ['INSERT INTO t VALUES (?, ?)', 'DELETE FROM t', 'UPDATE t SET a = ?']);
    assert.deepEqual(r.statements[0]!.params, [1.5, new Uint8Array([0, 1])]);
    assert.deepEqual(r.statements[2]!.params, [1]);
    assert.equal(parseExecute(service, { statements: ['SELECT 1'], transaction: false }).transaction, false);
  });

  it('enforces the named limits and names the offending field', () => {
    fails({ statements: ['a', 'b', 'c', 'd'] }, 'sql_too_many_statements', /4 statements; the limit is 3/);
    fails({ statements: [['SELECT 1'], ['SELECT ' + 'x'.repeat(80)]] }, 'sql_statement_too_large', /statements\[1\]\[0\] is 87 bytes; the limit is 64/);
    fails({ statements: [['SELECT ?', 1, 2, 3]] }, 'invalid_request', /statements\[0\]: at most 2 parameters/);
    fails({ statements: [['SELECT ?', { blob: 'x' }]] }, 'invalid_request', /statements\[0\]\[0\]: an object parameter must be \{"base64"/);
    fails({ statements: [] }, 'invalid_request', /statements: must be a non-empty array/);
    fails({ statements: [['  ']] }, 'invalid_request', /statements\[0\]\[0\]: must be a non-empty SQL string/);
    fails({ statements: ['SELECT 1'], transaction: 'yes' }, 'invalid_request', /transaction: must be true or false/);
    fails({ statements: ['SELECT 1'], tx: true }, 'invalid_request', /tx: unknown field/);
  });
});
