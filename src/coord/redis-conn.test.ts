import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRedisConnectionString, RedisConnectionStringError, redisErrorText } from './redis-conn.js';

test('the seed form host:port,password=…,ssl=false parses; display is host:port only', () => {
  const t = parseRedisConnectionString('10.0.1.20:6379,password=YOUR_REDIS_PASSWORD_HERE,ssl=false');
  assert.deepEqual(t, { host: '10.0.1.20', port: 6379, username: undefined, password: 'YOUR_REDIS_PASSWORD_HERE', db: 0, tls: false, display: '10.0.1.20:6379' });
  assert.equal(parseRedisConnectionString('redis.local').port, 6379, 'the port defaults to 6379');
  assert.equal(parseRedisConnectionString('[::1]:7000,ssl=true').tls, true);
  assert.equal(parseRedisConnectionString('[::1]:7000').host, '::1');
  assert.equal(parseRedisConnectionString('h:1,user=app,defaultDatabase=3').db, 3);
  assert.equal(parseRedisConnectionString('h:1', true).tls, true, 'redis.tlsEnabled turns TLS on');
});

test('redis:// and rediss:// URLs parse, with user, password and database', () => {
  const t = parseRedisConnectionString('rediss://app:s%40cret@redis.example:6380/2');
  assert.deepEqual(t, { host: 'redis.example', port: 6380, username: 'app', password: 's@cret', db: 2, tls: true, display: 'redis.example:6380' });
  const u = parseRedisConnectionString('redis://:pw@127.0.0.1');
  assert.equal(u.tls, false);
  assert.equal(u.port, 6379);
  assert.equal(u.username, undefined);
  assert.equal(u.password, 'pw');
});

test('bad connection strings are refused with what is wrong, never the password', () => {
  const bad: [string, RegExp][] = [
    ['', /is empty/],
    ['h:6379,password=hunter2,bogus=1', /unknown option "bogus"/],
    ['h:0,password=hunter2', /has port 0/],
    ['h:6379,password=hunter2,ssl=yes', /ssl=true or ssl=false/],
    ['mysql://h', /only redis:\/\/ and rediss:\/\//],
    ['h:6379:7', /invalid address/],
    ['redis://:hunter2@h/x', /has database "x"/],
  ];
  for (const [s, why] of bad) {
    assert.throws(() => parseRedisConnectionString(s), (e: unknown) => e instanceof RedisConnectionStringError && why.test(e.message) && !e.message.includes('hunter2'), s);
  }
  assert.throws(() => parseRedisConnectionString('h:1,ssl=false', true), /ssl=false but redis\.tlsEnabled is true/);
});

test('error texts for messages hide URL userinfo', () => {
  assert.equal(redisErrorText(new Error('cannot reach redis://app:hunter2@h:1')), 'cannot reach redis://***@h:1');
});
