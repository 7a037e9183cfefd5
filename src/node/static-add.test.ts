import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { staticAddProblem } from './static-add.js';

describe('static add (a node only listed in peerEndpoints)', () => {
  const record = { id: 2, role: 'voter' as const, name: 'node2', incarnation: 'inc-b' };
  it('refuses a dialer that claims a member id under another name and another data dir, saying to enroll', () => {
    const p = staticAddProblem(record, { fromId: 2, fromName: 'node4', incarnation: 'inc-d' });
    assert.match(p ?? '', /^node "node4" claims id 2, which the membership records for node "node2" \(data dir inc-b, this one inc-d\): .*`quorate join-token create` on a member and `quorate enroll`/);
  });
  it('accepts the member itself, the member with a wiped data dir (same name), a renamed member (same data dir), and anything not recorded', () => {
    assert.equal(staticAddProblem(record, { fromId: 2, fromName: 'node2', incarnation: 'inc-b' }), undefined);
    assert.equal(staticAddProblem(record, { fromId: 2, fromName: 'node2', incarnation: 'inc-new' }), undefined);
    assert.equal(staticAddProblem(record, { fromId: 2, fromName: 'renamed', incarnation: 'inc-b' }), undefined);
    assert.equal(staticAddProblem(undefined, { fromId: 2, fromName: 'x', incarnation: 'y' }), undefined);
    assert.equal(staticAddProblem({ id: 2, role: 'voter' }, { fromId: 2, fromName: 'x', incarnation: 'y' }), undefined);
  });
});
