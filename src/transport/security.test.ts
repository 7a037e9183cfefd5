import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InsecureTransport } from './errors.js';
import { assertTransportSecurity, isLoopbackHost } from './security.js';

describe('assertTransportSecurity', () => {
  it('accepts plain TCP when every peer is on loopback', () => {
    assertTransportSecurity('off', ['127.0.0.1', '127.5.6.7', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']);
    assertTransportSecurity('off', []);
  });

  it('throws a typed error naming the non-loopback peers when tls is off', () => {
    assert.throws(() => assertTransportSecurity('off', ['127.0.0.1', '10.0.1.11', 'db.example.com']), (err: unknown) => {
      assert.ok(err instanceof InsecureTransport);
      assert.equal(err.code, 'insecure_transport');
      assert.match(err.message, /peer traffic in plain TCP is accepted only when every peer is on loopback/);
      assert.match(err.message, /10\.0\.1\.11, db\.example\.com/);
      assert.match(err.message, /set security\.tls to \{certFile,keyFile,caFile\} \(auto-issued certificates come in a later release\)/);
      return true;
    });
  });

  it('allows any peer when tls files are given', () => {
    assertTransportSecurity({ certFile: 'c', keyFile: 'k', caFile: 'a' }, ['10.0.1.11']);
  });

  it('does not mistake look-alike hosts for loopback', () => {
    for (const h of ['128.0.0.1', '0.0.0.0', '::', '::2', 'localhost.evil.com', '1127.0.0.1', '']) assert.equal(isLoopbackHost(h), false, h);
  });
});
