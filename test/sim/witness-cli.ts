// npm run sim:witness -- [--seeds N] [--seed S] [--nodes 2|3] [--degrade] [--drift K] [--mutation NAME] [--trace] [--stop-on-first] [--max-states N]
// --drift K: clock rates spread over K times the bound ρ (default 1: within it; 0: one shared clock; 3: beyond it).
// Runs the witness simulator (./witness-sim.ts) over seeds S..S+N-1 and prints a JSON summary; exit 1 on any violation.
import { runWitnessSim, type WitnessSimMutation, type WitnessViolation } from './witness-sim.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const seeds = Number(opt('--seeds') ?? '1');
const first = Number(opt('--seed') ?? '1');
const nodes = Number(opt('--nodes') ?? '2');
const degrade = args.includes('--degrade');
const trace = args.includes('--trace');
const mutation = opt('--mutation') as WitnessSimMutation | undefined;
const driftArg = opt('--drift');
const drift = driftArg !== undefined ? Number(driftArg) : undefined;
if (drift !== undefined && !(Number.isFinite(drift) && drift >= 0)) throw new Error(`--drift ${driftArg}: expected a number >= 0 (the clock-rate spread in units of the bound)`);
const stopOnFirst = args.includes('--stop-on-first');
const maxStates = opt('--max-states');
const gaveUpSeeds: number[] = [];
const started = Date.now();
const violations: WitnessViolation[] = [];
let ops = 0;
let acked = 0;
let appointments = 0;
let readsWithNodeDown = 0;
let gaveUp = 0;
/** The widest witness/node clock-rate ratio seen (max over seeds of the node-vs-witness spread). */
let maxRateRatio = 1;
let run = 0;
const faults: Record<string, number> = {};
for (let s = first; s < first + seeds; s++) {
  const r = runWitnessSim({ seed: s, nodes, degrade, ...(drift !== undefined ? { drift } : {}), ...(mutation ? { mutation } : {}), ...(maxStates !== undefined ? { maxStatesPerKey: Number(maxStates) } : {}), ...(trace ? { trace: (l: string) => console.log(l) } : {}) });
  run++;
  for (const n of r.clockRates.slice(1)) maxRateRatio = Math.max(maxRateRatio, r.clockRates[0]! / n, n / r.clockRates[0]!);
  ops += r.ops; acked += r.acked; appointments += r.appointments; readsWithNodeDown += r.readsWithNodeDown;
  if (r.linearizability === 'gaveUp') { gaveUp++; gaveUpSeeds.push(s); }
  for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
  for (const v of r.violations) { violations.push(v); console.error(`violation (${v.oracle}) seed ${v.seed}: ${v.message}\n  replay: ${v.replay}`); }
  if (stopOnFirst && r.violations.length > 0) break;
}
console.log(JSON.stringify({ seedsRun: run, firstSeed: first, nodes, degrade, drift: drift ?? 1, maxClockRateRatio: Number(maxRateRatio.toFixed(5)), mutation: mutation ?? null, ops, acked, appointments, readsWithNodeDown, linearizabilityGaveUp: gaveUp, gaveUpSeeds, faults, violations: violations.length, byOracle: violations.reduce<Record<string, number>>((a, v) => { a[v.oracle] = (a[v.oracle] ?? 0) + 1; return a; }, {}), wallMs: Date.now() - started }, null, 1));
process.exitCode = violations.length > 0 ? 1 : 0;
