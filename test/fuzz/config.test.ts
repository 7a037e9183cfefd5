// Fuzzing the config: random values at every key of a valid config file,
// unknown keys at any depth, and random environment overrides. The loader
// either accepts the config or throws a ConfigError in which every problem
// names a key (its path, or the key/variable in the message); never another
// exception.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import { ConfigError, configSchema, parseConfig } from '../../src/config/index.js';
import { budget, timeoutMs } from './budget.js';

const BASE = {
  node: { nodeName: 'node1', dataDir: '/tmp/quorate-fuzz', apiAddress: '127.0.0.1:7101', peerAddress: '127.0.0.1:5201', role: 'voter' },
  cluster: { haId: 'fuzz', peerEndpoints: ['http://127.0.0.1:5202', 'http://127.0.0.1:5203'], electionTimeoutMs: 1000, heartbeatIntervalMs: 100 },
  database: { mode: 'local-sync' },
  security: { tls: 'off' },
};

function unwrap(s: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s._def.innerType as z.ZodTypeAny;
    else if (s instanceof z.ZodEffects) s = s._def.schema as z.ZodTypeAny;
    else return s;
  }
}

/** Every key path of the schema (objects and leaves). */
function paths(s: z.ZodTypeAny, prefix: string[] = []): string[][] {
  const u = unwrap(s);
  if (!(u instanceof z.ZodObject)) return [prefix];
  const out: string[][] = prefix.length > 0 ? [prefix] : [];
  for (const [k, v] of Object.entries(u.shape as Record<string, z.ZodTypeAny>)) out.push(...paths(v, [...prefix, k]));
  return out;
}
const PATHS = paths(configSchema);

function setAt(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (const k of path.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('', '0', -1, 0, 1e308, 'auto', 'off', [], {}, null, true, 'http://', '127.0.0.1:0', '::1'));
const fileMutation = fc.oneof(
  fc.tuple(fc.constantFrom(...PATHS), value).map(([p, v]) => ({ path: p, value: v as unknown })),
  fc.tuple(fc.constantFrom(...PATHS), fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,8}$/), value).map(([p, k, v]) => ({ path: [...p, k], value: v as unknown })),
);
const envVar = fc.tuple(fc.constantFrom(...PATHS), fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('1', 'true', '{', '[1', 'x,y', '')))
  .map(([p, v]) => ({ name: `QUORATE_${p.map((k) => k.toUpperCase()).join('_')}`, value: v }));

/** The problem names a key: a path, or a key path / variable in its message. */
function namesAKey(e: ConfigError, mutated: readonly string[], variables: readonly string[]): boolean {
  return e.issues.every((i) => i.path !== '' || /\b[a-z][A-Za-z]*\.[a-z][A-Za-z.]*/.test(i.message) || variables.some((v) => i.message.includes(v)) || mutated.some((k) => i.message.includes(k)));
}

describe('fuzz: config files and environment overrides', { timeout: timeoutMs(60_000) }, () => {
  it('every refusal is a ConfigError naming the key', () => {
    fc.assert(fc.property(fc.array(fileMutation, { maxLength: 3 }), fc.array(envVar, { maxLength: 2 }), (muts, envs) => {
      const obj = structuredClone(BASE) as Record<string, unknown>;
      // Each value copied: a config comes from JSON text, where no two keys share an object (fast-check may reuse one while shrinking).
      for (const m of muts) setAt(obj, m.path, m.value === undefined ? undefined : JSON.parse(JSON.stringify(m.value)) as unknown);
      const env: NodeJS.ProcessEnv = Object.fromEntries(envs.map((e) => [e.name, e.value]));
      try {
        parseConfig(obj, env);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw new Error(`not a ConfigError: ${(e as Error)?.stack ?? String(e)}`);
        assert.ok(e.issues.length > 0);
        const keys = muts.map((m) => m.path[m.path.length - 1]!);
        assert.ok(namesAKey(e, keys, envs.map((x) => x.name)), `an error names no key: ${e.message}`);
      }
    }), budget(300));
  });
});
