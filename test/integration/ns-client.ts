// The client of the VIP and load-balancer tests, run as its own process (in the
// client network namespace, or on the host for the load-balancer tests):
// JSON requests on stdin, one JSON answer per line on stdout.
//   {op:"http", id, url, method, path, body?, token}  → {id, status, body}
//   {op:"write-start", id, url, prefix, token}        → {id} and a writer loop: PUT prefix/N = N, one at a time
//   {op:"write-status", id}                          → {id, lastAckAt, acked}
//   {op:"write-stop", id}                             → {id, acked: [keys], unknown: [keys], failures, gaps: [{fromMs, toMs}]}
// Every destination is checked first: the test subnet (10.231.7.0/24) or loopback only.
import { createInterface } from 'node:readline';

function guard(url: string): void {
  const host = new URL(url).hostname;
  if (!(host.startsWith('10.231.7.') || host === '127.0.0.1')) throw new Error(`refusing to send to ${host}: not in the test subnet or loopback`);
}

async function request(url: string, method: string, path: string, token: string, body?: unknown, timeoutMs = 3000): Promise<{ status: number; body: Record<string, unknown> }> {
  guard(url);
  try {
    const r = await fetch(`${url}${path}`, {
      method, signal: AbortSignal.timeout(timeoutMs),
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.text();
    let parsed: Record<string, unknown> = {};
    try { parsed = JSON.parse(text) as Record<string, unknown>; } catch { parsed = { text }; }
    return { status: r.status, body: parsed };
  } catch (e) {
    return { status: 0, body: { error: (e as Error).message } };
  }
}

let writer: { lastAckAt: number; stop: boolean; done: Promise<void>; acked: string[]; unknown: string[]; failures: number; gaps: { fromMs: number; toMs: number }[] } | undefined;

function startWriter(url: string, prefix: string, token: string): void {
  const w = { lastAckAt: 0, stop: false, done: Promise.resolve(), acked: [] as string[], unknown: [] as string[], failures: 0, gaps: [] as { fromMs: number; toMs: number }[] };
  const t0 = Date.now();
  w.done = (async () => {
    let n = 0;
    let lastAck = Date.now();
    while (!w.stop) {
      const key = `${prefix}/${n}`;
      const r = await request(url, 'PUT', `/v1/kv/${key}`, token, { value: String(n) }, 2000);
      if (r.status === 200) {
        const now = Date.now();
        if (now - lastAck > 1000) w.gaps.push({ fromMs: lastAck - t0, toMs: now - t0 });
        lastAck = now;
        w.lastAckAt = now;
        w.acked.push(key);
        n++;
      } else {
        w.failures++;
        // 504 or a timeout: the write may or may not have applied; never counted as acknowledged.
        if (r.status === 504 || r.status === 0) w.unknown.push(key);
        n++;
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  })();
  writer = w;
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const m = JSON.parse(line) as { op: string; id: number; url: string; method: string; path: string; body?: unknown; token: string; prefix: string };
  const reply = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ id: m.id, ...o })}\n`);
  void (async () => {
    try {
      if (m.op === 'http') reply(await request(m.url, m.method, m.path, m.token, m.body));
      else if (m.op === 'write-start') { guard(m.url); startWriter(m.url, m.prefix, m.token); reply({}); }
      else if (m.op === 'write-status') reply({ lastAckAt: writer?.lastAckAt ?? 0, acked: writer?.acked.length ?? 0 });
      else if (m.op === 'write-stop') {
        const w = writer;
        if (!w) { reply({ error: "no writer" }); return; }
        w.stop = true;
        await w.done;
        reply({ acked: w.acked, unknown: w.unknown, failures: w.failures, gaps: w.gaps });
      } else reply({ error: `unknown op ${m.op}` });
    } catch (e) {
      reply({ error: (e as Error).message });
    }
  })();
});
