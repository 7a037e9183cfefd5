// Runs every compiled test file under dist/ with node's test runner.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
//
// Two passes. Files whose source says `// quorate-test: serial` (network
// namespaces with fixed names and addresses, CPU-bound simulator campaigns,
// npm pack/install) run first, one at a time, with nothing else running.
// Every other file runs next, QUORATE_TEST_CONCURRENCY at a time (default 2,
// one per core: about 10 minutes instead of more than 15 one at a time).
// Real-process tests take their ports from test/support/ports.ts, which keeps
// them out of the kernel's ephemeral range and reserves each across test
// processes until its owner exits, so two files cannot race for a port.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = walk('dist', []).sort().filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files found under dist/ (did the build run?)');
  process.exit(1);
}
const serial = files.filter((f) => readFileSync(f, 'utf8').includes('// quorate-test: serial'));
const parallel = files.filter((f) => !serial.includes(f));
const concurrency = Math.max(1, Number(process.env.QUORATE_TEST_CONCURRENCY ?? 2) || 2);

// A test that hangs (a promise that never settles while a timer keeps the process alive) fails
// after 10 minutes instead of holding the whole run.
function run(list, n) {
  if (list.length === 0) return 0;
  const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${n}`, '--test-timeout=600000', ...list], { stdio: 'inherit' });
  return r.status ?? 1;
}
const started = Date.now();
const a = run(serial, 1);
const b = run(parallel, concurrency);
console.log(`# run-tests: ${serial.length} files one at a time, then ${parallel.length} files ${concurrency} at a time, in ${Math.round((Date.now() - started) / 1000)} s`);
process.exit(a !== 0 ? a : b);
