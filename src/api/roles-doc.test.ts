// The role table is written once in code (each route's `auth`); docs/security.md
// shows it. This keeps the two equal: a route added, removed or given another
// role must be documented.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { routeTable } from './server.js';

test('docs/security.md lists every route with the role its code requires', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/security.md', import.meta.url)), 'utf8');
  const section = doc.slice(doc.indexOf('### Which endpoint needs which role'), doc.indexOf('### Where tokens come from'));
  const documented = [...section.matchAll(/^\| `([A-Z]+) (\S+)` \| (\w+) \|$/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]}`).sort();
  const code = routeTable().map((r) => `${r.method} ${r.route} ${r.auth}`).sort();
  const missing = code.filter((r) => !documented.includes(r));
  const stale = documented.filter((r) => !code.includes(r));
  assert.deepEqual({ missing, stale }, { missing: [], stale: [] }, 'docs/security.md "Which endpoint needs which role" differs from routeTable()');
});
