// doctor's checks from gathered views (pure).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diagnose, type Probe, type View } from './doctor.js';
import { drillSchedule } from '../drill/schedule.js';

const peer = (nodeName: string, role: string, status = 'healthy', self = false) => ({ nodeName, role, status, replicationLagEntries: 0, replicationLagMs: 0, self, apiUrl: `http://${nodeName}:7101` });
const st = (nodeName: string, raftRole: string, extra: Record<string, unknown> = {}) => ({
  nodeName, raftRole, term: 5, leader: 'a', quorumMet: true, failureTolerance: 1, storageHealthy: true, storageError: null, version: '0.1.0', splitBrainWarning: null,
  peers: [peer('a', 'primary', 'healthy', nodeName === 'a'), peer('b', 'standby', 'healthy', nodeName === 'b'), peer('c', 'standby', 'healthy', nodeName === 'c')], ...extra,
});
const views = (): View[] => [
  { nodeName: 'a', apiUrl: 'http://a:7101', ok: true, status: st('a', 'leader') },
  { nodeName: 'b', apiUrl: 'http://b:7101', ok: true, status: st('b', 'follower') },
  { nodeName: 'c', apiUrl: 'http://c:7101', ok: true, status: st('c', 'follower') },
];
const probes = (): Probe[] => [
  { nodeName: 'a', leaderEndpoint: 200, readyEndpoint: 200, clockSkewMs: 10 },
  { nodeName: 'b', leaderEndpoint: 503, readyEndpoint: 200, clockSkewMs: -300 },
  { nodeName: 'c', leaderEndpoint: 503, readyEndpoint: 200, clockSkewMs: 0 },
];
const result = (checks: ReturnType<typeof diagnose>, name: string) => checks.find((c) => c.check === name)?.result;

test('doctor: a healthy cluster passes every check', () => {
  const checks = diagnose(views(), probes());
  assert.deepEqual(checks.filter((c) => c.result !== 'pass'), []);
});

test('doctor: a voter down fails; an observer down only warns', () => {
  const v = views();
  v[2] = { nodeName: 'c', apiUrl: 'http://c:7101', ok: false, error: 'unreachable (ECONNREFUSED)' };
  assert.equal(result(diagnose(v, probes()), 'every node online'), 'fail');
  const obs = views();
  obs[0]!.status!.peers[2]!.role = 'observer';
  obs[2] = { nodeName: 'c', apiUrl: 'http://c:7101', ok: false, error: 'unreachable' };
  assert.equal(result(diagnose(obs, probes()), 'every node online'), 'warn');
});

test('doctor: no leader, two nodes answering /leader, a skewed clock, tolerance 0, mixed versions', () => {
  const noLeader = views().map((x) => ({ ...x, status: { ...x.status!, raftRole: 'follower', leader: null } }));
  assert.equal(result(diagnose(noLeader, probes()), 'leader and quorum'), 'fail');
  const p = probes();
  p[1] = { ...p[1]!, leaderEndpoint: 200 };
  assert.equal(result(diagnose(views(), p), 'load-balancer endpoints'), 'fail');
  const skew = probes();
  skew[2] = { ...skew[2]!, clockSkewMs: 5000 };
  const checks = diagnose(views(), skew);
  assert.equal(result(checks, 'clocks'), 'warn');
  assert.match(checks.find((c) => c.check === 'clocks')!.detail, /c \+5000 ms/);
  const v = views();
  v[0] = { ...v[0]!, status: { ...v[0]!.status!, failureTolerance: 0 } };
  v[1] = { ...v[1]!, status: { ...v[1]!.status!, version: '0.2.0' } };
  const c2 = diagnose(v, probes());
  assert.equal(result(c2, 'failure tolerance'), 'warn');
  assert.equal(result(c2, 'versions'), 'warn');
});

const NOW = Date.parse('2026-11-30T12:00:00Z');
const withLeader = (extra: Record<string, unknown>): View[] => { const v = views(); v[0] = { ...v[0]!, status: st('a', 'leader', extra) }; return v; };
const find = (checks: ReturnType<typeof diagnose>, name: string) => checks.find((c) => c.check === name);

