// `quorate drill` (SPEC §5; issue 13): a failover drill against a running
// cluster, run here by the drill runner library (src/drill/runner.ts), which
// speaks only the HTTP API; the targets carry the faults out on themselves
// (POST /v1/cluster/drill/fault, drills.enabled). `--history` lists the
// reports kept in the cluster (GET /v1/drills). docs/cli.md, docs/operations.md.
import { DRILL_FAULTS, type DrillFault } from '../api/ports-drill.js';
import { reportMarkdown, type DrillReport } from '../drill/report.js';
import { runDrill } from '../drill/runner.js';
import { UsageError, bool, duration, int, str } from './args.js';
import { EXIT, table, type Verb } from './command.js';

const DEFAULT_INTERVAL_MS = 30_000;
const DEFAULT_DURATION_MS = 5000;

interface HistoryBody { reports: { seq: number; recordedAt: string; report: DrillReport }[]; seq: number }

export const drillCommand: Verb = {
  name: 'drill',
  usage: '[--kill leader|random|NAME] [--fault crash|pause|isolate|switchover] [--rounds N] [--interval 30s] [--duration 5s] [--wait 60s] --confirm [--force] | --history',
  description:
    'Each round waits for a healthy cluster (refused unless it is failover-safe with a failure tolerance >= 1; --force skips that), starts its own writers and readers, ' +
    'asks the target node to carry out the fault on itself (crash: exits hard and is restarted by its service manager; pause: SIGSTOP for --duration; ' +
    'isolate: drops all peer traffic for --duration; switchover: the planned transfer), and measures time to detect, time to a new leader, RTO (fault to the first ' +
    'acknowledged write sent after it), RPO (acknowledged writes missing when every key is read back: must be 0), writes whose outcome stayed unknown, and the target\'s rejoin time. ' +
    'Every node a drill may target needs drills.enabled: true. Test keys go under quorate-drill/. The report is kept in the cluster (bounded history: --history). ' +
    'Exit 1 when a round missed drills.rtoTargetMs or lost an acknowledged write. Runbook: docs/operations.md "Failover drills".',
  flags: [
    { name: 'kill', type: 'string', value: 'leader|random|NAME', help: 'the target of each round (default leader)' },
    { name: 'fault', type: 'string', value: 'crash|pause|isolate|switchover', help: 'what happens to it (default crash)' },
    { name: 'rounds', type: 'int', value: 'N', help: 'rounds to run (default 1)' },
    { name: 'interval', type: 'duration', value: 'DURATION', help: 'pause between rounds (default 30s)' },
    { name: 'duration', type: 'duration', value: 'DURATION', help: 'how long a pause or isolate fault lasts (default 5s)' },
    { name: 'confirm', type: 'boolean', help: 'yes, fault the nodes (required to run a drill)' },
    { name: 'wait', type: 'duration', value: 'DURATION', help: 'how long to wait for a healthy, failover-safe cluster before each round (default 60s)' },
    { name: 'force', type: 'boolean', help: 'run although the cluster is not failover-safe with a failure tolerance >= 1' },
    { name: 'history', type: 'boolean', help: 'list the drill reports kept in the cluster instead of running one' },
  ],
  examples: [
    'quorate drill --kill leader --fault crash --rounds 3 --interval 30s --confirm',
    'quorate drill --fault pause --duration 8s --confirm --json',
    'quorate drill --kill node2 --fault isolate --confirm',
    'quorate drill --history',
  ],
  remote: true,
  async run(ctx) {
    if (ctx.args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args.positionals[0])}`, 'drill');
    if (bool(ctx.args, 'history')) return history(ctx);
    const kill = str(ctx.args, 'kill') ?? 'leader';
    if (kill === '') throw new UsageError('--kill needs leader, random or a node name', 'drill');
    const fault = (str(ctx.args, 'fault') ?? 'crash') as DrillFault;
    if (!(DRILL_FAULTS as readonly string[]).includes(fault)) throw new UsageError(`--fault must be one of ${DRILL_FAULTS.join(', ')}, got ${JSON.stringify(fault)}`, 'drill');
    if (fault === 'switchover' && kill !== 'leader') throw new UsageError('--fault switchover moves leadership away from the leader: use it with --kill leader (the default)', 'drill');
    const rounds = int(ctx.args, 'rounds') ?? 1;
    if (rounds < 1 || rounds > 100) throw new UsageError(`--rounds must be 1..100, got ${rounds}`, 'drill');
    const intervalMs = duration(ctx.args, 'interval') ?? DEFAULT_INTERVAL_MS;
    const durationMs = duration(ctx.args, 'duration') ?? DEFAULT_DURATION_MS;
    if (durationMs < 1 || durationMs > 600_000) throw new UsageError(`--duration must be 1ms..10m, got ${durationMs} ms`, 'drill');
    const waitMs = duration(ctx.args, 'wait');
    if (!bool(ctx.args, 'confirm')) {
      ctx.io.err(`Error: a drill ${fault === 'crash' ? 'crashes' : fault === 'pause' ? 'freezes' : fault === 'isolate' ? 'cuts off' : 'moves leadership away from'} ${kill === 'leader' ? 'the leader' : kill === 'random' ? 'a random voter' : kill} ${rounds} time(s) and writes test keys under quorate-drill/; nothing was done.\nHint: repeat with --confirm.`);
      return EXIT.failed;
    }
    const r = await runDrill({
      urls: ctx.urls(), token: ctx.token(), kill, fault, rounds, intervalMs, durationMs, force: bool(ctx.args, 'force'), runner: 'cli',
      ...(waitMs !== undefined ? { settleTimeoutMs: waitMs } : {}),
      log: (line) => ctx.io.err(`drill: ${line}`),
    });
    const markdown = reportMarkdown(r.report);
    ctx.print({ ...r, markdown }, () => `${markdown}${r.recorded ? '' : `\n\nWarning: the report was not kept in the cluster (${r.recordError ?? 'unknown error'})`}`);
    return r.report.summary.passed ? EXIT.ok : EXIT.failed;
  },
};

async function history(ctx: Parameters<Verb['run']>[0]): Promise<number> {
  const body = (await ctx.client().request<HistoryBody>('GET', '/v1/drills')).body;
  ctx.print(body, () => {
    if (body.reports.length === 0) return 'No drill reports kept yet (run `quorate drill --confirm`).';
    return table(
      ['SEQ', 'RECORDED', 'ID', 'FAULT', 'KILL', 'ROUNDS', 'RTO MAX MS', 'RTO TARGET', 'LOST', 'UNKNOWN', 'RESULT'],
      body.reports.map(({ seq, recordedAt, report: r }) => [
        String(seq), recordedAt, r.id, r.fault, r.kill, String(r.summary?.roundsRun ?? r.rounds?.length ?? '-'), r.summary?.rtoMsMax === null ? '-' : String(r.summary?.rtoMsMax),
        String(r.rtoTargetMs), String(r.summary?.lostTotal), String(r.summary?.unknownTotal), r.summary?.passed ? 'passed' : 'FAILED',
      ]),
    );
  });
  return EXIT.ok;
}
