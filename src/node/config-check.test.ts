import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from 'pino';
import { ConfigCheck } from './config-check.js';
import { captureLogger } from '../../test/support/log.js';

describe('ConfigCheck', () => {
  const own = { writeQuorum: 0, electionTimeoutMs: 1000, heartbeatIntervalMs: 100 };

  it('logs config_mismatch once per peer per value, naming the key and both values, and lists the differences', () => {
    const log = captureLogger();
    const c = new ConfigCheck(own, 'a', log as unknown as Logger);
    c.hear(2, 'b', own);
    c.hear(3, 'c', undefined);
    assert.deepStrictEqual(c.warnings(), []);
    c.hear(2, 'b', { ...own, electionTimeoutMs: 3000 });
    c.hear(2, 'b', { ...own, electionTimeoutMs: 3000 });
    const lines = () => log.lines.filter((l) => l['event'] === 'config_mismatch');
    assert.equal(lines().length, 1);
    assert.equal(lines()[0]!['key'], 'cluster.electionTimeoutMs');
    assert.match(String(lines()[0]!.msg), /^config_mismatch: cluster\.electionTimeoutMs is 3000 on b but 1000 on a; /);
    assert.deepStrictEqual(c.warnings().length, 1);
    c.hear(2, 'b', { ...own, electionTimeoutMs: 4000 });
    assert.equal(lines().length, 2, 'a new value is logged again');
    c.hear(2, 'b', own);
    assert.deepStrictEqual(c.warnings(), [], 'fixed: the warning goes');
    c.hear(3, 'c', { ...own, heartbeatIntervalMs: 200 });
    c.forget(3);
    assert.deepStrictEqual(c.warnings(), []);
  });
});
