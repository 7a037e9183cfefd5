// The GET requests a node makes to other members' APIs for its own probes:
// the round trips of the network view (./netdisk.ts, every node, every 5 s),
// the leader's poll of the members' application checks (./app-services.ts,
// every second), a DR member's reachability (./dr-wiring.ts) and the approval
// probes (./approval.ts). Through node:http and node:https rather than fetch:
// Node 20 loads fetch's implementation (undici) at its first use, which took
// 5 to 7 MB more of every node's resident memory and 40 to 140 ms of CPU one
// second after start (the network view's first sample), in the middle of a
// restarted node's catch-up; and each fetch cost the leader more CPU than
// this does. Connections are kept alive, as fetch's are, and an idle one is
// closed after 4 s (fetch's default too; the API server keeps them 10 s).
// Requests for operators (forwarding, the diagnostic bundle, the dashboard)
// still use fetch.
import http from 'node:http';
import https from 'node:https';

type CaList = readonly (string | Buffer)[];

/** Idle connections close after this (below the API server's keepAliveTimeout, so it never closes one as it is reused). */
const IDLE_MS = 4000;
/** Answers are small JSON documents; anything larger is refused. */
const MAX_BODY_BYTES = 1024 * 1024;

let trust: (() => CaList) | undefined;

/**
 * security.apiTls "auto": https requests trust these CA certificates (Node's
 * store plus the cluster CA's roots; ./tls-auto.ts). Otherwise they trust
 * Node's store (and NODE_EXTRA_CA_CERTS), as fetch does.
 */
export function trustForPeerGets(ca: () => CaList): void {
  trust = ca;
}

const httpAgent = new http.Agent({ keepAlive: true, timeout: IDLE_MS, maxSockets: 4 });
let httpsAgent: https.Agent | undefined;
let httpsAgentCa: CaList | undefined;

function httpsAgentNow(): https.Agent {
  const ca = trust?.();
  if (httpsAgent === undefined || ca !== httpsAgentCa) {
    httpsAgent?.destroy();
    httpsAgent = new https.Agent({ keepAlive: true, timeout: IDLE_MS, maxSockets: 4, minVersion: 'TLSv1.2', ...(ca !== undefined ? { ca: [...ca] } : {}) });
    httpsAgentCa = ca;
  }
  return httpsAgent;
}

export interface PeerAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * GET `url` (http or https). Resolves with the answer's status and body
 * (UTF-8) whatever the status; rejects when there is no complete answer: a
 * connection error (its `code`: ECONNREFUSED…), a body over 1 MiB, or none
 * within `timeoutMs` (an error named TimeoutError, as AbortSignal.timeout's).
 */
export function peerGet(url: string, timeoutMs: number, headers: Readonly<Record<string, string>> = {}): Promise<PeerAnswer> {
  return new Promise<PeerAnswer>((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch (e) {
      reject(e as Error);
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new TypeError(`${url}: not an http or https URL`));
      return;
    }
    const secure = u.protocol === 'https:';
    let done = false;
    const fail = (e: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    const req = (secure ? https : http).request(u, { method: 'GET', headers: { ...headers }, agent: secure ? httpsAgentNow() : httpAgent });
    const timer = setTimeout(() => fail(Object.assign(new Error(`no answer from ${u.origin} within ${timeoutMs} ms`), { name: 'TimeoutError' })), timeoutMs);
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_BODY_BYTES) fail(new Error(`the answer of ${u.origin}${u.pathname} is over ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('error', fail);
      res.on('aborted', () => fail(new Error(`${u.origin} closed the connection before its answer was complete`)));
      res.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.end();
  });
}
