// security.tls "auto" at the transport: nodes with certificates from the
// derived cluster CA (./tls-auto.ts) talk mutual TLS 1.3; the certificate is
// bound to the member id; only the join exchange comes without a certificate;
// renewal at a period change keeps peers talking; a rotated cluster secret
// re-roots, and the old chain is refused.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { AutoTls, needsClusterCa } from './tls-auto.js';
import { parseConfig } from '../config/index.js';
import { memberIdOf } from './cluster-ca.js';
import { captureLogger } from '../../test/support/log.js';
import { connected, mesh, msg, rawClient, startNode, TEST_SECRET, until, type Node } from '../../test/support/transport.js';
import type { TlsMaterial } from '../transport/security.js';

const root = mkdtempSync(join(tmpdir(), 'quorate-tls-auto-'));
after(() => rmSync(root, { recursive: true, force: true }));
// Real time (TLS checks validity against the clock), a period of an hour.
const PERIOD = 3600_000;
const T0 = Date.now();

async function autoFor(id: number, opts: { secret?: Uint8Array; now?: () => number; dir?: string } = {}): Promise<AutoTls> {
  return AutoTls.open({
    log: captureLogger() as never, dir: opts.dir ?? join(root, `n${id}-${Math.random().toString(36).slice(2)}`),
    id: { haId: 'test-ha', nodeId: id, nodeName: `node${id}`, hosts: ['127.0.0.1'] }, periodMs: PERIOD,
    secret: opts.secret ?? new Uint8Array(TEST_SECRET), now: opts.now ?? (() => T0),
  });
}

async function nodeWith(id: number, auto: AutoTls): Promise<Node> {
  const n = await startNode(id, { tls: auto.transportSetting(), peerCertificateProblem: (peer, san, issuer) => auto.peerCertificateProblem(peer, san, issuer) });
  auto.onMaterial((m) => n.t.setTlsMaterial(m));
  return n;
}

const tlsWith = (port: number, m: TlsMaterial | undefined) => () => connect({
  host: '127.0.0.1', port, rejectUnauthorized: m !== undefined, minVersion: 'TLSv1.3',
  ...(m ? { ca: m.ca as string[], cert: m.cert, key: m.key } : {}),
});

