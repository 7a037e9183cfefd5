import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBootstrap } from './members.js';

const PATH = '/var/lib/quorate/bootstrap.json';

test('a damaged bootstrap.json is refused naming the file, what is wrong and what to do', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"haId":"x","members":', /not valid JSON/],
    ['[]', /the top level is not an object/],
    ['{"haId":"","members":[{"id":1,"peerUrl":"a:1"}]}', /"haId" is not a non-empty string/],
    ['{"haId":"x","members":{}}', /"members" is not a non-empty array/],
    ['{"haId":"x","members":[{"id":0,"peerUrl":"a:1"}]}', /members\[0\]\.id is not a positive integer/],
    ['{"haId":"x","members":[{"id":1,"peerUrl":"nope"}]}', /members\[0\]\.peerUrl is not host:port/],
    ['{"haId":"x","members":[{"id":1,"peerUrl":"a:1"},{"id":1,"peerUrl":"b:2"}]}', /repeats an id/],
  ];
  for (const [text, why] of cases) {
    assert.throws(() => parseBootstrap(text, PATH), (e: Error) => {
      assert.ok(e.message.startsWith(`${PATH} is damaged: `), e.message);
      assert.match(e.message, why);
      assert.match(e.message, /copy it from another member/);
      assert.doesNotMatch(e.message, /is not a function/);
      return true;
    });
  }
});

test('a valid bootstrap.json parses', () => {
  assert.deepEqual(parseBootstrap('{"haId":"x","members":[{"id":1,"peerUrl":"127.0.0.1:5201"},{"id":2,"peerUrl":"[::1]:5202"}]}', PATH), {
    haId: 'x', members: [{ id: 1, peerUrl: '127.0.0.1:5201' }, { id: 2, peerUrl: '[::1]:5202' }],
  });
});
