// The fuzz budget: small in `npm test`, longer with `npm run fuzz -- --seconds N`
// (scripts/fuzz.mjs sets QUORATE_FUZZ_SECONDS). A failure prints fast-check's
// seed and path; QUORATE_FUZZ_SEED (and QUORATE_FUZZ_PATH) replay it:
//   QUORATE_FUZZ_SEED=123 QUORATE_FUZZ_PATH=4:2 node --test dist/test/fuzz/<file>.test.js
import fc from 'fast-check';

const env = process.env;
/** Seconds per property when fuzzing longer (undefined in `npm test`). */
export const FUZZ_SECONDS = env['QUORATE_FUZZ_SECONDS'] !== undefined ? Number(env['QUORATE_FUZZ_SECONDS']) : undefined;

/** fast-check parameters: `runs` in npm test; time-bounded runs with --seconds. */
export function budget<T>(runs: number): fc.Parameters<T> {
  const seed = env['QUORATE_FUZZ_SEED'];
  const path = env['QUORATE_FUZZ_PATH'];
  const base: fc.Parameters<T> = {
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
    verbose: 1,
    includeErrorInReport: true,
  };
  if (FUZZ_SECONDS === undefined) return { ...base, numRuns: runs };
  return { ...base, numRuns: 1_000_000_000, interruptAfterTimeLimit: FUZZ_SECONDS * 1000, markInterruptAsFailure: false };
}

/** Test timeout for a property: generous in npm test, the fuzz time plus slack otherwise. */
export function timeoutMs(npmTestMs: number): number {
  return FUZZ_SECONDS === undefined ? npmTestMs : FUZZ_SECONDS * 1000 + 60_000;
}
