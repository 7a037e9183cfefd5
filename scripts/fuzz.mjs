// Runs the fuzz tests (test/fuzz) for longer than `npm test` does:
//   npm run fuzz -- --seconds 60 [substring ...]
// Each property runs for N seconds (QUORATE_FUZZ_SECONDS). A failure prints
// fast-check's seed and path; replay it with
//   QUORATE_FUZZ_SEED=<seed> QUORATE_FUZZ_PATH=<path> node --test dist/test/fuzz/<file>.test.js
// Give --seed S to start from a chosen seed.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
let seconds = 30;
let seed;
const filters = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--seconds') seconds = Number(args[++i]);
  else if (args[i] === '--seed') seed = args[++i];
  else if (args[i] === '--help' || args[i] === '-h') {
    console.log('Usage: npm run fuzz -- [--seconds N] [--seed S] [file substring ...]');
    process.exit(0);
  } else filters.push(args[i]);
}
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('--seconds needs a positive number');
  process.exit(2);
}
const dir = join('dist', 'test', 'fuzz');
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js') && (filters.length === 0 || filters.some((s) => f.includes(s)))).map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no fuzz tests found in ${dir} (did the build run?)`);
  process.exit(2);
}
const env = { ...process.env, QUORATE_FUZZ_SECONDS: String(seconds), ...(seed !== undefined ? { QUORATE_FUZZ_SEED: seed } : {}) };
console.log(`fuzzing ${files.length} file(s), ${seconds} s per property${seed !== undefined ? `, seed ${seed}` : ''}`);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
if (r.status !== 0) console.log('\nA property failed: its seed and path are printed above ("seed: ..., path: ..."); replay with QUORATE_FUZZ_SEED and QUORATE_FUZZ_PATH.');
process.exit(r.status ?? 1);
