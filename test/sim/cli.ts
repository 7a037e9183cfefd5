// npm run sim -- --seeds N [--nodes 5] [--seed S] [--trace] [--mutation NAME] [--stop-on-first]
// Runs a campaign of seeds S, S+1, ... and prints a JSON summary; exit 1 on any violation.
import { parseArgs } from 'node:util';
import { SIM_MUTATIONS, SIM_SCENARIOS } from './cluster.js';
import { formatViolation, isSimMutation, isSimScenario, runCampaign } from './campaign.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      nodes: { type: 'string', default: '3' },
      trace: { type: 'boolean', default: false },
      mutation: { type: 'string' },
      scenario: { type: 'string', default: 'mixed' },
      'fault-ms': { type: 'string' },
      'stop-on-first': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      `usage: npm run sim -- [--seeds N] [--seed S] [--nodes 3|5|7] [--trace] [--mutation ${SIM_MUTATIONS.join('|')}] [--scenario ${SIM_SCENARIOS.join('|')}] [--fault-ms MS] [--stop-on-first]\n` +
        '  --scenario: promote-dr (a DR learner promoted after the voters\' site is lost; the old site comes back), wipe (nodes come back with an empty data dir),\n' +
        '  none, or mixed (the default: drawn per seed, most seeds none); the summary counts the seeds of each',
    );
    return 0;
  }
  const int = (name: string, v: string | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const nodes = int('nodes', values.nodes, 3);
  if (nodes < 1 || nodes > 9) throw new Error(`--nodes must be 1..9, got ${nodes}`);
  const start = int('seed', values.seed, 1);
  const count = int('seeds', values.seeds, values.seed !== undefined ? 1 : 20);
  const mutation = values.mutation;
  if (mutation !== undefined && !isSimMutation(mutation)) {
    throw new Error(`--mutation must be one of ${SIM_MUTATIONS.join(', ')}, got ${JSON.stringify(mutation)}`);
  }
  const scenario = values.scenario;
  if (!isSimScenario(scenario)) throw new Error(`--scenario must be one of ${SIM_SCENARIOS.join(', ')}, got ${JSON.stringify(scenario)}`);
  const seeds = Array.from({ length: count }, (_, i) => (start + i) >>> 0);
  const summary = await runCampaign(
    {
      seeds,
      nodes,
      ...(mutation !== undefined ? { mutation } : {}),
      scenario,
      trace: values.trace,
      stopOnFirstViolation: values['stop-on-first'],
      ...(values['fault-ms'] !== undefined ? { faultMs: int('fault-ms', values['fault-ms'], 6000) } : {}),
    },
    (v) => console.error(formatViolation(v)),
  );
  console.log(JSON.stringify(summary, null, 2));
  return summary.violations.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 2;
  },
);
