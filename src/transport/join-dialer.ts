// The joiner's side of the join exchange (join.ts): dial the leader's peer
// port, prove the join token, verify the leader's proof, open the sealed
// cluster secret. One short-lived connection.
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { decodeChallenge, decodeJoinAck, decodeRefusal, encodeFrame, encodeHelloOpen, encodeJoinAuth, FrameDecoder } from './codec.js';
import { MIN_COMPATIBLE_VERSION, newNonce, PROTOCOL_VERSION } from './handshake.js';
import { deriveJoinKeys, joinerMac, joinTokenId, leaderMac, macMatches, openSecret, type JoinAnswer, type JoinClaims } from './join.js';
import { clientTlsOptions, loadTlsMaterial, type TlsSetting } from './security.js';

export interface JoinRequest {
  readonly host: string;
  readonly port: number;
  /** 'join-anonymous': TLS 1.3 without a client certificate and without checking the leader's (the join token authenticates both sides; security.tls "auto" before this node has a certificate). */
  readonly tls: TlsSetting | 'join-anonymous';
  readonly token: string;
  readonly claims: Omit<JoinClaims, 'tokenId'>;
  readonly timeoutMs?: number;
}

export interface JoinResult {
  readonly answer: JoinAnswer;
  readonly clusterSecret: Uint8Array;
}

export function dialJoin(r: JoinRequest): Promise<JoinResult> {
  const where = `${r.host}:${r.port}`;
  const socket = r.tls === 'off'
    ? netConnect({ host: r.host, port: r.port })
    : r.tls === 'join-anonymous'
      ? tlsConnect({ host: r.host, port: r.port, minVersion: 'TLSv1.3', rejectUnauthorized: false })
      : tlsConnect({ host: r.host, port: r.port, ...clientTlsOptions(loadTlsMaterial(r.tls), r.host) });
  const nonce = newNonce();
  const claims: JoinClaims = { ...r.claims, tokenId: joinTokenId(r.token) };
  const decoder = new FrameDecoder();
  return new Promise<JoinResult>((resolve, reject) => {
    let done = false;
    let proof: Uint8Array | undefined;
    let leaderNonce: Uint8Array | undefined;
    const finish = (err: Error | undefined, v?: JoinResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(() => finish(new Error(`the leader at ${where} did not answer the join request within ${r.timeoutMs ?? 20_000} ms`)), r.timeoutMs ?? 20_000);
    socket.once('error', (e) => finish(new Error(`cannot reach the leader's peer address ${where}: ${e.message}`)));
    socket.once('close', () => finish(new Error(`the leader at ${where} closed the connection before answering the join request`)));
    socket.on(r.tls === 'off' ? 'connect' : 'secureConnect', () => {
      socket.write(encodeFrame('hello', encodeHelloOpen({ protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION, nonce })));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of decoder.push(chunk)) {
          if (f.type === 'refuse') {
            const why = decodeRefusal(f.payload, f.offset);
            return finish(new Error(why.code === 'refused'
              ? `the leader at ${where} refused the join: the join token is wrong, unknown or expired (a token is kept in the leader's memory only and used once: create a new one with \`quorate join-token create\`), or no enrollment for this node is pending (run \`quorate enroll\`)`
              : `the leader at ${where} refused the join: ${why.reason}`));
          }
          if (f.type === 'challenge' && leaderNonce === undefined) {
            leaderNonce = decodeChallenge(f.payload, f.offset).nonce;
            const keys = deriveJoinKeys(r.token, nonce, leaderNonce);
            proof = joinerMac(keys, nonce, leaderNonce, claims);
            socket.write(encodeFrame('joinAuth', encodeJoinAuth({ ...claims, mac: proof })));
            continue;
          }
          if (f.type === 'joinAck' && leaderNonce !== undefined && proof !== undefined) {
            const ack = decodeJoinAck(f.payload, f.offset);
            const answer: JoinAnswer = { haId: ack.haId, nodeId: ack.nodeId, leaderId: ack.leaderId, bootstrap: ack.bootstrap, peers: ack.peers, ...(ack.generation !== undefined ? { generation: ack.generation } : {}),
              ...(ack.caEpoch !== undefined ? { caEpoch: ack.caEpoch } : {}) };
            const keys = deriveJoinKeys(r.token, nonce, leaderNonce);
            if (!macMatches(leaderMac(keys, nonce, leaderNonce, proof, answer, ack.iv, ack.sealed), ack.mac)) {
              return finish(new Error(`the process at ${where} did not prove knowledge of the join token: it is not the leader that issued it`));
            }
            return finish(undefined, { answer, clusterSecret: openSecret(keys, ack.iv, ack.sealed, answer) });
          }
          return finish(new Error(`unexpected ${f.type} frame from ${where} during the join exchange`));
        }
      } catch (e) {
        finish(e as Error);
      }
    });
  });
}