describe('security.tls "auto": the cluster CA at the peer transport', () => {
  it('makes a 0600 key once and a certificate bound to the member id; round-trips messages over mutual TLS 1.3', async () => {
    const dir = join(root, 'keep');
    const a1 = await autoFor(1, { dir });
    assert.equal(statSync(join(dir, 'node.key')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const key = readFileSync(join(dir, 'node.key'), 'utf8');
    const again = await autoFor(1, { dir });
    assert.equal(readFileSync(join(dir, 'node.key'), 'utf8'), key, 'the key is kept across restarts');
    assert.equal(memberIdOf(new X509Certificate(again.certificatePem()).subjectAltName, 'test-ha'), 1);
    assert.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), (again.material().ca as string[]).join(''));
    const a = await nodeWith(1, a1);
    const b = await nodeWith(2, await autoFor(2));
    try {
      mesh([a, b]);
      await connected(a, b);
      await connected(b, a);
      a.t.send([msg({ from: 1, to: 2, type: 'app', entries: [{ term: 1, index: 1, type: 'normal', data: new Uint8Array([7]) }] })]);
      await until(() => b.received.length === 1, 'a message over TLS');
      const s = connect({ host: '127.0.0.1', port: b.port, ca: a1.material().ca as string[], cert: a1.material().cert, key: a1.material().key });
      await new Promise((r) => s.once('secureConnect', r));
      assert.equal(s.getProtocol(), 'TLSv1.3');
      s.destroy();
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it("refuses a member's valid certificate used to claim another id, and a dialer without a certificate for anything but a join", async () => {
    const three = await autoFor(3);
    const b = await nodeWith(2, await autoFor(2));
    try {
      b.t.setPeers(new Map([[1, { host: '127.0.0.1', port: 1 }], [3, { host: '127.0.0.1', port: 1 }]]));
      const impostor = await rawClient(b.port, tlsWith(b.port, three.material()));
      await impostor.hello({ fromId: 1, fromName: 'node1' });
      assert.equal(await impostor.answer(), 'refuse');
      const line = b.log.lines.find((l) => l['event'] === 'peer_refused_inbound')!;
      assert.equal(line['code'], 'certificate_mismatch');
      assert.match(String(line['reason']), /belongs to member id 3, but the dialer claimed id 1/);
      const genuine = await rawClient(b.port, tlsWith(b.port, three.material()));
      await genuine.hello({ fromId: 3, fromName: 'node3' });
      assert.equal(await genuine.answer(), 'helloAck');
      genuine.socket.destroy();
      // No certificate: TLS lets it in (a joiner has none yet), the transport refuses it all but the join exchange.
      const anon = await rawClient(b.port, tlsWith(b.port, undefined));
      await anon.hello({ fromId: 3, fromName: 'node3' });
      assert.equal(await anon.answer(), 'refuse');
      await until(() => b.log.lines.some((l) => l['code'] === 'certificate_required'), 'certificate_required logged');
    } finally {
      await b.t.close();
    }
  });

  it('renews at a period change without losing the peer; a rotated cluster secret re-roots and the old chain is refused', async () => {
    let now = T0;
    const s1 = new Uint8Array(TEST_SECRET);
    const s2 = new Uint8Array(TEST_SECRET);
    const auto1 = await autoFor(1, { secret: s1, now: () => now });
    const auto2 = await autoFor(2, { secret: s2, now: () => now });
    const a = await nodeWith(1, auto1);
    const b = await nodeWith(2, auto2);
    try {
      mesh([a, b]);
      await connected(a, b);
      // Node 1 enters the next period first and re-issues from the next root: node 2 (still in the old period) trusts it.
      now = T0 + PERIOD;
      const oldCert = auto1.certificatePem();
      await auto1.refresh();
      assert.notEqual(auto1.certificatePem(), oldCert);
      const fresh = await rawClient(b.port, tlsWith(b.port, auto1.material()));
      await fresh.hello({ fromId: 1, fromName: 'node1' });
      assert.equal(await fresh.answer(), 'helloAck', 'a certificate of the next root is accepted a period ahead');
      fresh.socket.destroy();
      await auto2.refresh();

      // The secret rotates (isolate) on node 2 only: it re-roots, and node 1's certificate (old chain) no longer gets in.
      const before = auto2.haStateFields().Token;
      s2.set(new Uint8Array(32).fill(42));
      await auto2.refresh();
      assert.notEqual(auto2.haStateFields().Token, before);
      // (The TLS layer lets an unverified client in for the join exchange; the transport refuses it anything else.)
      const stale = await rawClient(b.port, tlsWith(b.port, { ...auto1.material(), ca: auto2.material().ca }));
      await stale.hello({ fromId: 1, fromName: 'node1' });
      assert.equal(await stale.answer(), 'refuse');
      const refusal = b.log.lines.find((l) => l['code'] === 'certificate_required');
      assert.match(String(refusal?.['reason']), /presented no certificate of this cluster's CA \(.+\)/);
      // Node 1 follows the rotation: accepted again.
      s1.set(s2);
      await auto1.refresh();
      const back = await rawClient(b.port, tlsWith(b.port, auto1.material()));
      await back.hello({ fromId: 1, fromName: 'node1' }, { secret: TEST_SECRET });
      assert.equal(await back.answer(), 'helloAck');
      back.socket.destroy();
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });
});

describe('when "auto" uses the cluster CA', () => {
  const cfg = (o: Record<string, unknown>) => parseConfig(o, {}, { baseDir: '/srv/q', source: 'test' });
  it('loopback-only stays plain TCP; a network peer, address or apiTls "auto" turns the CA on; "off" and files never', () => {
    assert.equal(needsClusterCa(cfg({}), { members: [] }), false);
    assert.equal(needsClusterCa(cfg({ cluster: { peerEndpoints: ['https://10.0.1.11:5201'] } }), { members: [] }), true);
    assert.equal(needsClusterCa(cfg({ node: { peerAddress: '0.0.0.0:5201' } }), { members: [] }), true);
    assert.equal(needsClusterCa(cfg({}), { members: [{ peerUrl: '10.0.1.12:5201' }] }), true, 'an enrolled node learns network peers from bootstrap.json');
    assert.equal(needsClusterCa(cfg({ security: { apiTls: 'auto' } }), { members: [] }), true);
    assert.equal(needsClusterCa(cfg({ security: { tls: 'off' } }), { members: [] }), false);
    assert.equal(needsClusterCa(cfg({ node: { peerAddress: '0.0.0.0:5201' }, security: { tls: { certFile: 'c', keyFile: 'k', caFile: 'a' } } }), { members: [] }), false);
  });
});

describe('CA epochs (quorate ca rotate) at the transport', () => {
  it('a new epoch brings a new key and a certificate of it; a late member and an up-to-date one connect both ways during the grace; after it, the old epoch is refused', async () => {
    const dir1 = join(root, `epoch-n1-${Math.random().toString(36).slice(2)}`);
    const auto1 = await autoFor(1, { dir: dir1 });
    const auto2 = await autoFor(2);
    const a = await nodeWith(1, auto1);
    const b = await nodeWith(2, auto2);
    const changes: boolean[] = [];
    auto1.onMaterial((_m, c) => changes.push(c.epochChanged));
    try {
      mesh([a, b]);
      await connected(a, b);
      await until(() => auto2.peerEpoch(1) === 0 && auto1.peerEpoch(2) === 0, 'each saw the other\'s epoch-0 certificate');
      const key0 = readFileSync(join(dir1, 'node.key'), 'utf8');
      // Node 1 applies the rotation; node 2 applies it late.
      await auto1.setCaEpochs({ epoch: 1, graceEpoch: 0 });
      assert.deepEqual(changes, [true]);
      assert.notEqual(readFileSync(join(dir1, 'node.key'), 'utf8'), key0, 'a new node key with the new epoch');
      assert.equal((statSync(join(dir1, 'node.key')).mode & 0o777), 0o600);
      assert.match(new X509Certificate(auto1.certificatePem()).issuer, /root \d+ epoch 1$/);
      assert.deepEqual(JSON.parse(readFileSync(join(dir1, 'ca-epoch.json'), 'utf8')), { epoch: 1, graceEpoch: 0 });
      a.t.redialAll('test: new epoch');
      await until(() => auto2.peerEpoch(1) === 1, 'the late node 2 accepted node 1\'s epoch-1 certificate (it trusts the next epoch ahead)');
      b.t.redialAll('test: redial with the old epoch');
      await until(() => a.log.lines.filter((l) => l['event'] === 'peer_connected' && l['direction'] === 'in').length >= 2, 'node 1 accepted the late node 2 (epoch 0 in grace)');
      assert.equal(auto1.peerEpoch(2), 0);
      await connected(a, b);
      // The redials were make-before-break: neither side saw an outage.
      assert.deepEqual([a.disconnects, b.disconnects], [[], []]);
      assert.equal(a.log.lines.filter((l) => l['event'] === 'peer_reconnected').length, 1);
      // Node 2 catches up; the grace ends on both: the epoch-0 material is refused from now on.
      await auto2.setCaEpochs({ epoch: 1, graceEpoch: 0 });
      await auto1.setCaEpochs({ epoch: 1, graceEpoch: undefined });
      await auto2.setCaEpochs({ epoch: 1, graceEpoch: undefined });
      assert.deepEqual(changes, [true, false]);
      const old2 = (await autoFor(2)).material(); // a certificate of epoch 0 for member 2
      const stale = await rawClient(a.port, tlsWith(a.port, { cert: old2.cert, key: old2.key, ca: auto2.material().ca }));
      await stale.hello({ fromId: 2, fromName: 'node2', toId: 1 });
      assert.equal(await stale.answer(), 'refuse', 'an epoch-0 certificate is refused once the grace ended');
      assert.ok(a.log.lines.some((l) => l['code'] === 'certificate_required' && l['claimedId'] === undefined), 'refused for its certificate, not its hello');
      const fresh = await rawClient(a.port, tlsWith(a.port, auto2.material()));
      await fresh.hello({ fromId: 2, fromName: 'node2', toId: 1 });
      assert.equal(await fresh.answer(), 'helloAck', JSON.stringify(a.log.lines.filter((l) => String(l['event']).includes('refused')).slice(-2)));
      fresh.socket.destroy();
      // A restart starts from the epoch it last used (ca-epoch.json), before the log is replayed; replaying an older
      // epoch (a snapshot from before the rotation) does not take it back.
      const again = await autoFor(1, { dir: dir1 });
      assert.equal(again.caEpochs.epoch, 1);
      await again.setCaEpochs({ epoch: 0, graceEpoch: undefined });
      assert.equal(again.caEpochs.epoch, 1);
      assert.equal(again.view().roots.every((r) => r.epoch >= 1), true);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });
});

