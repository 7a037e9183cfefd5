// Peer traffic over TLS 1.3 with mutual authentication from the operator's
// own certificate files (security.tls = {certFile, keyFile, caFile}).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOKEN, TestCluster, http } from './harness.js';

describe('peer TLS with certificate files', () => {
  let dir: string;
  let c: TestCluster | undefined;
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'quorate-it-tls-'));
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1',
      '-subj', '/CN=quorate-it-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    for (const name of ['node1', 'node2', 'node3']) {
      openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n');
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
    }
  });
  after(async () => {
    await c?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('three nodes elect a leader and replicate over TLS 1.3 mutual authentication', async () => {
    c = await TestCluster.start({
      nodes: 3,
      tls: (i) => ({ certFile: join(dir, `node${i + 1}.crt`), keyFile: join(dir, `node${i + 1}.key`), caFile: join(dir, 'ca.crt') }),
    });
    const leader = await c.waitLeader();
    await c.client().kvPut('tls/k', 'secret');
    for (const n of c.nodes) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await http(n.url, 'GET', '/v1/kv/tls/k?consistency=stale', { token: TOKEN });
        if (r.body['value'] === 'secret') break;
        assert.ok(Date.now() < deadline, `${n.name} replicated over TLS`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    assert.match(c.log(leader), /"event":"peer_listening"[^\n]*"tls":true/);
  });
});
