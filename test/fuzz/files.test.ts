// Fuzzing the schema-validated files of a data dir (bootstrap.json,
// ha-state.json, tokens.json): random edits of valid files. Each is either
// read as a well-formed value, or refused with a message naming the file and
// the key (or the JSON position); tokens.json never yields a token that is
// not a well-formed entry of the file, and names every entry it ignores.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { parseBootstrap } from '../../src/node/members.js';
import { HA_STATE_FILE, readHaState } from '../../src/storage/ha-state.js';
import { InvalidHaStateError } from '../../src/storage/errors.js';
import { TokenStore } from '../../src/api/auth.js';
import { captureLogger } from '../support/log.js';
import { budget, timeoutMs } from './budget.js';

const BOOTSTRAP = { haId: 'prod', members: [{ id: 1, peerUrl: '10.0.0.1:5201' }, { id: 2, peerUrl: '10.0.0.2:5201' }], self: { id: 3, peerUrl: '10.0.0.3:5201' }, peers: [{ id: 1, peerUrl: '10.0.0.1:5201' }], enrolledWithToken: 'abc' };
const HA = { ConsensusID: '1', ConsensusAddr: '10.0.0.1:5201', HaID: 'prod', Observer: false, Passive: true, ApiUrl: 'http://10.0.0.1:7101', ActiveUri: 'http://10.0.0.2:7101', Enabled: true };
const TOKENS = [{ token: 'tok-a', role: 'admin', name: 'a' }, { token: 'tok-b', role: 'reader', name: 'b' }];

type Json = unknown;
/** Paths to every value of a JSON document. */
function paths(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return [prefix, ...v.flatMap((x, i) => paths(x, [...prefix, i]))];
  if (typeof v === 'object' && v !== null) return [prefix, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...prefix, k]))];
  return [prefix];
}
function edit(doc: Json, path: readonly (string | number)[], value: Json | undefined): Json {
  if (path.length === 0) return value;
  const copy = structuredClone(doc) as Record<string | number, Json>;
  let cur = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, Json>;
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(cur)) cur.splice(Number(last), 1);
    else delete cur[last];
  } else cur[last] = value;
  return copy;
}
/** A random edit of `doc` as text: a value replaced or removed, a key added, or a character changed. */
const edited = (doc: Json) => fc.oneof(
  fc.tuple(fc.constantFrom(...paths(doc)), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined })).map(([p, v]) => JSON.stringify(edit(doc, p, v as Json)) ?? ''),
  fc.tuple(fc.constantFrom(...paths(doc).filter((p) => { let c: Json = doc; for (const k of p) c = (c as Record<string | number, Json>)[k]; return typeof c === 'object' && c !== null && !Array.isArray(c); })), fc.stringMatching(/^[A-Za-z]{1,10}$/), fc.jsonValue({ maxDepth: 1 }))
    .map(([p, k, v]) => JSON.stringify(edit(doc, [...p, k], v as Json))),
  fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 1 })).map(([i, ch]) => {
    const t = JSON.stringify(doc);
    const at = i % t.length;
    return t.slice(0, at) + ch + t.slice(at + 1);
  }),
);

const KEYS_BOOTSTRAP = /haId|members|self|peers|enrolledWithToken|top level|JSON/;

describe('fuzz: schema-validated files', { timeout: timeoutMs(60_000) }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'quorate-fuzz-files-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('bootstrap.json: read well-formed or refused naming the file and the key', () => {
    const path = join(dir, 'bootstrap.json');
    fc.assert(fc.property(edited(BOOTSTRAP), (text) => {
      let b;
      try {
        b = parseBootstrap(text, path);
      } catch (e) {
        const m = (e as Error).message;
        assert.ok(m.includes(path), `names the file: ${m}`);
        assert.match(m, KEYS_BOOTSTRAP, `names the key: ${m}`);
        return;
      }
      assert.deepEqual(parseBootstrap(JSON.stringify(b), path), b, 'what is read is well-formed');
    }), budget(300));
  });

  it('ha-state.json: read well-formed or refused naming the file and the field', async () => {
    await fc.assert(fc.asyncProperty(edited(HA), async (text) => {
      writeFileSync(join(dir, HA_STATE_FILE), text);
      try {
        await readHaState(dir);
      } catch (e) {
        assert.ok(e instanceof InvalidHaStateError, String(e));
        assert.ok(e.message.includes(join(dir, HA_STATE_FILE)), e.message);
        assert.match(e.message, /ConsensusID|ConsensusAddr|ConsensusEnabled|HaID|Observer|Passive|ApiUrl|ActiveUri|Enabled|LoadBalanced|Virt|root|JSON|Unrecognized key/, e.message);
      }
    }), budget(300));
  });

  it('tokens.json: only well-formed entries are accepted; every refusal names the file and the entry', () => {
    const path = join(dir, 'tokens.json');
    fc.assert(fc.property(edited(TOKENS), (text) => {
      writeFileSync(path, text);
      const log = captureLogger();
      const store = new TokenStore({ tokensFile: path, adminTokenFiles: [], logger: log });
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const warnings = log.lines.filter((l) => l['level'] === 'warn');
      if (!Array.isArray(parsed)) {
        assert.equal(store.size, 0);
        assert.ok(warnings.some((w) => w['file'] === path), 'a malformed file is named');
        return;
      }
      const firstOf = new Map<string, number>();
      parsed.forEach((item: unknown, i) => {
        const o = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
        const wellFormed = typeof o['token'] === 'string' && o['token'].trim() !== '' && ['admin', 'operator', 'reader'].includes(o['role'] as string);
        const token = wellFormed ? (o['token'] as string).trim() : '';
        // A token listed again is refused (seed -621838676: the same token as admin, then as reader); the first applies.
        const ok = wellFormed && !firstOf.has(token);
        if (ok) firstOf.set(token, i);
        if (ok) assert.equal(store.verify(token)?.role, o['role'], `entry ${i} accepted with its role`);
        else assert.ok(warnings.some((w) => w['file'] === path && String(w['msg']).startsWith(`tokens[${i}].`)), `entry ${i} refused naming it: ${JSON.stringify(warnings)}`);
      });
    }), budget(300));
  });
});
