import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  certificateProblem, clusterTokenRef, epochOfIssuer, issueNodeCert, memberIdOf, newNodeKeyPem, periodOf, rootCa, trustedEpochs, trustedRoots,
} from './cluster-ca.js';

const secret = new Uint8Array(32).fill(7);
const other = new Uint8Array(32).fill(8);
const P = 60_000;
const id = { haId: 'prod-ha', nodeId: 3, nodeName: 'node3', hosts: ['10.0.1.12', 'node3.example'] };

test('every member derives the same root from the cluster secret; another secret or period gives another root', async () => {
  const a = await rootCa(secret, 'prod-ha', 5, P);
  const b = await rootCa(secret, 'prod-ha', 5, P);
  assert.equal(Buffer.from(a.cert.publicKey.rawData).toString('hex'), Buffer.from(b.cert.publicKey.rawData).toString('hex'));
  assert.equal(a.cert.serialNumber, b.cert.serialNumber);
  assert.equal(a.cert.subject, b.cert.subject);
  const c = await rootCa(other, 'prod-ha', 5, P);
  const d = await rootCa(secret, 'prod-ha', 6, P);
  const e = await rootCa(secret, 'other-ha', 5, P);
  for (const x of [c, d, e]) assert.notEqual(Buffer.from(x.cert.publicKey.rawData).toString('hex'), Buffer.from(a.cert.publicKey.rawData).toString('hex'));
  assert.equal(a.notBefore.getTime(), 4 * P);
  assert.equal(a.notAfter.getTime(), 7 * P, 'valid three periods');
});

