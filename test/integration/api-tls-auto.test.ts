// security.apiTls "auto": every node serves its HTTP API over HTTPS with its
// certificate from the automatic cluster CA (on loopback too: apiTls "auto"
// turns the CA on, so peers also run mutual TLS). Clients trust the CA with
// `quorate ca export` + `--ca`, or the client library's `ca` option; a
// follower forwards a write to the leader over HTTPS, trusting the CA.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { QuorateClient } from '../../src/api/client.js';
import { MAIN, TOKEN, TestCluster, waitFor } from './harness.js';

const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { env: { ...process.env, QUORATE_TOKEN: TOKEN } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

describe('security.apiTls "auto"', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('the API is served over HTTPS from the cluster CA; ca export + --ca and the client `ca` option trust it; a follower forwards over HTTPS', async () => {
    c = await TestCluster.start({ nodes: 3, extraConfig: () => ({ security: { tls: 'auto', apiTls: 'auto', caRotationSeconds: 20 } }) });
    const https = c.nodes.map((n) => n.url.replace(/^http:/, 'https:'));
    await waitFor('every node wrote its certificate', () => c!.nodes.every((n) => existsSync(join(n.dir, 'tls', 'ca.crt'))), 30_000);
    const ca = readFileSync(join(c.nodes[0]!.dir, 'tls', 'ca.crt'));
    const client = new QuorateClient({ urls: https, token: TOKEN, ca });
    let leader = -1;
    await waitFor('a leader over HTTPS', async () => {
      for (let i = 0; i < https.length; i++) {
        const r = await new QuorateClient({ urls: [https[i]!], ca, timeoutMs: 2000 }).health('leader').catch(() => undefined);
        if (r?.ok === true) leader = i;
      }
      return leader >= 0;
    }, 30_000);
    for (const n of c.nodes) assert.match(c.log(c.nodes.indexOf(n)), /"event":"peer_listening"[^\n]*"tls":true/);
    await client.kvPut('api-tls/k', 'v1');

    // quorate ca export prints the roots; --ca makes the CLI trust them.
    const follower = (leader + 1) % 3;
    const exp = await cli(['ca', 'export', '--url', https[follower]!, '--ca', join(c.nodes[0]!.dir, 'tls', 'ca.crt')]);
    assert.equal(exp.code, 0, exp.stderr);
    // Previous, current and next period of the current CA epoch and of the next one (trusted ahead for `ca rotate`).
    assert.equal((exp.stdout.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length, 6);
    const caFile = join(c.root, 'exported-ca.pem');
    writeFileSync(caFile, exp.stdout);
    const show = await cli(['ca', 'show', '--json', '--url', https[follower]!, '--ca', caFile]);
    assert.equal(show.code, 0, show.stderr);
    const view = JSON.parse(show.stdout) as { roots: { fingerprint: string }[]; token: string };
    assert.equal(view.roots.length, 6);
    assert.match(view.token, /^sha256:[0-9a-f]{32}$/);

    // A write sent to a follower is forwarded to the leader over HTTPS (the node trusts the cluster CA).
    const put = await cli(['kv', 'put', 'api-tls/fwd', 'v2', '--url', https[follower]!, '--ca', caFile]);
    assert.equal(put.code, 0, put.stderr);
    assert.equal((await client.kvGet('api-tls/fwd'))?.value, 'v2');

    // Each node's network view measures its round trips to the others over HTTPS, trusting the cluster CA
    // (src/node/peer-get.ts; the first sample comes a second after start, then every 5 s).
    await waitFor('round trips to both peers measured over HTTPS', async () => {
      const v = (await client.request<{ rtt: { nodeName: string; ms: number | null; error?: string }[] }>('GET', '/v1/cluster/netdisk')).body;
      return v.rtt.length === 2 && v.rtt.every((r) => typeof r.ms === 'number');
    }, 20_000);

    // The diagnostic bundle over HTTPS: the collecting node fetches every other member's part trusting the cluster CA
    // (no error.txt), and each member's status and metrics show its certificate's expiry.
    const bundleFile = join(c.root, 'diag-https.tar.gz');
    const diag = await cli(['diagnostics', '-o', bundleFile, '--url', https[follower]!, '--ca', caFile]);
    assert.equal(diag.code, 0, diag.stderr);
    const listing = spawnSync('tar', ['tzf', bundleFile], { encoding: 'utf8' });
    assert.equal(listing.status, 0, listing.stderr);
    const entries = listing.stdout.trim().split('\n');
    assert.deepEqual(entries.filter((e) => e.endsWith('/error.txt')), [], `a member's part failed over HTTPS: ${entries.join(', ')}`);
    for (const n of c.nodes) assert.ok(entries.some((e) => e.endsWith(`/nodes/${n.name}/status.json`)), `${n.name}'s status in ${entries.join(', ')}`);
    const manifestText = spawnSync('tar', ['xzfO', bundleFile, '--wildcards', '*/manifest.json'], { encoding: 'utf8' }).stdout;
    assert.deepEqual((JSON.parse(manifestText) as { nodes: { ok: boolean }[] }).nodes.map((n) => n.ok), [true, true, true], manifestText);
    const st = (await client.request<{ certificates: { cert: string; source: string; notAfter: string; renewPeriodSeconds: number }[] }>('GET', '/v1/cluster/status')).body;
    assert.equal(st.certificates.length, 1, JSON.stringify(st.certificates));
    assert.deepEqual([st.certificates[0]!.cert, st.certificates[0]!.source, st.certificates[0]!.renewPeriodSeconds], ['peer+api', 'auto', 20]);
    assert.ok(Date.parse(st.certificates[0]!.notAfter) > Date.now(), st.certificates[0]!.notAfter);
    const metrics = await new QuorateClient({ urls: [https[follower]!], token: TOKEN, ca }).metrics();
    assert.match(String(metrics), /^quorate_certificate_expiry_timestamp_seconds\{cert="peer\+api",source="auto",file=""\} \d+/m);
    assert.match(String(metrics), /^quorate_certificate_renew_period_seconds\{cert="peer\+api"\} 20$/m);

    // At the next period the API serves a renewed certificate; a client holding the exported roots still trusts it.
    const servedCert = async (): Promise<string> => new Promise((resolve, reject) => {
      const u = new URL(https[follower]!);
      const s = tlsConnect({ host: u.hostname, port: Number(u.port), ca: readFileSync(caFile) }, () => {
        resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '');
        s.destroy();
      });
      s.once('error', reject);
    });
    // Export the roots again just before (under load, the first export may be a period old by now): they hold the
    // previous, current and next roots, and the renewal at the next period is issued by that next root.
    const again = await cli(['ca', 'export', '--url', https[follower]!, '--ca', caFile]);
    assert.equal(again.code, 0, again.stderr);
    writeFileSync(caFile, again.stdout);
    const first = await servedCert();
    await waitFor('the API serves a renewed certificate', async () => (await servedCert()) !== first, 30_000);
    assert.equal((await new QuorateClient({ urls: [https[follower]!], token: TOKEN, ca: readFileSync(caFile) }).kvGet('api-tls/fwd'))?.value, 'v2');

    // Without the CA the CLI refuses the node's certificate.
    const untrusted = await cli(['kv', 'get', 'api-tls/k', '--url', https[follower]!, '--timeout', '3s']);
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /certificate|self.signed|issuer/i);
  });
});
