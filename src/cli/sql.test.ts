import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitStatements } from './sql.js';

describe('quorate sql: reading statements', () => {
  it('splits at top-level semicolons only, not inside strings, quoted names or comments', () => {
    const text = "CREATE TABLE \"a;b\" (x);\n-- a comment; with a semicolon\nINSERT INTO \"a;b\" VALUES ('x;y'); /* ; */ SELECT 1;\n";
    assert.deepEqual(splitStatements(text), ['CREATE TABLE "a;b" (x)', "-- a comment; with a semicolon\nINSERT INTO \"a;b\" VALUES ('x;y')", '/* ; */ SELECT 1']);
    assert.deepEqual(splitStatements('  ;; '), []);
    assert.throws(() => splitStatements("SELECT 'open"), /unterminated string literal/);
  });
});
