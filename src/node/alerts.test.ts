// The alert engine on fake sources: `forSeconds`, fire once, resolve, which node sends what.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { parseConfig } from '../config/index.js';
import type { CertificateInfo, NodeStatus, PeerInfo } from '../api/ports.js';
import type { AppHealthSummary } from '../api/ports-app.js';
import type { HistoryRecord } from '../state/index.js';
import { AlertEngine, conditions, type AlertNotification } from './alerts.js';
import { drillSchedule, type DrillSchedule } from '../drill/schedule.js';
import type { AlertWebhook } from './alert-webhook.js';

const peer = (name: string, lagMs: number, self = false): PeerInfo => ({ id: name === 'n1' ? 1 : 2, nodeName: name, apiUrl: undefined, peerUrl: '', role: 'standby', status: 'healthy', matchIndex: 1, replicationLagEntries: lagMs > 0 ? 3 : 0, replicationLagMs: lagMs, lastHeartbeat: undefined, self });

function status(over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    id: 1, nodeName: 'n1', haId: 'h', role: 'primary', raftRole: 'leader', term: 2, leaderId: 1, leaderName: 'n1', leaderApiUrl: undefined,
    commitIndex: 1, appliedIndex: 1, lastIndex: 1, firstIndex: 1, snapshotIndex: 0, revision: 1, quorumMet: true, votersReachable: 3, votersTotal: 3, writeQuorum: 2,
    failureTolerance: 1, peers: [peer('n1', 0, true), peer('n2', 0)], storageHealthy: true, storageError: undefined, splitBrainWarning: undefined,
    startedAt: '', version: '', featureLevel: 2, ...over,
  };
}

function setup(alerts: Record<string, unknown> = {}) {
  const cfg = parseConfig({ alerts: { webhookUrl: 'http://127.0.0.1:1/x', ...alerts } }, {}).alerts;
  let now = 1_000_000;
  let st = status();
  let health: AppHealthSummary | undefined;
  let history: HistoryRecord[] = [];
  let free = 50;
  const sent: AlertNotification[] = [];
  const webhook = { send: (n: AlertNotification) => sent.push(n), close: () => Promise.resolve(), stats: () => ({ signed: false, delivered: 0, failed: 0, pending: 0, lastError: null }) } as unknown as AlertWebhook;
  const engine = new AlertEngine(cfg, {
    nodeName: 'n1', haId: 'h', dataDir: '/', status: () => st, health: () => health, history: () => history, diskFreePercent: () => free, now: () => now,
  }, pino({ level: 'silent' }), webhook);
  return {
    cfg, engine, sent,
    set: (o: { st?: Partial<NodeStatus>; health?: AppHealthSummary; history?: HistoryRecord[]; free?: number; advanceMs?: number }) => {
      if (o.st) st = status(o.st);
      if (o.health) health = o.health;
      if (o.history) history = o.history;
      if (o.free !== undefined) free = o.free;
      now += o.advanceMs ?? 0;
    },
    now: () => now,
  };
}

test('a condition fires once after forSeconds, stays active without new notifications, and resolves once', () => {
  const s = setup({ forSeconds: 30, replicationLagMsMax: 5000 });
  s.set({ st: { peers: [peer('n1', 0, true), peer('n2', 6000)] } });
  s.engine.evaluate();
  assert.equal(s.sent.length, 0, 'not before forSeconds');
  s.set({ advanceMs: 29_000 });
  s.engine.evaluate();
  assert.equal(s.sent.length, 0);
  s.set({ advanceMs: 1000 });
  s.engine.evaluate();
  assert.deepEqual(s.sent.map((n) => [n.status, n.alert.id, n.alert.value]), [['firing', 'replication_lag:n2', 6000]]);
  s.set({ advanceMs: 5000, st: { peers: [peer('n1', 0, true), peer('n2', 9000)] } });
  s.engine.evaluate();
  assert.equal(s.sent.length, 1, 'deduplicated');
  assert.equal(s.engine.view().active[0]!.value, 9000, 'the active alert shows the newest value');
  s.set({ advanceMs: 1000, st: {} });
  s.engine.evaluate();
  assert.deepEqual(s.sent.map((n) => n.status), ['firing', 'resolved']);
  assert.equal(s.engine.view().active.length, 0);
  assert.deepEqual(s.engine.view().recent.map((r) => r.status), ['resolved', 'firing']);
});

test('a condition that stops holding before forSeconds never fires', () => {
  const s = setup({ forSeconds: 10 });
  s.set({ free: 5 });
  s.engine.evaluate();
  s.set({ free: 50, advanceMs: 5000 });
  s.engine.evaluate();
  s.set({ free: 5, advanceMs: 6000 });
  s.engine.evaluate();
  assert.equal(s.sent.length, 0, 'the hold restarted');
  s.set({ advanceMs: 10_000 });
  s.engine.evaluate();
  assert.deepEqual(s.sent.map((n) => n.alert.id), ['disk_low:n1']);
});

