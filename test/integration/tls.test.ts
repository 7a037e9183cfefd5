// Peer traffic over TLS 1.3 with mutual authentication from the operator's
// own certificate files (security.tls = {certFile, keyFile, caFile}).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, TOKEN, TestCluster, http, waitFor } from './harness.js';

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

  test('certificate files near expiry: status, metric and doctor name the file; a renewed file is picked up without a restart', async () => {
    const n1 = c!.nodes[0]!;
    type Cert = { cert: string; source: string; file: string; notAfter: string; expiresInSeconds: number };
    const certs = async (): Promise<Cert[]> => (await http(n1.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['certificates'] as Cert[];
    const file = join(dir, 'node1.crt');
    const [cert] = await certs();
    assert.deepEqual([cert!.cert, cert!.source, cert!.file], ['peer', 'file', file]);
    assert.ok(cert!.expiresInSeconds > 0 && cert!.expiresInSeconds <= 86_400, String(cert!.expiresInSeconds));
    const metrics = await (await fetch(`${n1.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.ok(metrics.includes(`quorate_certificate_expiry_timestamp_seconds{cert="peer",source="file",file="${file}"} ${Date.parse(cert!.notAfter) / 1000}\n`), metrics.split('\n').filter((l) => l.includes('certificate')).join('\n'));
    const doctor = (...extra: string[]) => {
      const r = spawnSync(process.execPath, [MAIN, 'doctor', '--json', '--url', n1.url, '--token', TOKEN, ...extra], { encoding: 'utf8', timeout: 30_000 });
      return (JSON.parse(r.stdout) as { checks: { check: string; result: string; detail: string; action: string }[] }).checks.find((x) => x.check === 'certificates')!;
    };
    const warn = doctor();
    assert.equal(warn.result, 'warn', JSON.stringify(warn));
    assert.match(warn.detail, new RegExp(`node1 peer \\(${file.replace(/[.]/g, '\\.')}\\) expires in \\d+ h`));
    assert.match(warn.action, /replace the certificate file/);
    assert.equal(doctor('--cert-days', '0').result, 'pass');
    // Renewed in place (same key, a year): the node reports the new expiry (it serves the new file from its next restart).
    openssl('x509', '-req', '-in', 'node1.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node1.crt', '-days', '400', '-extfile', 'node1.ext');
    await waitFor('the renewed expiry in the status', async () => ((await certs())[0]?.expiresInSeconds ?? 0) > 300 * 86_400, 10_000);
    // node2's and node3's files still expire within a day: doctor names them only.
    await waitFor('doctor no longer names node1', () => !doctor().detail.includes('node1 peer'), 10_000);
    const left = doctor().detail;
    assert.ok(left.includes('node2 peer') && left.includes('node3 peer'), left);
  });
});
