// docs/monitoring: the alert rules pass promtool's checks and unit tests, and
// every metric the rules and the Grafana dashboard use is exported by a live
// node's GET /metrics (so a renamed metric cannot silently break an alert).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { READER_TOKEN, TOKEN, TestCluster, http, waitFor } from './harness.js';

const DIR = fileURLToPath(new URL('../../../docs/monitoring/', import.meta.url));
const PROMTOOL = process.env['QUORATE_PROMTOOL'] ?? '/usr/bin/promtool';
const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'by', 'on', 'without', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'max', 'min', 'sum', 'avg', 'count', 'rate', 'increase', 'histogram_quantile', 'le', 'instance', 'peer', 'reason', 'status']);

/** Metric names in PromQL expressions: identifiers not followed by "(" and not label names or keywords. */
function metricNames(exprs: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const e of exprs) {
    // Label lists of matching and grouping clauses (on (instance, job), by (le), group_left (x)) name labels, not metrics.
    const noLabels = e.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/"[^"]*"/g, '')
      .replace(/\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)/g, ' $1 ');
    for (const m of noLabels.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
      if (m[2] !== undefined || PROMQL_WORDS.has(m[1]!) || /^\d/.test(m[1]!)) continue;
      out.add(m[1]!);
    }
  }
  return out;
}

describe('monitoring: alert rules and dashboard', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('promtool checks the rules and runs their unit tests', () => {
    assert.ok(existsSync(PROMTOOL), `${PROMTOOL} is missing: install Debian's prometheus package (.ci/run does it)`);
    const check = spawnSync(PROMTOOL, ['check', 'rules', 'quorate-alerts.yml'], { cwd: DIR, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const unit = spawnSync(PROMTOOL, ['test', 'rules', 'quorate-alerts.test.yml'], { cwd: DIR, encoding: 'utf8' });
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);
  });

  test('every metric the rules and the dashboard use is exported by a leader', async () => {
    const rules = readFileSync(`${DIR}quorate-alerts.yml`, 'utf8');
    const exprs = [...rules.matchAll(/^\s*expr: (.*)$/gm)].map((m) => m[1]!);
    const dash = JSON.parse(readFileSync(`${DIR}grafana-dashboard.json`, 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    exprs.push(...dash.panels.flatMap((p) => p.targets.map((t) => t.expr)));
    const used = metricNames(exprs);
    assert.ok(used.has('quorate_has_leader') && used.has('quorate_fsync_latency_seconds_bucket'), [...used].join(' '));

    c = await TestCluster.start({ nodes: 3 });
    const leader = await c.waitLeader();
    await c.client().kvPut('m', '1');
    let text = '';
    await waitFor('the leader exports replication lag per peer', async () => {
      const r = await fetch(`${c!.nodes[leader]!.url}/metrics`, { headers: { authorization: `Bearer ${READER_TOKEN}` } });
      text = await r.text();
      return text.includes('quorate_replication_lag_seconds{');
    }, 10_000);
    // A series, or a declared family (a labelled counter has no series before its first increment).
    const exported = new Set([...text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
    for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/gm)) {
      exported.add(m[1]!);
      if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(`${m[1]!}${s}`);
    }
    const missing = [...used].filter((n) => !exported.has(n));
    assert.deepEqual(missing, [], `metrics used by docs/monitoring but not exported: ${missing.join(', ')}`);
  });

  test('the leader exports failover-safe, pending proposals, peer bytes and round trips from real sources; promtool lints the exposition', async () => {
    assert.ok(c !== undefined, 'the cluster of the previous test');
    const leader = await c.waitLeader();
    const others = c.nodes.filter((_, i) => i !== leader).map((n) => n.name);
    let text = '';
    const value = (re: RegExp): number | undefined => { const m = re.exec(text); return m === null ? undefined : Number(m[1]); };
    await waitFor('failover-safe, peer round trips and peer bytes on the leader', async () => {
      await c!.client().kvPut('m', String(Date.now()));
      const r = await fetch(`${c!.nodes[leader]!.url}/metrics`, { headers: { authorization: `Bearer ${READER_TOKEN}` } });
      text = await r.text();
      return value(/^quorate_failover_safe (\S+)$/m) === 1
        && others.every((p) => (value(new RegExp(`^quorate_peer_round_trip_seconds\\{peer="${p}"\\} (\\S+)$`, 'm')) ?? 0) > 0)
        && others.every((p) => (value(new RegExp(`^quorate_peer_sent_bytes_total\\{peer="${p}"\\} (\\S+)$`, 'm')) ?? 0) > 0
          && (value(new RegExp(`^quorate_peer_received_bytes_total\\{peer="${p}"\\} (\\S+)$`, 'm')) ?? 0) > 0);
    }, 20_000);
    assert.ok(value(/^quorate_proposals_pending (\S+)$/m) !== undefined, text);
    // A snapshot taken through the API is timed and sized.
    const takenBefore = value(/^quorate_snapshot_duration_seconds_count\{kind="take"\} (\S+)$/m) ?? 0;
    const snap = await http(c.nodes[leader]!.url, 'POST', '/v1/cluster/snapshot', { token: TOKEN, body: {} });
    assert.equal(snap.status, 200, JSON.stringify(snap.body));
    text = await (await fetch(`${c.nodes[leader]!.url}/metrics`, { headers: { authorization: `Bearer ${READER_TOKEN}` } })).text();
    assert.ok((value(/^quorate_snapshot_duration_seconds_count\{kind="take"\} (\S+)$/m) ?? 0) > takenBefore, text);
    assert.ok((value(/^quorate_snapshot_bytes\{kind="take"\} (\S+)$/m) ?? 0) > 0, text);
    assert.doesNotMatch(text, /^quorate_vip_held/m, 'no virtual IP is configured');
    const follower = await fetch(`${c.nodes[(leader + 1) % c.nodes.length]!.url}/metrics`, { headers: { authorization: `Bearer ${READER_TOKEN}` } });
    assert.match(await follower.text(), /^quorate_failover_safe 0$/m, 'a follower reports 0 (the gauge is the leader\'s)');
    const lint = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
  });
});
