import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { decodeRefusal, encodeFrame, encodeHelloOpen, FrameDecoder } from './codec.js';
import type { Frame } from './codec.js';
import { TransportConfigError } from './errors.js';
import { MIN_COMPATIBLE_VERSION, newNonce, PROTOCOL_VERSION } from './handshake.js';
import { PeerTransport } from './peer-transport.js';
import type { TlsFiles } from './security.js';
import { connectedPair, msg, rawClient, startNode, TEST_SECRET, until } from '../../test/support/transport.js';
import { captureLogger } from '../../test/support/log.js';

let dir = '';
const files = (name: string): TlsFiles => ({ certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`), caFile: join(dir, 'ca.crt') });

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function issue(name: string, san = 'IP:127.0.0.1,DNS:localhost'): void {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'quorate-tls-'));
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1',
    '-subj', '/CN=quorate-test-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  issue('node1');
  issue('node2');
  // A member's certificate for another host: it holds the secret and a valid certificate, but not for node 1's address.
  issue('node3', 'IP:127.0.0.3,DNS:node3.test');
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Connect with raw TLS, send a hello, and report what came back before the socket closed. */
async function probe(port: number, opts: { cert?: boolean; maxVersion?: 'TLSv1.2' }): Promise<{ frames: Frame[]; protocol: string | null; error: string | undefined }> {
  const f = files('node1');
  const socket: TLSSocket = connect({
    host: '127.0.0.1', port, ca: readFileSync(f.caFile),
    ...(opts.cert ? { cert: readFileSync(f.certFile), key: readFileSync(f.keyFile) } : {}),
    ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
  });
  const frames: Frame[] = [];
  const dec = new FrameDecoder();
  let protocol: string | null = null;
  let error: string | undefined;
  let closed = false;
  socket.on('secureConnect', () => {
    protocol = socket.getProtocol();
    socket.write(encodeFrame('hello', encodeHelloOpen({ protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION, nonce: newNonce() })));
  });
  socket.on('data', (d: Buffer) => {
    frames.push(...dec.push(d));
    if (frames.length > 0) socket.end();
  });
  socket.on('error', (e) => {
    error ??= e.message;
  });
  socket.on('close', () => {
    closed = true;
  });
  await until(() => closed, 'the probe connection to end', 5000);
  return { frames, protocol, error };
}

describe('PeerTransport over TLS', () => {
  it('round-trips messages over mutually authenticated TLS 1.3', async () => {
    const [a, b] = await connectedPair({ tls: files('node1') }, { tls: files('node2') });
    try {
      a.t.send([msg({ from: 1, to: 2, type: 'app', entries: [{ term: 1, index: 1, type: 'normal', data: new Uint8Array([42]) }] })]);
      b.t.send([msg({ from: 2, to: 1, type: 'appResp', index: 1 })]);
      await until(() => b.received.length === 1 && a.received.length === 1, 'messages both ways');
      assert.deepStrictEqual(b.received[0]!.entries[0]!.data, new Uint8Array([42]));
      const ok = await probe(b.port, { cert: true });
      assert.equal(ok.protocol, 'TLSv1.3');
      assert.equal(ok.frames[0]?.type, 'challenge');
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it("binds the client certificate to the claimed node id: a member cannot claim another member's id", async () => {
    const b = await startNode(2, { tls: files('node2') });
    const hellos: number[] = [];
    const b2 = await startNode(2, { tls: files('node2'), expectedPeerHost: (id) => (id === 3 ? '127.0.0.3' : undefined), onPeerHello: (id) => hellos.push(id) });
    const tlsTo = (port: number, name: string) => () => {
      const f = files(name);
      return connect({ host: '127.0.0.1', port, ca: readFileSync(f.caFile), cert: readFileSync(f.certFile), key: readFileSync(f.keyFile) });
    };
    try {
      // Node 1's address is 127.0.0.1 (from setPeers); node 3's certificate names 127.0.0.3 only.
      b.t.setPeers(new Map([[1, { host: '127.0.0.1', port: 1 }]]));
      const impostor = await rawClient(b.port, tlsTo(b.port, 'node3'));
      await impostor.hello({ fromId: 1, fromName: 'node1' }, { secret: TEST_SECRET });
      assert.equal(await impostor.answer(), 'refuse');
      const f = impostor.frames.find((x) => x.type === 'refuse')!;
      assert.deepStrictEqual(decodeRefusal(f.payload, f.offset), { code: 'refused', reason: 'refused' });
      const line = b.log.lines.find((l) => l['event'] === 'peer_refused_inbound')!;
      assert.equal(line['code'], 'certificate_mismatch');
      assert.match(String(line['reason']), /the client certificate \(subjectAltName IP Address:127\.0\.0\.3, DNS:node3\.test\) does not name 127\.0\.0\.1, the host of node id 1: a member may not claim another member's id/);

      // The genuine node 1 certificate is accepted as node 1.
      const genuine = await rawClient(b.port, tlsTo(b.port, 'node1'));
      await genuine.hello({ fromId: 1, fromName: 'node1' });
      assert.equal(await genuine.answer(), 'helloAck');
      genuine.socket.destroy();

      // expectedPeerHost overrides; an id without an expected host is refused.
      const asThree = await rawClient(b2.port, tlsTo(b2.port, 'node3'));
      await asThree.hello({ fromId: 3, fromName: 'node3' });
      assert.equal(await asThree.answer(), 'helloAck');
      asThree.socket.destroy();
      const unknown = await rawClient(b2.port, tlsTo(b2.port, 'node1'));
      await unknown.hello({ fromId: 1, fromName: 'node1' });
      assert.equal(await unknown.answer(), 'refuse');
      assert.match(String(b2.log.lines.find((l) => l['event'] === 'peer_refused_inbound')!['reason']), /node id 1 has no known peer host to check its certificate against/);
      assert.deepStrictEqual(hellos, [3]);
    } finally {
      await Promise.all([b.t.close(), b2.t.close()]);
    }
  });

  it('refuses a client without a certificate and a client limited to TLS 1.2', async () => {
    const b = await startNode(2, { tls: files('node2') });
    try {
      const noCert = await probe(b.port, { cert: false });
      assert.deepStrictEqual(noCert.frames, [], 'no handshake answer without a client certificate');
      assert.ok(noCert.error !== undefined, 'the client sees a TLS alert');
      await until(() => b.log.lines.some((l) => l['event'] === 'peer_tls_rejected'), 'the server to log the rejected client');

      const old = await probe(b.port, { cert: true, maxVersion: 'TLSv1.2' });
      assert.deepStrictEqual(old.frames, []);
      assert.match(old.error ?? '', /version|protocol/i);
    } finally {
      await b.t.close();
    }
  });

  it('refuses to start with unreadable TLS files, naming the file', () => {
    assert.throws(
      () => new PeerTransport({
        nodeId: 1, nodeName: 'n', haId: 'h', listenHost: '127.0.0.1', listenPort: 0, logger: captureLogger(), clusterSecret: TEST_SECRET,
        tls: { ...files('node1'), keyFile: join(dir, 'missing.key') },
        onMessages: () => undefined, onPeerDisconnected: () => undefined, onSnapshot: () => undefined,
      }),
      (err: unknown) => err instanceof TransportConfigError && /security\.tls\.keyFile .*missing\.key/.test(err.message),
    );
  });

  it('enforces loopback-only peers when TLS is off', async () => {
    const a = await startNode(1);
    try {
      assert.throws(() => a.t.setPeers(new Map([[2, { host: '10.0.1.12', port: 5201 }]])), /plain TCP is accepted only when every peer is on loopback/);
    } finally {
      await a.t.close();
    }
  });
});
