import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createKvState } from './kv-state.js';
import { packCanonical } from './commands.js';
import { encodeEnvelope } from './envelope.js';
import { TOKENS_MACHINE_ID, encodeTokensPayload, type TokensCommand } from './tokens.js';
import { AUDIT_MACHINE_ID, encodeAuditPayload, type AuditCommand } from './audit.js';

const sha = (s: string) => createHash('sha256').update(s).digest();
const tok = (c: TokensCommand, at = 1000) => encodeEnvelope({ machine: TOKENS_MACHINE_ID, at, payload: encodeTokensPayload(c) });
const create = (name: string, expiresAt?: number): TokensCommand => ({ op: 'create', name, role: 'reader', sha256: sha(name), expiresAt, createdBy: 'admin' });
const aud = (action: string, max = 3) => {
  const c: AuditCommand = { max, actor: 'admin', action, target: undefined, address: '10.0.0.1', node: 'n1', status: 200, result: 'ok', detail: undefined };
  return encodeEnvelope({ machine: AUDIT_MACHINE_ID, at: 5000, payload: encodeAuditPayload(c) });
};

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

test('tokens: created, looked up by hash, revoked; a duplicate name keeps the first', () => {
  const a = createKvState();
  a.registry.apply(1, tok(create('a')));
  a.registry.apply(2, tok({ ...create('a'), sha256: sha('other') } as TokensCommand));
  assert.equal(a.tokens.byHash(sha('a'))?.name, 'a');
  assert.equal(a.tokens.byHash(sha('other')), undefined);
  assert.equal(a.tokens.get('a')?.createdAt, 1000);
  a.registry.apply(3, tok({ op: 'revoke', name: 'a' }));
  assert.equal(a.tokens.byHash(sha('a')), undefined);
  assert.equal(a.tokens.isEmpty(), true);
});

test('tokens: a create drops tokens expired by the state clock', () => {
  const a = createKvState();
  a.registry.apply(1, tok(create('old', 1500), 1000));
  a.registry.apply(2, tok(create('new'), 2000));
  assert.deepEqual(a.tokens.list().map((t) => t.name), ['new']);
});

test('tokens and audit: kept in composite snapshots and restored elsewhere with equal checksums', async () => {
  const a = createKvState();
  a.registry.apply(1, tok(create('b', 99_999)));
  a.registry.apply(2, tok(create('a')));
  for (let i = 0; i < 5; i++) a.registry.apply(3 + i, aud(`act${i}`));
  assert.deepEqual(a.audit.records().map((r) => [r.seq, r.action]), [[3, 'act2'], [4, 'act3'], [5, 'act4']], 'bounded by the max in each command');
  const chunks = await collect(a.registry.snapshot('composite'));
  const b = createKvState();
  await b.registry.restore((async function* () { yield* chunks; })());
  const plain = (l: typeof a.tokens.list extends () => infer R ? R : never) => l.map((t) => ({ ...t, sha256: Buffer.from(t.sha256).toString('hex') }));
  assert.deepEqual(plain(b.tokens.list()), plain(a.tokens.list()));
  assert.deepEqual(b.audit.records(), a.audit.records());
  assert.equal(b.registry.checksum(), a.registry.checksum());
});

test('tokens and audit: malformed payloads apply as invalid_command naming the field and change nothing', () => {
  const a = createKvState();
  let index = 0;
  const bad = (machine: string, v: unknown[]) => a.registry.apply(++index, encodeEnvelope({ machine, at: 1, payload: packCanonical(v) }));
  const r1 = bad(TOKENS_MACHINE_ID, [1, 'create', 'n', 'root', sha('x'), null, 'a']) as { error: string; message: string };
  assert.equal(r1.error, 'invalid_command');
  assert.match(r1.message, /tokens\.role/);
  const r2 = bad(AUDIT_MACHINE_ID, [1, 10, 'a', '', null, 'addr', 'n', 200, 'ok', null]) as { error: string; message: string };
  assert.match(r2.message, /audit\.action/);
  assert.equal(a.tokens.isEmpty(), true);
  assert.equal(a.audit.isEmpty(), true);
});