test('doctor: a pause or drain past its expiry warns with the command that ends it; one within its expiry warns as maintenance only', () => {
  const hold = (reason: string, expiresAt: string | null) => ({ reason, since: '2026-11-30T10:00:00.000Z', expiresAt });
  const late = diagnose(withLeader({ paused: true, pause: hold('kernel', '2026-11-30T11:50:00.000Z'), drained: ['b'], drains: { b: hold('disk', '2026-11-30T11:00:00.000Z') } }), probes(), { now: NOW });
  const past = find(late, 'maintenance past its expiry')!;
  assert.equal(past.result, 'warn');
  assert.match(past.detail, /the pause \(reason: kernel\), expired 10 min ago; the drain of b \(reason: disk\), expired 1 h ago/);
  assert.match(past.action, /`quorate resume`, `quorate undrain b`/);
  const onTime = diagnose(withLeader({ paused: true, pause: hold('kernel', '2026-11-30T13:00:00.000Z') }), probes(), { now: NOW });
  assert.equal(find(onTime, 'maintenance past its expiry'), undefined);
  assert.match(find(onTime, 'maintenance')!.detail, /paused \(reason: kernel\), until 2026-11-30T13:00:00.000Z/);
  // Within the grace the leader's expiry service gets to end it.
  assert.equal(find(diagnose(withLeader({ paused: true, pause: hold('k', '2026-11-30T11:59:30.000Z') }), probes(), { now: NOW }), 'maintenance past its expiry'), undefined);
  assert.match(find(diagnose(withLeader({ drained: ['c'] }), probes(), { now: NOW }), 'drained nodes')!.detail, /^c, no expiry$/);
});

test('doctor: certificates near expiry warn (file: --cert-days; auto: under a renewal period), expired fail, far ones pass', () => {
  const inDays = (d: number) => new Date(NOW + d * 86_400_000).toISOString();
  const v = (certs: unknown[]): View[] => { const x = views(); x[1] = { ...x[1]!, status: st('b', 'follower', { certificates: certs }) }; return x; };
  const far = diagnose(v([{ cert: 'peer', source: 'file', file: '/etc/q/peer.crt', notAfter: inDays(200) }, { cert: 'peer+api', source: 'auto', file: null, notAfter: inDays(70), renewPeriodSeconds: 30 * 86400 }]), probes(), { now: NOW });
  assert.equal(find(far, 'certificates')!.result, 'pass');
  assert.match(find(far, 'certificates')!.detail, /2 certificate\(s\); the first to expire: b peer\+api \(cluster CA\) in 70 d/);
  const near = find(diagnose(v([{ cert: 'api', source: 'file', file: '/etc/q/api.crt', notAfter: inDays(10) }]), probes(), { now: NOW }), 'certificates')!;
  assert.deepEqual([near.result, near.detail], ['warn', `b api (/etc/q/api.crt) expires in 10 d (${inDays(10)})`]);
  assert.match(near.action, /replace the certificate file/);
  assert.equal(find(diagnose(v([{ cert: 'api', source: 'file', file: '/x', notAfter: inDays(10) }]), probes(), { now: NOW, certWarnDays: 7 }), 'certificates')!.result, 'pass', '--cert-days 7');
  const unrenewed = find(diagnose(v([{ cert: 'peer', source: 'auto', file: null, notAfter: inDays(20), renewPeriodSeconds: 30 * 86400 }]), probes(), { now: NOW }), 'certificates')!;
  assert.equal(unrenewed.result, 'warn');
  assert.match(unrenewed.action, /did not renew its cluster CA certificate/);
  assert.equal(find(diagnose(v([{ cert: 'peer', source: 'file', file: '/x', notAfter: inDays(-1) }]), probes(), { now: NOW }), 'certificates')!.result, 'fail');
  assert.equal(find(diagnose(views(), probes(), { now: NOW }), 'certificates'), undefined, 'no certificates served: no row');
});

test('doctor: the last drill: failed (or lost writes) fails, none passing within drills.maxIntervalHours warns, recent pass passes', () => {
  const H = 3_600_000;
  const rec = (agoH: number, passed: boolean, lost = 0) => ({ at: NOW - agoH * H, report: JSON.stringify({ id: `d${agoH}`, rtoTargetMs: 15000, summary: { passed, lostTotal: lost, rtoMsMax: 2100, failures: passed ? [] : [`round 1: ${lost} acknowledged write(s) lost (RPO must be 0)`] } }) });
  const d = (records: ReturnType<typeof rec>[], hours: number) => find(diagnose(views(), probes(), { now: NOW, drills: drillSchedule(records, hours, NOW) }), 'last drill')!;
  assert.deepEqual([d([rec(5, true)], 168).result, d([rec(5, true)], 168).detail], ['pass', `d5 5 h ago passed, worst RTO 2100 ms (target 15000 ms); next due by ${new Date(NOW + 163 * H).toISOString()}`]);
  const overdue = d([rec(200, true)], 168);
  assert.deepEqual([overdue.result, overdue.detail], ['warn', 'the last passing drill was 8 d 8 h ago, over drills.maxIntervalHours 168 h']);
  assert.match(overdue.action, /quorate drill --kill leader --confirm/);
  const lost = d([rec(200, true), rec(1, false, 3)], 168);
  assert.equal(lost.result, 'fail');
  assert.match(lost.detail, /d1 1 h ago FAILED: 3 acknowledged write\(s\) lost/);
  assert.match(lost.action, /quorate drill --history/);
  assert.equal(d([], 0).result, 'pass', 'no period, no drill: nothing is overdue');
  assert.equal(d([], 24).result, 'warn');
  assert.equal(find(diagnose(views(), probes()), 'last drill'), undefined, 'not asked: no row');
});