test('a node certificate from one member verifies against the root another member derived (openssl), names the member id and hosts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-ca-'));
  try {
    const now = 10 * P + 5;
    const issuerSide = await rootCa(secret, 'prod-ha', periodOf(now, P), P);
    const keyPem = await newNodeKeyPem();
    const certPem = await issueNodeCert(issuerSide, id, keyPem, now);
    const verifierSide = await trustedRoots(secret, 'prod-ha', now, P);
    writeFileSync(join(dir, 'roots.pem'), verifierSide.map((r) => r.pem).join(''));
    writeFileSync(join(dir, 'node.pem'), certPem);
    const out = execFileSync('openssl', ['verify', '-attime', String(Math.floor(now / 1000)), '-purpose', 'sslclient', '-CAfile', join(dir, 'roots.pem'), join(dir, 'node.pem')], { encoding: 'utf8' });
    assert.match(out, /OK/);
    execFileSync('openssl', ['verify', '-attime', String(Math.floor(now / 1000)), '-purpose', 'sslserver', '-CAfile', join(dir, 'roots.pem'), join(dir, 'node.pem')]);
    const c = new X509Certificate(certPem);
    assert.equal(memberIdOf(c.subjectAltName, 'prod-ha'), 3);
    assert.equal(memberIdOf(c.subjectAltName, 'other-ha'), undefined);
    assert.ok(c.checkIP('10.0.1.12'));
    assert.ok(c.checkHost('node3.example'));
    assert.equal(c.publicKey.asymmetricKeyType, 'ec');
    assert.equal(certificateProblem(certPem, verifierSide, id, now), undefined);
    assert.match(certificateProblem(certPem, verifierSide, { ...id, nodeId: 4 }, now) ?? '', /member id 4/);
    assert.match(certificateProblem(certPem, verifierSide, { ...id, hosts: ['10.0.1.13'] }, now) ?? '', /10\.0\.1\.13/);
    // Another cluster secret (after isolate rotated it): not trusted, also not by openssl.
    const rotated = await trustedRoots(other, 'prod-ha', now, P);
    assert.match(certificateProblem(certPem, rotated, id, now) ?? '', /not issued by a trusted root/);
    writeFileSync(join(dir, 'rotated.pem'), rotated.map((r) => r.pem).join(''));
    assert.throws(() => execFileSync('openssl', ['verify', '-attime', String(Math.floor(now / 1000)), '-CAfile', join(dir, 'rotated.pem'), join(dir, 'node.pem')], { stdio: 'pipe' }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rotation: a certificate of period k is trusted through period k+1, expires with its root, and the next root is trusted a period ahead', async () => {
  const k = 20;
  const now = k * P + 1;
  const keyPem = await newNodeKeyPem();
  const cert = await issueNodeCert(await rootCa(secret, 'prod-ha', k, P), id, keyPem, now);
  // One period later: roots k, k+1, k+2 are trusted; the old certificate still verifies (overlap).
  const later = (k + 1) * P + 1;
  assert.equal(certificateProblem(cert, await trustedRoots(secret, 'prod-ha', later, P), id, later), undefined);
  // Its validity ends with root k, (k+2)·P: by then every node re-issued (each period).
  const expired = (k + 2) * P + 1;
  assert.ok(certificateProblem(cert, await trustedRoots(secret, 'prod-ha', expired, P), id, expired) !== undefined);
  // A node whose clock is already in period k+1 issues from root k+1: trusted by nodes still in k.
  const ahead = await issueNodeCert(await rootCa(secret, 'prod-ha', k + 1, P), id, keyPem, now);
  assert.equal(certificateProblem(ahead, await trustedRoots(secret, 'prod-ha', k * P + P / 2, P), id, (k + 1) * P + 1), undefined);
});

test('the Token reference changes with the secret and does not contain it', () => {
  const a = clusterTokenRef(secret);
  assert.match(a, /^sha256:[0-9a-f]{32}$/);
  assert.notEqual(a, clusterTokenRef(other));
  assert.ok(!a.includes(Buffer.from(secret).toString('hex')));
});

test('CA epochs (ca rotate): epoch 0 is the pre-epoch root; a node at epoch e trusts e+1 ahead, keeps e-1 only in grace; the issuer names its epoch', async () => {
  const k = 30;
  const now = k * P + 1;
  const e0 = await rootCa(secret, 'prod-ha', k, P);
  assert.equal(e0.epoch, 0);
  assert.equal(e0.cert.subject, 'CN=quorate prod-ha root 30', 'epoch 0 keeps the subject (and key) of the releases before epochs');
  const e1 = await rootCa(secret, 'prod-ha', k, P, 1);
  assert.equal(e1.cert.subject, 'CN=quorate prod-ha root 30 epoch 1');
  assert.notEqual(Buffer.from(e1.cert.publicKey.rawData).toString('hex'), Buffer.from(e0.cert.publicKey.rawData).toString('hex'));
  assert.equal(epochOfIssuer('quorate prod-ha root 30'), 0);
  assert.equal(epochOfIssuer('quorate prod-ha root 30 epoch 7'), 7);
  assert.equal(epochOfIssuer('someone else'), undefined);
  assert.deepEqual(trustedEpochs(0, undefined), [0, 1]);
  assert.deepEqual(trustedEpochs(1, 0), [0, 1, 2]);
  assert.deepEqual(trustedEpochs(1, undefined), [1, 2]);
  const keyPem = await newNodeKeyPem();
  const late = await issueNodeCert(e0, id, keyPem, now); // a member that has not applied the rotation yet
  const moved = await issueNodeCert(e1, id, keyPem, now); // one that has
  const lateTrusts = await trustedRoots(secret, 'prod-ha', now, P, trustedEpochs(0, undefined));
  const graceTrusts = await trustedRoots(secret, 'prod-ha', now, P, trustedEpochs(1, 0));
  const afterTrusts = await trustedRoots(secret, 'prod-ha', now, P, trustedEpochs(1, undefined));
  assert.equal(lateTrusts.length, 6);
  assert.equal(certificateProblem(moved, lateTrusts, id, now), undefined, 'the late member trusts the new epoch ahead');
  assert.equal(certificateProblem(late, graceTrusts, id, now), undefined, 'the others trust the late member during the grace');
  assert.match(certificateProblem(late, afterTrusts, id, now) ?? '', /not issued by a trusted root/, 'and no longer once it ended');
  assert.equal(epochOfIssuer(new X509Certificate(moved).issuer.replace(/^CN=/, '')), 1);
});
