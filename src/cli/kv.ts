// kv get | put | del | ls
import { readFileSync } from 'node:fs';
import { UsageError, duration, int, str } from './args.js';
import { EXIT, cell, table, type Verb, type Context } from './command.js';

function one(ctx: Context, n: number, names: string): string[] {
  const p = ctx.args.positionals;
  if (p.length !== n) throw new UsageError(`"quorate ${ctx.command.name}" takes ${names}, got ${p.length === 0 ? 'none' : p.map((s) => JSON.stringify(s)).join(' ')}`, ctx.command.name);
  return [...p];
}

const get: Verb = {
  name: 'kv get',
  usage: 'KEY [--consistency linearizable|stale]',
  flags: [{ name: 'consistency', type: 'string', value: 'MODE', help: 'linearizable (default) or stale (served locally, may lag)' }],
  examples: ['quorate kv get config/mode', 'quorate kv get config/mode --json', 'quorate kv get config/mode --consistency stale'],
  remote: true,
  async run(ctx) {
    const [key] = one(ctx, 1, 'one KEY');
    const consistency = str(ctx.args, 'consistency');
    if (consistency !== undefined && consistency !== 'linearizable' && consistency !== 'stale') throw new UsageError(`--consistency must be linearizable or stale, got ${JSON.stringify(consistency)}`, ctx.command.name);
    const e = await ctx.client().kvGet(key!, consistency !== undefined ? { consistency } : {});
    if (e === undefined) {
      ctx.io.err(`Error: key ${JSON.stringify(key)} not found`);
      return EXIT.failed;
    }
    ctx.print(e, () => e.value);
    return EXIT.ok;
  },
};

const put: Verb = {
  name: 'kv put',
  usage: 'KEY VALUE [--if-revision N] [--ttl 30s]',
  description: 'Prints the new revision. --if-revision makes it a compare-and-swap (0 = the key must not exist); a mismatch exits 1 and shows the current revision.',
  flags: [
    { name: 'if-revision', type: 'int', value: 'N', help: 'write only if the key is at revision N (0 = must not exist)' },
    { name: 'ttl', type: 'duration', value: 'DURATION', help: 'delete the key after this long (e.g. 30s)' },
  ],
  examples: ['quorate kv put config/mode active', 'quorate kv put lock/job1 me --if-revision 0 --ttl 30s', 'cat cert.pem | quorate kv put certs/web -'],
  remote: true,
  async run(ctx) {
    const [key, raw] = one(ctx, 2, 'KEY and VALUE');
    const value = raw === '-' ? readFileSync(0, 'utf8') : raw!;
    const ifRevision = int(ctx.args, 'if-revision');
    const ttlMs = duration(ctx.args, 'ttl');
    const r = await ctx.client().kvPut(key!, value, { ...(ifRevision !== undefined ? { ifRevision } : {}), ...(ttlMs !== undefined ? { ttlMs } : {}) });
    ctx.print(r, () => `OK revision ${cell(r.revision)}`);
    return EXIT.ok;
  },
};

const del: Verb = {
  name: 'kv del',
  usage: 'KEY [--if-revision N]',
  flags: [{ name: 'if-revision', type: 'int', value: 'N', help: 'delete only if the key is at revision N' }],
  examples: ['quorate kv del config/mode', 'quorate kv del lock/job1 --if-revision 12'],
  remote: true,
  async run(ctx) {
    const [key] = one(ctx, 1, 'one KEY');
    const ifRevision = int(ctx.args, 'if-revision');
    const r = await ctx.client().kvDelete(key!, ifRevision !== undefined ? { ifRevision } : {});
    ctx.print(r, () => (r.deleted ? `deleted (revision ${cell(r.revision)})` : `key ${JSON.stringify(key)} did not exist (revision ${cell(r.revision)})`));
    return EXIT.ok;
  },
};

const ls: Verb = {
  name: 'kv ls',
  usage: '[--prefix P] [--limit N]',
  flags: [
    { name: 'prefix', type: 'string', value: 'P', help: 'only keys starting with P' },
    { name: 'limit', type: 'int', value: 'N', help: 'at most N keys (server default otherwise)' },
  ],
  examples: ['quorate kv ls', 'quorate kv ls --prefix config/ --limit 100 --json'],
  remote: true,
  async run(ctx) {
    one(ctx, 0, 'no positional arguments (use --prefix)');
    const r = await ctx.client().kvList(str(ctx.args, 'prefix') ?? '', int(ctx.args, 'limit'));
    ctx.print(r.raw, () => {
      if (r.items.length === 0) return '(no keys)';
      const clip = (s: string) => { const t = s.replace(/\s+/g, ' '); return t.length > 60 ? `${t.slice(0, 57)}...` : t; };
      const body = table(['KEY', 'REVISION', 'VALUE'], r.items.map((e) => [e.key, cell(e.revision), clip(String(e.value ?? ''))]));
      return r.more === true ? `${body}\n(more keys: raise --limit)` : body;
    });
    return EXIT.ok;
  },
};

export const kvCommands: readonly Verb[] = [get, put, del, ls];
