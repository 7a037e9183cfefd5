import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../raft/prng.js';
import { SortedKeys } from './sorted-keys.js';

describe('SortedKeys', () => {
  it('matches a sorted-array model under random inserts and deletes', () => {
    const rnd = new SeededRandom(7);
    const s = new SortedKeys();
    const model = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const k = `k${rnd.int(5000)}`;
      if (rnd.chance(0.6)) {
        assert.equal(s.add(k), !model.has(k));
        model.add(k);
      } else {
        assert.equal(s.delete(k), model.delete(k));
      }
    }
    const sorted = [...model].sort();
    assert.equal(s.size, sorted.length);
    assert.deepEqual([...s.from('')], sorted);
    assert.deepEqual(s.toArray(), sorted);
    assert.deepEqual([...s.from('k3')], sorted.filter((k) => k >= 'k3'));
  });

  it('builds from sorted keys and keeps accepting inserts', () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `x${String(i).padStart(5, '0')}`);
    const s = SortedKeys.fromSorted(keys);
    s.add('x00000a');
    s.delete('x01999');
    assert.deepEqual([...s.from('')], [...keys.slice(0, 1), 'x00000a', ...keys.slice(1, 1999)]);
    assert.deepEqual(s.toArray(), [...s.from('')]);
    assert.deepEqual(new SortedKeys().toArray(), []);
  });
});
