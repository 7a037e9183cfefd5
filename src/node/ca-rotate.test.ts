// `quorate ca rotate` on the leader: the feature-level and grace refusals, and the end of the grace once every
// member showed a certificate of the new epoch (./ca-rotate.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureLogger } from '../../test/support/log.js';
import { decodeSecretsCommand, type CaEpochState } from '../state/index.js';
import { decodeEntry } from '../state/envelope.js';
import { CaRotation } from './ca-rotate.js';
import type { AutoTls } from './tls-auto.js';

function setup(level: number) {
  let ca: CaEpochState = { epoch: 0, graceEpoch: undefined };
  const peer = new Map<number, number>();
  let own = 0;
  const proposed: unknown[] = [];
  const tls = { get caEpochs() { return { epoch: own, graceEpoch: undefined }; }, peerEpoch: (id: number) => peer.get(id) } as unknown as AutoTls;
  const r = new CaRotation({
    log: captureLogger() as never, autoTls: tls, selfId: 1, featureLevel: () => level, isLeader: () => true, caState: () => ca,
    members: () => [{ id: 1, name: 'node1' }, { id: 2, name: 'node2' }, { id: 3, name: 'node3' }],
    propose: async (entry) => {
      const d = decodeEntry(entry);
      assert.ok(d.version === 2);
      const c = decodeSecretsCommand(d.envelope.payload);
      proposed.push(c);
      if ('kind' in c && c.kind === 'reroot') ca = { epoch: c.epoch, graceEpoch: c.epoch - 1 };
      if ('kind' in c && c.kind === 'reroot-done') ca = { epoch: c.epoch, graceEpoch: undefined };
    },
  });
  return { r, peer, proposed, setOwn: (e: number) => { own = e; }, ca: () => ca };
}

test('ca rotate: refused below feature level 4 naming it; moves to the next epoch; refused while the grace is open, naming who it waits for', async () => {
  const old = setup(3);
  await assert.rejects(old.r.rotate(), (e: Error & { code?: string }) => e.code === 'feature_unavailable' && /feature level 4 \(this cluster is at 3/.test(e.message));
  assert.deepEqual(old.proposed, []);

  const s = setup(4);
  const r = await s.r.rotate();
  assert.equal(r.epoch, 1);
  assert.deepEqual(s.proposed, [{ kind: 'reroot', epoch: 1 }]);
  assert.deepEqual(s.r.pending(), { epoch: 1, waitingFor: ['node1', 'node2', 'node3'] });
  s.setOwn(1);
  s.peer.set(2, 1);
  s.peer.set(3, 0);
  await assert.rejects(s.r.rotate(), (e: Error & { code?: string }) => e.code === 'ca_rotation_refused' && /waiting for node3 to show a certificate of epoch 1/.test(e.message));
  s.r.tick();
  assert.equal(s.proposed.length, 1, 'no end of grace while node3 shows epoch 0');
  s.peer.set(3, 1);
  s.r.tick();
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(s.proposed.at(-1), { kind: 'reroot-done', epoch: 1 });
  assert.equal(s.r.pending(), undefined);
  assert.equal((await s.r.rotate()).epoch, 2, 'the next rotation is allowed once the grace ended');
});

test('ca rotate: refused on a node without the cluster CA', async () => {
  const r = new CaRotation({
    log: captureLogger() as never, autoTls: undefined, selfId: 1, featureLevel: () => 4, isLeader: () => true, caState: () => ({ epoch: 0, graceEpoch: undefined }),
    members: () => [], propose: async () => undefined,
  });
  await assert.rejects(r.rotate(), (e: Error & { code?: string }) => e.code === 'ca_rotation_refused' && /does not use the automatic cluster CA/.test(e.message));
});
