// Runs many seeds and sums what they did: the CLI and the tests share this.
import { SIM_MUTATIONS, SIM_SCENARIOS, formatViolation, runSeed, type SimMutation, type SimResult, type SimScenario, type Violation } from './cluster.js';

export interface CampaignOptions {
  readonly seeds: readonly number[];
  readonly nodes: number;
  readonly mutation?: SimMutation;
  /** Default 'none' (the CLI's default is 'mixed'). */
  readonly scenario?: SimScenario;
  readonly trace?: boolean;
  readonly stopOnFirstViolation?: boolean;
  /** Stop at the first violation this accepts (e.g. mutation checks stop at the first safety violation). */
  readonly stopWhen?: (v: Violation) => boolean;
  readonly faultMs?: number;
  readonly log?: (line: string) => void;
}

export interface CampaignSummary {
  seedsRun: number;
  nodes: number;
  mutation: SimMutation | null;
  scenario: SimScenario;
  /** Seeds that ran each scenario ('mixed' resolved per seed). */
  scenarios: Record<string, number>;
  steps: number;
  virtualMs: number;
  faults: Record<string, number>;
  stats: Record<string, number>;
  opsChecked: number;
  indeterminateOps: number;
  linearizabilityGaveUp: number;
  violations: { seed: number; nodes: number; oracle: string; message: string; replay: string }[];
  wallMs: number;
  stepsPerSecond: number;
}

export function isSimScenario(s: string): s is SimScenario {
  return (SIM_SCENARIOS as readonly string[]).includes(s);
}

export function isSimMutation(s: string): s is SimMutation {
  return (SIM_MUTATIONS as readonly string[]).includes(s);
}

export async function runCampaign(o: CampaignOptions, onViolation?: (v: Violation, r: SimResult) => void): Promise<CampaignSummary> {
  const sum: CampaignSummary = {
    seedsRun: 0,
    nodes: o.nodes,
    mutation: o.mutation ?? null,
    scenario: o.scenario ?? 'none',
    scenarios: {},
    steps: 0,
    virtualMs: 0,
    faults: {},
    stats: {},
    opsChecked: 0,
    indeterminateOps: 0,
    linearizabilityGaveUp: 0,
    violations: [],
    wallMs: 0,
    stepsPerSecond: 0,
  };
  const t0 = performance.now();
  for (const seed of o.seeds) {
    const r = await runSeed({
      seed,
      nodes: o.nodes,
      ...(o.mutation !== undefined ? { mutation: o.mutation } : {}),
      ...(o.scenario !== undefined ? { scenario: o.scenario } : {}),
      ...(o.trace !== undefined ? { trace: o.trace } : {}),
      ...(o.faultMs !== undefined ? { faultMs: o.faultMs } : {}),
      ...(o.log !== undefined ? { log: o.log } : {}),
    });
    sum.seedsRun++;
    sum.scenarios[r.scenarioRun] = (sum.scenarios[r.scenarioRun] ?? 0) + 1;
    sum.steps += r.steps;
    sum.virtualMs += r.virtualMs;
    sum.opsChecked += r.opsChecked;
    sum.indeterminateOps += r.indeterminateOps;
    if (r.linearizability.startsWith('gaveUp')) sum.linearizabilityGaveUp++;
    for (const [k, v] of Object.entries(r.faults)) sum.faults[k] = (sum.faults[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.stats)) sum.stats[k] = (sum.stats[k] ?? 0) + v;
    if (r.violation) {
      const v = r.violation;
      sum.violations.push({ seed: v.seed, nodes: v.nodes, oracle: v.oracle, message: v.message.split('\n')[0]!, replay: v.replay });
      onViolation?.(v, r);
      if (o.stopOnFirstViolation || o.stopWhen?.(v)) break;
    }
  }
  sum.wallMs = Math.round(performance.now() - t0);
  sum.stepsPerSecond = Math.round(sum.steps / Math.max(0.001, sum.wallMs / 1000));
  return sum;
}

export { formatViolation };
