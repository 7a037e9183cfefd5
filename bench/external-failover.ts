// `npm run bench:external`: failover of an external-shared cluster under
// writes: kill -9 of the leader → the first write acknowledged by another
// node among those sent after the kill; the killed node is restarted (it
// rebuilds its state from PostgreSQL) before the next round. Also: write
// latency (sequential, through the leader) and the restart's catch-up time.
// BENCH_COORDINATION=redis (default): two real node processes led by the
// Redis lease (a private PostgreSQL and redis-server on loopback;
// BENCH_TTL_S (default 3), BENCH_RENEW_S (1)). BENCH_COORDINATION=raft:
// three node processes led by Raft (src/external/raft-lead.ts; election
// timeout 1000 ms, heartbeat 100 ms, the test harness's values).
// BENCH_ROUNDS (5); then 3 rounds of a clean stop (SIGTERM) of the leader
// under writes. Prints one JSON report. Not part of `npm test`.
import { startExternalCluster, startRaftExternalCluster, Writer } from '../test/integration/external-cluster.js';
import { http, waitFor, TOKEN } from '../test/integration/harness.js';

const TTL_S = Number(process.env['BENCH_TTL_S'] ?? 3);
const RENEW_S = Number(process.env['BENCH_RENEW_S'] ?? 1);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const RAFT = process.env['BENCH_COORDINATION'] === 'raft';

function summary(xs: number[]): { samples: number[]; min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { samples: xs.map(Math.round), min: Math.round(s[0] ?? 0), median: Math.round(s[Math.floor(s.length / 2)] ?? 0), max: Math.round(s.at(-1) ?? 0) };
}

function latencySummary(xs: number[]): { n: number; min: number; median: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => Math.round((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0) * 10) / 10;
  return { n: s.length, min: at(0), median: at(0.5), p99: at(0.99), max: at(1) };
}

async function main(): Promise<void> {
  const x = RAFT ? await startRaftExternalCluster() : await startExternalCluster({ ttlSeconds: TTL_S, renewSeconds: RENEW_S });
  const { c } = x;
  const failover: number[] = [];
  const catchUp: number[] = [];
  const latency: number[] = [];
  const cleanStop: number[] = [];
  let lost = 0;
  let unknown = 0;
  try {
    let l = await c.waitLeader(30_000);
    for (let i = 0; i < c.nodes.length; i++) await c.waitReady(i, 20_000);
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const r = await http(c.nodes[l]!.url, 'PUT', `/v1/kv/lat/${i}`, { token: TOKEN, body: { value: String(i) } });
      if (r.status === 200) latency.push(performance.now() - t0);
    }
    for (let round = 0; round < ROUNDS; round++) {
      const writer = new Writer(() => c.nodes.filter((n) => n.exitCode === undefined).map((n) => n.url), 4, `r${round}`);
      await waitFor('writes', () => writer.acked.size >= 30, 20_000);
      const killedAt = Date.now();
      c.kill(l, 'SIGKILL');
      await c.waitExit(l);
      await waitFor('writes resume', () => writer.firstAckAfter(killedAt) !== undefined, 60_000);
      failover.push(writer.firstAckAfter(killedAt)!.at - killedAt);
      const other = await c.waitLeader(10_000, [l]);
      await writer.stop();
      unknown += writer.outcomes.filter((o) => o.code === 'commit_unknown').length;
      for (const [key, value] of writer.acked) {
        const r = await http(c.nodes[other]!.url, 'GET', `/v1/kv/${encodeURIComponent(key)}?consistency=linearizable`, { token: TOKEN });
        if (r.body['value'] !== value) lost++;
      }
      const restartAt = Date.now();
      c.startNode(l);
      await c.waitReady(l, 60_000);
      catchUp.push(Date.now() - restartAt);
      l = other;
    }
    // A clean stop (SIGTERM) of the leader under writes: the Redis lease is released, a Raft leader's peers see its
    // connections close and elect at once; the stopped node is started again before the next round.
    for (let round = 0; round < 3; round++) {
      const writer = new Writer(() => c.nodes.filter((n) => n.exitCode === undefined).map((n) => n.url), 4, `s${round}`);
      await waitFor('writes', () => writer.acked.size >= 30, 20_000);
      const stoppedAt = Date.now();
      c.kill(l, 'SIGTERM');
      await waitFor('writes resume', () => writer.firstAckAfter(stoppedAt) !== undefined, 60_000);
      cleanStop.push(writer.firstAckAfter(stoppedAt)!.at - stoppedAt);
      await writer.stop();
      await c.waitExit(l);
      const other = await c.waitLeader(10_000, [l]);
      c.startNode(l);
      await c.waitReady(l, 60_000);
      l = other;
    }
  } finally {
    await x.stop();
  }
  console.log(JSON.stringify({
    bench: 'external-shared failover (kill -9 of the leader under writes)', coordination: RAFT ? 'raft' : 'redis', nodes: c.nodes.length,
    ...(RAFT ? { electionTimeoutMs: 1000, heartbeatIntervalMs: 100 } : { ttlSeconds: TTL_S, renewSeconds: RENEW_S }), rounds: ROUNDS,
    writesResumedAfterKillMs: summary(failover), writesResumedAfterCleanStopMs: summary(cleanStop), restartedNodeReadyMs: summary(catchUp), sequentialWriteLatencyMs: latencySummary(latency),
    acknowledgedWritesLost: lost, commitUnknownAnswers: unknown,
  }, null, 1));
}

await main();
