// Role-change hooks: serialized in event order; a primary call whose term is
// over before it runs is skipped; a primary hook still running when leadership
// is lost is followed by the standby call; timeouts kill and are logged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureLogger } from '../../test/support/log.js';
import { HookRunner } from './hooks.js';
import { RaftLeadership } from './leadership.js';

const lines = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : []);
const waitFor = async (fn: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('hooks run one at a time in order; a lost leadership is told right after a slow primary hook; a stale primary call is skipped', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'quorate-hooks-')), 'calls');
  const log = captureLogger();
  const leadership = new RaftLeadership();
  const h = new HookRunner({
    hooks: { onStart: `echo "$@" >> ${out}`, onRoleChange: `echo "begin $2" >> ${out}; [ "$2" = primary ] && sleep 0.3; echo "$@ $QUORATE_LEADER_NAME" >> ${out}`, onStop: `echo "$@" >> ${out}`, timeoutMs: 5000 },
    leadership, nodeName: 'n1', configuredRole: 'voter', leaderName: () => 'n2', logger: log,
  });
  h.start();
  leadership.update({ leading: true, term: 3, quorum: true });
  await waitFor(() => lines(out).includes('begin primary'));
  // Lost while the primary hook (0.3 s) runs: the standby call follows it.
  leadership.update({ leading: false, term: 4, quorum: false });
  // Led again in term 5 and lost before that call could run: it is skipped.
  leadership.update({ leading: true, term: 5, quorum: true });
  leadership.update({ leading: false, term: 6, quorum: false });
  await h.stop();
  assert.deepEqual(lines(out), [
    'onStart standby 0 0 n1 n2',
    'begin primary',
    'onRoleChange primary 3 3 n1 n1 n1',
    'begin standby',
    'onRoleChange standby 4 4 n1 n2 n2',
    'begin standby',
    'onRoleChange standby 6 6 n1 n2 n2',
    'onStop standby 6 6 n1 n2',
  ]);
  assert.ok(log.lines.some((l) => l['event'] === 'hook_skipped' && l['hookTerm'] === 5));
});

test('a hook past its timeout is killed and logged as timed out', async () => {
  const log = captureLogger();
  const leadership = new RaftLeadership();
  const h = new HookRunner({ hooks: { onStart: 'sleep 5', timeoutMs: 200 }, leadership, nodeName: 'n1', configuredRole: 'voter', leaderName: () => null, logger: log });
  const t0 = Date.now();
  h.start();
  await waitFor(() => log.lines.some((l) => l['event'] === 'hook_finished'));
  const line = log.lines.find((l) => l['event'] === 'hook_finished')!;
  assert.equal(line['timedOut'], true);
  assert.equal(line['exitCode'], null);
  assert.ok(Date.now() - t0 < 4000);
  await h.stop();
});
