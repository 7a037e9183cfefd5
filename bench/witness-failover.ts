// `npm run bench:witness`: failover of a two-node cluster with a Redis
// witness (src/coord/WITNESS.md), measured by ./witness-run.ts.
// BENCH_TTL_S (default 2), BENCH_RENEW_S (1), BENCH_ROUNDS (3),
// BENCH_DEGRADE (1: inSyncDegrade true; 0: writes resume only when the old
// leader is back, so the round measures that). Prints one JSON report.
import { witnessFailover } from './witness-run.js';

const report = await witnessFailover({
  ttlSeconds: Number(process.env['BENCH_TTL_S'] ?? 2),
  renewSeconds: Number(process.env['BENCH_RENEW_S'] ?? 1),
  rounds: Number(process.env['BENCH_ROUNDS'] ?? 3),
  degrade: (process.env['BENCH_DEGRADE'] ?? '1') === '1',
});
console.log(JSON.stringify(report, null, 1));
