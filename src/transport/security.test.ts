import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InsecureTransport, TransportConfigError } from './errors.js';
import { assertTransportSecurity, formatClusterSecret, isLoopbackHost, loadClusterSecret, newClusterSecret } from './security.js';

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

describe('cluster secret file', () => {
  const refused = (path: string, pattern: RegExp): void => {
    assert.throws(() => loadClusterSecret(path), (err: unknown) => err instanceof TransportConfigError && err.code === 'transport_config_invalid' && pattern.test(err.message));
  };

  it('round-trips a new secret written with mode 0600', () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-secret-'));
    try {
      const s = newClusterSecret();
      assert.equal(s.length, 32);
      assert.notDeepEqual(newClusterSecret(), s);
      const p = join(dir, 'cluster.secret');
      writeFileSync(p, formatClusterSecret(s), { mode: 0o600 });
      assert.deepEqual(loadClusterSecret(p), s);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a missing, group/other-readable, short or non-hex file, saying what to do', () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-secret-'));
    try {
      const p = join(dir, 'cluster.secret');
      refused(p, /security\.clusterSecretFile ".*cluster\.secret" does not exist: run `quorate init` to create it, or copy the file from another member of the cluster \(mode 0600\)/);
      writeFileSync(p, formatClusterSecret(newClusterSecret()), { mode: 0o640 });
      refused(p, /security\.clusterSecretFile ".*cluster\.secret" is readable by group or others \(mode 0640\): run `chmod 600 .*cluster\.secret`/);
      rmSync(p);
      writeFileSync(p, `${'ab'.repeat(31)}\n`, { mode: 0o600 });
      refused(p, /holds 31 bytes; the cluster secret must be at least 32 bytes \(64 hex digits\)/);
      rmSync(p);
      writeFileSync(p, 'not hex at all, but long enough to be a secret otherwise........', { mode: 0o600 });
      refused(p, /must hold hex digits only \(e\.g\. from `openssl rand -hex 32`\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
