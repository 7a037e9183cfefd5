// What every verb provides, the context it runs with, and shared output helpers.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { QuorateClient } from '../api/client.js';
import { fetchTrusting } from '../api/ca-fetch.js';
import type * as ConfigModule from '../config/index.js';
import { GLOBAL_FLAGS, duration, str, bool, type FlagSpec, type ParsedArgs } from './args.js';

// The config module (zod and the schema) is loaded only when ./quorate.json
// exists, the one case token() reads a config; most calls never need it.
let configModule: typeof ConfigModule | undefined;

/** Run before a verb: loads what token() needs to read ./quorate.json, if there is one. */
export async function loadForToken(cwd: string): Promise<void> {
  if (configModule === undefined && existsSync(join(cwd, 'quorate.json'))) configModule = await import('../config/index.js');
}

/** SPEC §5 exit codes. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unhealthy: 3 } as const;

/**
 * What a verb's module provides. Its one-line summary is in main.ts's table
 * (COMMANDS), which the top help shows without loading any verb's module.
 */
export interface Verb {
  /** "status", "kv put" */
  readonly name: string;
  /** Arguments after the verb, e.g. "KEY VALUE [--if-revision N]". */
  readonly usage: string;
  readonly description?: string;
  readonly flags: readonly FlagSpec[];
  readonly examples: readonly string[];
  /** Whether the verb talks to a node (shows the connection flags in help). */
  readonly remote: boolean;
  run(ctx: Context): Promise<number>;
}

/** A verb with its summary: what help shows and what runs. */
export interface Command extends Verb {
  readonly summary: string;
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export class Context {
  readonly args: ParsedArgs;
  readonly io: Io;
  readonly command: Command;
  #client: QuorateClient | undefined;

  constructor(command: Command, args: ParsedArgs, io: Io) {
    this.command = command;
    this.args = args;
    this.io = io;
  }

  get json(): boolean { return bool(this.args, 'json'); }

  urls(): string[] {
    const raw = str(this.args, 'url') ?? this.io.env['QUORATE_URL'] ?? 'http://127.0.0.1:7101';
    return raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => (/^https?:\/\//i.test(s) ? s : `http://${s}`));
  }

  /** --token, --token-file, $QUORATE_TOKEN, --data-dir/admin.token, ./quorate.json's token file, ./data/admin.token, ./.quorate-demo/node1/admin.token. */
  token(): string | undefined {
    const flag = str(this.args, 'token');
    if (flag !== undefined) return flag;
    const file = str(this.args, 'token-file');
    if (file !== undefined) return readToken(resolve(this.io.cwd, file), true);
    const env = this.io.env['QUORATE_TOKEN'];
    if (env !== undefined && env !== '') return env;
    const dataDir = str(this.args, 'data-dir');
    if (dataDir !== undefined) return readToken(join(resolve(this.io.cwd, dataDir), 'admin.token'), true);
    const cfgPath = join(this.io.cwd, 'quorate.json');
    if (configModule !== undefined && existsSync(cfgPath)) {
      try {
        const t = readToken(configModule.loadConfig(cfgPath, {}).security.adminTokenFile, false);
        if (t !== undefined) return t;
      } catch { /* an invalid config is not this verb's business */ }
    }
    return readToken(join(this.io.cwd, 'data', 'admin.token'), false) ?? readToken(join(this.io.cwd, '.quorate-demo', 'node1', 'admin.token'), false);
  }

  client(): QuorateClient {
    if (this.#client) return this.#client;
    const token = this.token();
    const timeoutMs = duration(this.args, 'timeout');
    const ca = this.#ca();
    this.#client = new QuorateClient({
      urls: this.urls(),
      ...(token !== undefined ? { token } : {}),
      ...(ca !== undefined ? { ca } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
    return this.#client;
  }

  /** The CA certificates of --ca / QUORATE_CA (undefined: Node's default store). */
  #ca(): Buffer | undefined {
    const caFile = str(this.args, 'ca') ?? this.io.env['QUORATE_CA'];
    if (caFile === undefined || caFile === '') return undefined;
    try {
      return readFileSync(resolve(this.io.cwd, caFile));
    } catch (err) {
      throw new Error(`cannot read the CA file ${caFile} (--ca / QUORATE_CA): ${(err as Error).message}; write it with \`quorate ca export > ca.pem\``, { cause: err });
    }
  }

  /** A fetch that trusts --ca / QUORATE_CA for https URLs (for verbs that stream a download themselves). */
  fetch(): typeof fetch {
    const ca = this.#ca();
    return ca === undefined ? globalThis.fetch : fetchTrusting(ca);
  }

  /** Prints raw JSON with --json, else the human rendering. */
  print(value: unknown, human: () => string): void {
    this.io.out(this.json ? JSON.stringify(value, null, 2) : human());
  }
}

function readToken(path: string, required: boolean): string | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch (err) {
    if (required) throw new Error(`cannot read token file ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    return undefined;
  }
}

export function allFlags(cmd: Command): FlagSpec[] {
  return [...cmd.flags, ...GLOBAL_FLAGS];
}

/** Aligned columns; header row first. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** Two-column "key  value" list. */
export function keyValues(pairs: ReadonlyArray<readonly [string, string]>): string {
  const w = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n');
}

export function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A table of objects: preferred columns first, then any other scalar keys seen. */
export function objectTable(rows: ReadonlyArray<Record<string, unknown>>, preferred: readonly string[]): string {
  const cols = [...preferred.filter((c) => rows.some((r) => c in r))];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k) && (typeof r[k] !== 'object' || r[k] === null)) cols.push(k);
  return table(cols.map(headerName), rows.map((r) => cols.map((c) => cell(r[c]))));
}

function headerName(key: string): string {
  return key.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
}
