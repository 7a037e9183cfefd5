import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { TokenStore, roleAllows } from './auth.js';
import { ApiError } from './errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'quorate-auth-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function store(intervalMs = 0): TokenStore {
  return new TokenStore({ tokensFile: join(dir, 'tokens.json'), adminTokenFiles: [join(dir, 'admin.token')], logger: pino({ level: 'silent' }), checkIntervalMs: intervalMs });
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof ApiError ? `${err.status} ${err.code}` : 'other';
  }
  return 'ok';
}

describe('TokenStore', () => {
  test('roles rank reader < operator < admin', () => {
    assert.ok(roleAllows('admin', 'operator'));
    assert.ok(roleAllows('operator', 'reader'));
    assert.ok(!roleAllows('reader', 'operator'));
    assert.ok(!roleAllows('operator', 'admin'));
  });

  test('accepts admin.token as admin and tokens.json entries with their roles', () => {
    writeFileSync(join(dir, 'admin.token'), 'adm\n');
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 'op', role: 'operator', name: 'ops' }, { token: 'rd', role: 'reader', name: 'r' }]));
    const s = store();
    assert.deepEqual(s.verify('adm'), { name: 'admin', role: 'admin' });
    assert.deepEqual(s.verify('op'), { name: 'ops', role: 'operator' });
    assert.equal(s.verify('nope'), undefined);
    assert.equal(s.verify(''), undefined);
    assert.equal(code(() => s.authorize('Bearer rd', 'operator')), '403 forbidden');
    assert.equal(code(() => s.authorize('Bearer op', 'operator')), 'ok');
    assert.equal(code(() => s.authorize(undefined, 'reader')), '401 unauthorized');
    assert.equal(code(() => s.authorize('bearer   adm', 'admin')), 'ok');
  });

  test('entries with a bad role or empty token are ignored', () => {
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 'x', role: 'root', name: 'bad' }, { token: '', role: 'admin' }, { token: 'ok', role: 'reader' }]));
    const s = store();
    assert.equal(s.size, 1);
    assert.equal(s.verify('x'), undefined);
  });

  test('a token listed twice in tokens.json keeps its first entry; the second is refused, naming both (fuzz seed -621838676)', () => {
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 'tok-a', role: 'admin', name: 'a' }, { token: ' tok-a ', role: 'reader', name: 'b' }]));
    const warnings: string[] = [];
    const s = new TokenStore({
      tokensFile: join(dir, 'tokens.json'), adminTokenFiles: [],
      logger: pino({ level: 'warn' }, { write: (l: string) => { warnings.push(String((JSON.parse(l) as { msg: string }).msg)); } }),
    });
    assert.deepEqual(s.verify('tok-a'), { name: 'a', role: 'admin' });
    assert.equal(s.size, 1);
    assert.ok(warnings.some((w) => w.startsWith('tokens[1].token: the same token as tokens[0]')), JSON.stringify(warnings));
  });

  test('re-reads changed files, keeps the last good set when a file turns malformed, forgets a removed file', () => {
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 't1', role: 'reader', name: 'a' }]));
    const s = store();
    assert.ok(s.verify('t1'));
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 't2', role: 'reader', name: 'b' }, { token: 't3', role: 'admin', name: 'c' }]));
    assert.equal(s.verify('t1'), undefined);
    assert.ok(s.verify('t2'));
    writeFileSync(join(dir, 'tokens.json'), '[{"token": "t4", ');
    assert.ok(s.verify('t2'), 'a half-written file keeps the previous tokens');
    unlinkSync(join(dir, 'tokens.json'));
    assert.equal(s.verify('t2'), undefined);
  });

  test('checks the files at most once per interval', () => {
    writeFileSync(join(dir, 'admin.token'), 'first');
    const s = store(60_000);
    assert.ok(s.verify('first'));
    writeFileSync(join(dir, 'admin.token'), 'second-token');
    assert.ok(s.verify('first'), 'still cached within the interval');
    s.refresh(true);
    assert.ok(s.verify('second-token'));
  });
});
