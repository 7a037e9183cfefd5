// A `fetch` for https URLs whose server certificate comes from a CA that is
// not in Node's default store: the automatic cluster CA (`quorate ca export`,
// security.apiTls "auto"). Node 20's global fetch takes no CA option, so
// https requests go through node:https with an Agent that trusts `ca` (and
// still checks the host name); http URLs use the global fetch. The answer is a
// standard Response (streamed body), so the client's retries, SSE and error
// handling work unchanged; connection errors keep their `code` (ECONNREFUSED…).
import https from 'node:https';
import { Readable } from 'node:stream';

export type CaBundle = string | Buffer | readonly (string | Buffer)[];

export function fetchTrusting(ca: CaBundle | (() => CaBundle)): typeof fetch {
  let agent: https.Agent | undefined;
  let agentCa: CaBundle | undefined;
  const agentFor = (): https.Agent => {
    const now = typeof ca === 'function' ? ca() : ca;
    if (agent === undefined || now !== agentCa) {
      agent?.destroy();
      agent = new https.Agent({ keepAlive: true, ca: now as string | Buffer | (string | Buffer)[], minVersion: 'TLSv1.2' });
      agentCa = now;
    }
    return agent;
  };
  const f = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== 'https:') return globalThis.fetch(input, init);
    return new Promise<Response>((resolve, reject) => {
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((v, k) => { headers[k] = v; });
      const signal = init.signal ?? undefined;
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const req = https.request(url, { method: init.method ?? 'GET', headers, agent: agentFor() });
      const onAbort = (): void => {
        req.destroy(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => {
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      });
      req.on('response', (res) => {
        const h = new Headers();
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        const status = res.statusCode ?? 0;
        const empty = status === 204 || status === 304 || init.method === 'HEAD';
        res.on('close', () => signal?.removeEventListener('abort', onAbort));
        if (empty) res.resume();
        resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? '', headers: h }));
      });
      const body = init.body;
      if (body === undefined || body === null) req.end();
      else if (typeof body === 'string' || body instanceof Uint8Array) req.end(body);
      else {
        req.destroy();
        reject(new TypeError('fetchTrusting sends string or Uint8Array bodies only'));
      }
    });
  };
  return f as typeof fetch;
}
