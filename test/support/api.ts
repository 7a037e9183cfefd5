// Test helpers for the API: a FakeNode behind a real server, token files in a
// temp data dir, and a small fetch wrapper.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeNode } from './fake-node.js';
import { captureLogger } from './log.js';
import type { LogLine } from './log.js';
import { startApiServer } from '../../src/api/server.js';
import type { ApiServer, ApiServerOptions } from '../../src/api/server.js';

export const TOKENS = { admin: 'admin-secret-token', operator: 'operator-secret-token', reader: 'reader-secret-token' } as const;

export interface Harness {
  readonly node: FakeNode;
  readonly server: ApiServer;
  readonly url: string;
  readonly dir: string;
  /** Every line the server logged (see captureLogger). */
  readonly logs: LogLine[];
  close(): Promise<void>;
}

export function writeTokens(dir: string): void {
  writeFileSync(join(dir, 'admin.token'), `${TOKENS.admin}\n`);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify([
    { token: TOKENS.operator, role: 'operator', name: 'ops' },
    { token: TOKENS.reader, role: 'reader', name: 'viewer' },
  ]));
}

export async function harness(options: { nodeName?: string; nodeId?: number; leader?: boolean; server?: Partial<ApiServerOptions> } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-api-'));
  writeTokens(dir);
  const nodeName = options.nodeName ?? 'node1';
  const node = new FakeNode({ nodeName, nodeId: options.nodeId ?? 1, dataDir: dir, leader: options.leader ?? true });
  const logger = captureLogger();
  const server = await startApiServer({ cluster: node, kv: node.kvService, security: node.security, host: '127.0.0.1', port: 0, dataDir: dir, logger, ...options.server });
  return {
    node,
    server,
    url: `http://127.0.0.1:${server.port}`,
    dir,
    logs: logger.lines,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A leader (node1) and a follower (node2) that forwards to it; close() stops both. */
export async function leaderAndFollower(): Promise<{ leader: Harness; follower: Harness; close(): Promise<void> }> {
  const leader = await harness({ nodeName: 'node1', nodeId: 1, leader: true });
  const follower = await harness({ nodeName: 'node2', nodeId: 2, leader: false });
  follower.node.leaderName = 'node1';
  follower.node.leaderUrl = leader.url;
  return {
    leader,
    follower,
    async close() {
      await follower.close();
      await leader.close();
    },
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

export interface CallOptions {
  readonly token?: keyof typeof TOKENS | string | null;
  readonly body?: unknown;
  readonly raw?: string | Buffer;
  readonly headers?: Record<string, string>;
}

/** One request; `token` defaults to admin, null sends none. JSON bodies get Content-Type application/json. */
export async function call(url: string, method: string, path: string, options: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? 'admin' : options.token;
  if (token !== null) headers['authorization'] = `Bearer ${token in TOKENS ? TOKENS[token as keyof typeof TOKENS] : token}`;
  let body: string | Buffer | undefined;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  } else if (options.raw !== undefined) {
    body = options.raw;
  }
  const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (metrics, SSE)
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}