test('cluster conditions come from the leader only; with no leader a node says so', () => {
  const s = setup({ forSeconds: 0 });
  // A follower sees a lagging peer in no status (lag is the leader's view) and sends no cluster alert.
  s.set({ st: { raftRole: 'follower', role: 'standby', leaderId: 2, leaderName: 'n2', peers: [peer('n1', 0, true), peer('n2', 9000)] } });
  s.engine.evaluate();
  assert.equal(s.sent.length, 0);
  s.set({ st: { raftRole: 'follower', role: 'candidate', leaderId: 0, leaderName: undefined, quorumMet: false, votersReachable: 1 } });
  s.engine.evaluate();
  const ids = s.sent.map((n) => n.alert.id).sort();
  assert.deepEqual(ids, ['no_leader:n1', 'quorum_lost:n1']);
  for (const n of s.sent) {
    assert.equal(n.leaderKnown, false);
    assert.match(n.note ?? '', /not the leader/);
  }
});

test('leader changes within the window, failing health checks (severity by critical), storage and split-brain fire at once', () => {
  const s = setup({ forSeconds: 600, leaderChangesMax: 2, leaderChangesWindowSeconds: 60 });
  const rec = (at: number): HistoryRecord => ({ kind: 'leader', term: 1, leaderId: 1, leaderName: 'n1', reason: 'election', seq: at, index: at, at });
  s.set({ history: [rec(s.now() - 120_000), rec(s.now() - 30_000), rec(s.now() - 20_000)] });
  s.engine.evaluate();
  assert.equal(s.sent.length, 0, 'two changes in the window: not more than 2');
  s.set({ history: [rec(s.now() - 30_000), rec(s.now() - 20_000), rec(s.now() - 1000)] });
  s.engine.evaluate();
  s.set({ health: { healthy: false, failingCritical: ['db'], failing: ['db'], checks: [{ name: 'db', kind: 'command', critical: true, healthy: false, consecutiveFailures: 3, lastError: 'exit 1', lastRunAt: null, lastDurationMs: null }] } });
  s.set({ st: { storageHealthy: false, storageError: 'EIO', splitBrainWarning: 'two leaders in term 5' } });
  s.engine.evaluate();
  const byId = new Map(s.sent.map((n) => [n.alert.id, n.alert]));
  assert.equal(byId.get('leader_flapping')?.value, 3);
  assert.equal(byId.get('health_check_failing:n1:db')?.severity, 'critical');
  assert.ok(byId.has('storage_failing:n1') && byId.has('split_brain:n1'));
  assert.ok(!byId.has('disk_low:n1'));
});

test('conditions: a removed node reports nothing', () => {
  const cfg = parseConfig({}, {}).alerts;
  assert.deepEqual(conditions(cfg, { nodeName: 'n1', haId: 'h', dataDir: '/', status: () => status({ role: 'removed', leaderId: 0 }), health: () => undefined, history: () => [], diskFreePercent: () => 1 }, 0), []);
  assert.equal(cfg.replicationLagMsMax, 5000, 'rConfig\'s threshold by default');
  assert.equal(cfg.diskFreePercentMin, 20);
});

