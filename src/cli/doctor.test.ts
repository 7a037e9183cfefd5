// doctor's checks from gathered views (pure).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diagnose, type Probe, type View } from './doctor.js';

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
