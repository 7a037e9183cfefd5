import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { VirtualIp, type VipDeps } from './vip.js';
import type { CommandResult, VipCommands } from './vip-commands.js';
import { captureLogger } from '../../test/support/log.js';

const ok = (command: string): CommandResult => ({ ok: true, command, detail: '' });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function fake(over: Partial<VipDeps> = {}): { vip: VirtualIp; calls: string[] } {
  const calls: string[] = [];
  const commands: VipCommands = {
    add: (t) => { calls.push(`add ${t}`); return Promise.resolve(ok('add')); },
    remove: () => { calls.push('remove'); return Promise.resolve(ok('remove')); },
    present: () => Promise.resolve(false),
    announce: () => { calls.push('arp'); return Promise.resolve(undefined); },
  };
  const vip = new VirtualIp({
    cidr: '10.0.0.1/24', iface: 'eth0', script: '', fenceScript: '', leaseSeconds: 3, marginMs: 200, commands, log: pino({ level: 'silent' }),
    confirm: () => Promise.resolve(), wonByTransfer: () => false, previousLeader: () => undefined, ...over,
  });
  return { vip, calls };
}

test('a new leader waits T + margin before adding the address, then adds it with a lifetime of at most T and announces it', async () => {
  const { vip, calls } = fake();
  vip.start(2);
  await sleep(1000);
  assert.deepEqual(calls, [], 'nothing before T + margin');
  assert.equal(vip.status().state, 'waiting');
  await sleep(2600);
  assert.ok(calls[0] === 'add 2' || calls[0] === 'add 3', `lifetime at most T (3 s): ${calls[0]}`);
  assert.equal(calls[1], 'arp');
  assert.equal(vip.status().holding, true);
  vip.stop();
  await vip.close();
  assert.equal(calls[calls.length - 1], 'remove');
  assert.equal(vip.status().holding, false);
});

test('the lifetime counts from the start of the quorum confirmation: a slow confirmation shortens it, one slower than T adds nothing', async () => {
  let delay = 1200;
  const { vip, calls } = fake({ wonByTransfer: () => true, confirm: () => sleep(delay) });
  vip.start(3);
  await sleep(1500);
  assert.equal(calls[0], 'add 1', 'confirmation took 1.2 s of the 3 s: 1 whole second left');
  delay = 3200;
  const n = calls.filter((c) => c.startsWith('add')).length;
  await sleep(5000);
  assert.equal(calls.filter((c) => c.startsWith('add')).length, n, 'a confirmation slower than T renews nothing');
  await vip.close();
});

test('after a switchover win the address is taken at once; a failing fence holds it back until it succeeds', async () => {
  const won = fake({ wonByTransfer: () => true });
  won.vip.start(4);
  await sleep(200);
  assert.equal(won.calls[0], 'add 2', 'taken at once');
  await won.vip.close();

  let fenceOk = false;
  const fenced: string[] = [];
  const f = fake({ fenceScript: '/bin/fence', previousLeader: () => ({ nodeName: 'node1', apiUrl: 'http://a:1', peerUrl: 'a:2', term: 4 }),
    runFence: (t) => { fenced.push(`${t.nodeName} ${t.term}`); return Promise.resolve(fenceOk ? ok('fence') : { ok: false, command: 'fence', detail: 'exit 1: no power switch' }); } });
  f.vip.start(5);
  await sleep(1500);
  assert.deepEqual(f.calls, [], 'held back while the fence fails');
  assert.equal(f.vip.status().state, 'fencing');
  assert.equal(f.vip.status().fence?.lastError, 'exit 1: no power switch');
  fenceOk = true;
  await sleep(2500);
  assert.deepEqual(fenced, ['node1 4', 'node1 4', 'node1 4']);
  assert.equal(f.calls[0], 'add 2', 'taken right after the fence succeeded');
  await f.vip.close();
});

test('a failing add is retried every renewal, shown in status with the command\'s output, and logged once, not at every retry', async () => {
  const log = captureLogger('info');
  const calls: string[] = [];
  const vip = new VirtualIp({
    cidr: '10.0.0.1/24', iface: 'eth9', script: '', fenceScript: '', leaseSeconds: 3, marginMs: 0, log,
    commands: {
      add: () => { calls.push('add'); return Promise.resolve({ ok: false, command: 'ip -4 addr replace 10.0.0.1/24 dev eth9', detail: 'exit 1: Cannot find device "eth9"' }); },
      remove: () => Promise.resolve(ok('remove')), present: () => Promise.resolve(false), announce: () => Promise.resolve(undefined),
    },
    confirm: () => Promise.resolve(), wonByTransfer: () => true, previousLeader: () => undefined,
  });
  vip.start(1);
  await sleep(2500);
  assert.ok(calls.length >= 2, `retried (${calls.length} attempts)`);
  assert.equal(vip.status().holding, false);
  assert.match(vip.status().lastError ?? '', /Cannot find device "eth9"/);
  assert.equal(log.lines.filter((l) => l['event'] === 'vip_add_failed').length, 1, 'logged once');
  await vip.close();
});