test('alerts.secretFile: read at start; refused when missing, empty, or the cluster secret (by path or content)', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { loadAlertSecret, signAlert } = await import('./alert-webhook.js');
  const dir = mkdtempSync(join(tmpdir(), 'quorate-alert-secret-'));
  try {
    const cluster = join(dir, 'cluster.secret');
    writeFileSync(cluster, 'the-cluster-secret\n');
    const forbidden = [{ key: 'security.clusterSecretFile', file: cluster }];
    const cfg = (secretFile: string) => parseConfig({ alerts: { secretFile } }, {}).alerts;
    assert.equal(loadAlertSecret(cfg(''), forbidden), undefined);
    assert.throws(() => loadAlertSecret(cfg(join(dir, 'nope')), forbidden), /^Error: alerts\.secretFile: cannot read .*ENOENT/);
    writeFileSync(join(dir, 'empty'), '\n');
    assert.throws(() => loadAlertSecret(cfg(join(dir, 'empty')), forbidden), /alerts\.secretFile: .* is empty/);
    assert.throws(() => loadAlertSecret(cfg(cluster), forbidden), /must not be security\.clusterSecretFile/);
    writeFileSync(join(dir, 'copy'), 'the-cluster-secret');
    assert.throws(() => loadAlertSecret(cfg(join(dir, 'copy')), forbidden), /nor hold the same secret/);
    writeFileSync(join(dir, 'alerts'), 'alerts-own-secret\n');
    assert.equal(loadAlertSecret(cfg(join(dir, 'alerts')), forbidden), 'alerts-own-secret');
    assert.match(signAlert('alerts-own-secret', '1700000000', '{}'), /^sha256=[0-9a-f]{64}$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('drill_overdue (drills.maxIntervalHours) and drill_failed come from the leader, named with what to do', () => {
  const cfg = parseConfig({}, {}).alerts;
  const now = Date.parse('2026-11-30T12:00:00Z');
  const src = (st: Partial<NodeStatus>, drills: DrillSchedule) => ({ nodeName: 'n1', haId: 'h', dataDir: '/', status: () => status(st), health: () => undefined, history: () => [], diskFreePercent: () => 50, drills: () => drills });
  const sched = (records: { at: number; passed: boolean; lost?: number }[], hours: number) => drillSchedule(records.map((r) => ({ at: r.at, report: JSON.stringify({ id: `d${r.at}`, rtoTargetMs: 1000, summary: { passed: r.passed, lostTotal: r.lost ?? 0, rtoMsMax: 800, failures: r.passed ? [] : ['round 1: RTO 1500 ms is above the target'] } }) })), hours, now);
  const names = (st: Partial<NodeStatus>, d: DrillSchedule) => conditions(cfg, src(st, d), now).map((c) => c.name);
  // No period: never overdue, even with no drill at all.
  assert.deepEqual(names({}, sched([], 0)), []);
  // A period and no drill: overdue.
  const none = conditions(cfg, src({}, sched([], 24)), now);
  assert.deepEqual(none.map((c) => [c.name, c.scope, c.severity]), [['drill_overdue', 'cluster', 'warning']]);
  assert.match(none[0]!.summary, /no passing failover drill is kept.*drills\.maxIntervalHours 24 h: run one \(quorate drill/);
  // Passed 2 h ago with a 24 h period: fine; 30 h ago: overdue, and the summary says how long ago.
  assert.deepEqual(names({}, sched([{ at: now - 2 * 3_600_000, passed: true }], 24)), []);
  const old = conditions(cfg, src({}, sched([{ at: now - 30 * 3_600_000, passed: true }], 24)), now);
  assert.match(old[0]!.summary, /the last passing failover drill was 30 h ago/);
  assert.equal(old[0]!.value, 30 * 3600);
  // A failed drill after a recent pass: drill_failed (critical when writes were lost), not overdue.
  const failed = conditions(cfg, src({}, sched([{ at: now - 3_600_000, passed: true }, { at: now - 60_000, passed: false, lost: 2 }], 24)), now);
  assert.deepEqual(failed.map((c) => [c.name, c.severity, c.value]), [['drill_failed', 'critical', 2]]);
  assert.match(failed[0]!.summary, /FAILED, losing 2 acknowledged write\(s\): round 1: RTO 1500 ms/);
  // A failure does not reset the period: a failed drill alone is overdue and failed.
  assert.deepEqual(names({}, sched([{ at: now - 60_000, passed: false }], 24)), ['drill_overdue', 'drill_failed']);
  // Followers leave both to the leader.
  assert.deepEqual(names({ raftRole: 'follower', leaderId: 2, leaderName: 'n2' }, sched([{ at: now - 60_000, passed: false }], 24)), []);
});

test('certificate_expiring: a file under alerts.certificateDaysMin, an auto certificate under one renewal period, critical once expired; node scope', () => {
  const cfg = parseConfig({ alerts: { certificateDaysMin: 14 } }, {}).alerts;
  const now = Date.parse('2026-11-30T12:00:00Z');
  const inDays = (d: number) => new Date(now + d * 86_400_000).toISOString();
  const run = (certs: CertificateInfo[]) => conditions(cfg, { nodeName: 'n2', haId: 'h', dataDir: '/', status: () => status({ raftRole: 'follower', leaderId: 1 }), health: () => undefined, history: () => [], diskFreePercent: () => 50, certificates: () => certs }, now);
  assert.deepEqual(run([{ cert: 'api', source: 'file', file: '/etc/q/api.crt', notAfter: inDays(30), subject: 'CN=n2' }, { cert: 'peer', source: 'auto', file: null, notAfter: inDays(70), subject: 'CN=n2', renewPeriodSeconds: 30 * 86400 }]), []);
  const near = run([{ cert: 'api', source: 'file', file: '/etc/q/api.crt', notAfter: inDays(10), subject: 'CN=n2' }]);
  assert.deepEqual(near.map((c) => [c.id, c.severity, c.scope, c.value, c.threshold]), [['certificate_expiring:n2:api', 'warning', 'node', 10 * 86400, 14 * 86400]]);
  assert.match(near[0]!.summary, /the api certificate of n2 \(\/etc\/q\/api\.crt\) expires in 10 d .*under alerts\.certificateDaysMin 14 days: replace the file/);
  const unrenewed = run([{ cert: 'peer+api', source: 'auto', file: null, notAfter: inDays(20), subject: 'CN=n2', renewPeriodSeconds: 30 * 86400 }]);
  assert.match(unrenewed[0]!.summary, /cluster CA\) expires in 20 d .*failed to renew it/);
  assert.equal(run([{ cert: 'peer', source: 'file', file: '/x', notAfter: inDays(-1), subject: 'CN=n2' }])[0]!.severity, 'critical');
  assert.deepEqual(run([{ cert: 'peer', source: 'file', file: '/x', notAfter: null, subject: null, error: 'cannot read' }]), [], 'unreadable: doctor names it');
});
