import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NODE_ERROR_CODES, NodeError, isNodeErrorCode } from '../node/errors.js';
import type { NodeErrorCode } from '../node/errors.js';
import {
  ConfChangeInProgress,
  EntryTooLarge,
  InvalidConfChange,
  InvalidTransfer,
  InvariantViolation,
  NotLeader,
  Overloaded,
  ProposalDropped,
  TransferInProgress,
} from '../raft/errors.js';
import { ERROR_STATUS, NODE_ERROR_STATUS, isErrorCode, toApiError } from './errors.js';
import { call, harness, leaderAndFollower, type Harness } from '../../test/support/api.js';

// Node error codes that are answered 500 on purpose. None today: a node error
// is something the client can act on; bugs are not NodeErrors.
const DELIBERATE_500: ReadonlySet<NodeErrorCode> = new Set<NodeErrorCode>();

describe('node error codes and the HTTP table', () => {
  test('every node error code has its own HTTP status, not a generic 500', () => {
    assert.ok(NODE_ERROR_CODES.length > 0);
    assert.equal(new Set(NODE_ERROR_CODES).size, NODE_ERROR_CODES.length, 'NODE_ERROR_CODES has duplicates');
    for (const code of NODE_ERROR_CODES) {
      assert.ok(isErrorCode(code), `${code} is missing from ERROR_STATUS`);
      const status = NODE_ERROR_STATUS[code];
      assert.equal(status, ERROR_STATUS[code]);
      assert.ok(status >= 400 && status < 600, `${code}: ${status} is not an error status`);
      if (!DELIBERATE_500.has(code)) assert.notEqual(status, 500, `${code} is answered 500`);
    }
  });

  test('every node error code converts to its status with the node message and no internal cause', () => {
    for (const code of NODE_ERROR_CODES) {
      const message = `the node says ${code}: do this next`;
      const { error, internalCause } = toApiError(new NodeError(code, message));
      assert.equal(internalCause, undefined, code);
      assert.equal(error.code, code);
      assert.equal(error.status, NODE_ERROR_STATUS[code]);
      assert.equal(error.body()['message'], message);
      assert.equal(error.body()['error'], code);
    }
  });

  test('the chosen statuses of the switchover, snapshot and load codes', () => {
    const expected: Partial<Record<NodeErrorCode, number>> = {
      transfer_failed: 409,
      snapshot_in_progress: 409,
      invalid_transfer: 409,
      transfer_in_progress: 503,
      conf_change_in_progress: 409,
      invalid_conf_change: 400,
      entry_too_large: 413,
      overloaded: 429,
      storage_failed: 503,
      shutting_down: 503,
      commit_unknown: 504,
    };
    for (const [code, status] of Object.entries(expected)) assert.equal(NODE_ERROR_STATUS[code as NodeErrorCode], status, code);
  });

  test('snapshot_in_progress and overloaded carry Retry-After; retryAfterMs overrides the default', () => {
    assert.equal(toApiError(new NodeError('snapshot_in_progress', 'busy')).error.headers['retry-after'], '1');
    assert.equal(toApiError(new NodeError('overloaded', 'busy')).error.headers['retry-after'], '1');
    assert.equal(toApiError(new NodeError('overloaded', 'busy', { retryAfterMs: 2500 })).error.headers['retry-after'], '3');
    assert.equal(toApiError(new NodeError('transfer_failed', 'no')).error.headers['retry-after'], undefined);
  });

  test('every Raft error code the node maps is a node error code; invariant_violation stays a 500 internal', () => {
    const mapped = [
      new NotLeader(2),
      new ProposalDropped('x'),
      new TransferInProgress(2),
      new Overloaded(10, 5),
      new ConfChangeInProgress('x'),
      new InvalidConfChange('x'),
      new InvalidTransfer('x'),
      new EntryTooLarge(10, 5),
    ];
    for (const e of mapped) assert.ok(isNodeErrorCode(e.code), `raft code ${e.code} is not a NodeErrorCode`);
    const fatal = new InvariantViolation('commit went backwards');
    assert.equal(isNodeErrorCode(fatal.code), false);
    const r = toApiError(fatal);
    assert.equal(r.error.status, 500);
    assert.equal(r.error.code, 'internal');
    assert.equal(r.internalCause, fatal);
    assert.doesNotMatch(r.error.message, /commit went backwards/);
  });
});

describe('node errors over HTTP', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ server: { tokenCheckIntervalMs: 0 } });
  });
  after(async () => {
    await h.close();
  });

  test('a switchover that fails with transfer_failed answers 409 with the node message', async () => {
    const message = 'leadership did not move to node2 in time; it may be lagging or unreachable. This node still leads: check `quorate peers` (lag, status), then retry or pick another target with `quorate switchover --to NAME`';
    h.node.switchover = async () => {
      throw new NodeError('transfer_failed', message);
    };
    const r = await call(h.url, 'POST', '/v1/cluster/switchover', { body: { to: 'node2' } });
    assert.equal(r.status, 409);
    assert.equal(r.body['error'], 'transfer_failed');
    assert.equal(r.body['message'], message);
    assert.equal(r.headers.get('retry-after'), null);
  });

  test('a snapshot refused with snapshot_in_progress answers 409 with Retry-After and the node message', async () => {
    const message = 'a snapshot is already being written; try again shortly';
    h.node.snapshotNow = async () => {
      throw new NodeError('snapshot_in_progress', message);
    };
    const r = await call(h.url, 'POST', '/v1/cluster/snapshot');
    assert.equal(r.status, 409);
    assert.equal(r.body['error'], 'snapshot_in_progress');
    assert.equal(r.body['message'], message);
    assert.equal(r.headers.get('retry-after'), '1');
  });

  test('every node error thrown by a write reaches the client with its status and message', async () => {
    for (const code of NODE_ERROR_CODES) {
      // not_leader makes the server look for the leader to forward to (forward.test.ts covers it).
      if (code === 'not_leader') continue;
      const message = `node failure ${code}; here is what to do`;
      h.node.failNextPropose = new NodeError(code, message);
      const r = await call(h.url, 'PUT', '/v1/kv/errors-test', { body: { value: 'x' } });
      assert.equal(r.status, NODE_ERROR_STATUS[code], code);
      assert.equal(r.body['error'], code);
      assert.equal(r.body['message'], message);
    }
  });
});

describe('node errors through a forwarding follower', () => {
  test('transfer_failed on the leader reaches a client of the follower with its status and message', async () => {
    const pair = await leaderAndFollower();
    try {
      const message = 'leadership did not move to node3 in time; This node still leads';
      pair.leader.node.switchover = async () => {
        throw new NodeError('transfer_failed', message);
      };
      const r = await call(pair.follower.url, 'POST', '/v1/cluster/switchover', { body: { to: 'node3' } });
      assert.equal(r.status, 409);
      assert.equal(r.body['error'], 'transfer_failed');
      assert.equal(r.body['message'], message);
    } finally {
      await pair.close();
    }
  });
});
