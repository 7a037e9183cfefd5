// The drill runner against a fake two-node cluster (an HTTP server answering
// as the nodes would): what it does before a round when the node running it
// leads and no voter is caught up at that moment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DrillRunner } from './runner.js';

interface Fake { url: string; switchovers: number; close: () => Promise<void> }

/** Two nodes behind one server (the runner is given one URL per node: the same one). n1 leads until a switchover is accepted. */
async function fakeCluster(refusals: number): Promise<Fake> {
  let leader = 'n1';
  const fake = { url: '', switchovers: 0, close: async () => undefined } as Fake;
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === '/v1/cluster/status') {
        const peers = ['n1', 'n2'].map((n) => ({ nodeName: n, apiUrl: fake.url, role: 'voter', status: 'healthy' }));
        return send(200, { leader, raftRole: 'leader', term: 1, peers });
      }
      if (req.method === 'GET' && path === '/system/health/cluster') return send(200, { failoverSafe: true, failureTolerance: 1 });
      if (req.method === 'POST' && path === '/v1/cluster/switchover') {
        fake.switchovers++;
        if (fake.switchovers <= refusals) {
          return send(409, { error: 'target_not_caught_up', message: 'the most caught-up voter, n2 is not caught up: 1 entries and 1989 ms behind the leader' });
        }
        leader = 'n2';
        return send(200, { from: 'n1', to: 'n2' });
      }
      return send(403, { error: 'drills_disabled', message: 'drill faults are off on this node (drills.enabled)' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () => new Promise<void>((r) => server.close(() => r()));
  return fake;
}

function runner(fake: Fake, settleTimeoutMs: number, log: string[]): DrillRunner {
  return new DrillRunner({
    urls: [fake.url], token: 't', kill: 'leader', fault: 'crash', rounds: 1, intervalMs: 0, durationMs: 1000, force: false,
    runner: 'node:n1', exclude: 'n1', settleTimeoutMs, log: (l) => log.push(l),
  });
}

test('the node running a drill hands leadership away first; a voter not caught up at that moment is waited for, not a failed drill', async () => {
  const fake = await fakeCluster(2);
  try {
    const log: string[] = [];
    // The round then stops at the target's dry run (drills_disabled): the handover is what this test is about.
    await assert.rejects(runner(fake, 10_000, log).run(), /drills\.enabled/);
    assert.equal(fake.switchovers, 3, 'asked again after each refusal, until accepted');
    assert.equal(log.filter((l) => l.startsWith('the handover waits for a caught-up voter: ') && l.includes('n2 is not caught up')).length, 2, log.join('\n'));
  } finally {
    await fake.close();
  }
});

test('the handover gives up with the refusal once the settle wait has passed', async () => {
  const fake = await fakeCluster(Infinity);
  try {
    await assert.rejects(runner(fake, 600, []).run(), (e: Error & { code?: string }) => e.code === 'target_not_caught_up' && /n2 is not caught up/.test(e.message));
    assert.ok(fake.switchovers >= 2 && fake.switchovers <= 6, `${fake.switchovers} attempts`);
  } finally {
    await fake.close();
  }
});
