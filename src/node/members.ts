// Bootstrap identity: which node ids the initial cluster has. Every node of a
// new cluster computes the same ids from the same set of peer URLs (its own
// advertisePeerUrl plus peerEndpoints), sorted, numbered from 1. The result is
// written to <dataDir>/bootstrap.json on first start and read from there
// afterwards, so later config edits never renumber a running cluster.
import { existsSync, readFileSync } from 'node:fs';
import { atomicWriteFile } from '../storage/fsutil.js';
import { join } from 'node:path';
import type { QuorateConfig } from '../config/index.js';
import type { Membership } from '../raft/index.js';

export interface BootstrapMember {
  readonly id: number;
  readonly peerUrl: string;
}

export interface Bootstrap {
  readonly haId: string;
  /** The cluster's initial (index-0) members: the same on every member, enrolled ones included. */
  readonly members: readonly BootstrapMember[];
  /** An enrolled node (src/node/enroll.ts): its id, allocated by the leader. */
  readonly self?: BootstrapMember;
  /** An enrolled node: the members' addresses when it joined (until its log has the membership). */
  readonly peers?: readonly BootstrapMember[];
  /** An enrolled node: the id of the join token it was enrolled with (a restart with the same token starts normally). */
  readonly enrolledWithToken?: string;
  /** The cluster generation (./generation.ts): absent = 0; bumped by DR promotion and forced recovery, taken over at enrollment. */
  readonly generation?: number;
  /** Set on the node that a DR promotion or forced recovery made the cluster's only voter (./generation.ts). */
  readonly promoted?: PromotionRecord;
}

/** How this node became the only voter of a new generation. */
export interface PromotionRecord {
  readonly kind: 'promote-dr' | 'force-new-cluster';
  readonly at: string;
  readonly generation: number;
  /** The index of the conf entry that made it the only voter. */
  readonly index: number;
}

export function normalizePeerUrl(u: string): string {
  const url = new URL(u.includes('://') ? u : `tcp://${u}`);
  return `${url.hostname.toLowerCase()}:${url.port}`;
}

export function computeBootstrap(config: QuorateConfig): Bootstrap {
  const urls = [config.node.advertisePeerUrl, ...config.cluster.peerEndpoints].map(normalizePeerUrl);
  const unique = [...new Set(urls)].sort();
  return { haId: config.cluster.haId, members: unique.map((peerUrl, i) => ({ id: i + 1, peerUrl })) };
}

export function bootstrapMembership(b: Bootstrap): Membership {
  return { members: b.members.map((m) => ({ id: m.id, role: 'voter' as const })), removed: [] };
}

/** Reads <dataDir>/bootstrap.json or creates it from the config (fsynced). */
export async function loadOrCreateBootstrap(dataDir: string, config: QuorateConfig): Promise<Bootstrap> {
  const path = join(dataDir, 'bootstrap.json');
  if (existsSync(path)) {
    const b = parseBootstrap(readFileSync(path, 'utf8'), path);
    if (b.haId !== config.cluster.haId) {
      throw new Error(
        `${path} belongs to cluster "${b.haId}" but cluster.haId is "${config.cluster.haId}": point node.dataDir at this cluster's data or fix cluster.haId`,
      );
    }
    return b;
  }
  const b = computeBootstrap(config);
  await atomicWriteFile(path, [Buffer.from(JSON.stringify(b, null, 2))]);
  return b;
}

/** Validates bootstrap.json; a damaged file is named with what is wrong and what to do. */
export function parseBootstrap(text: string, path: string): Bootstrap {
  const bad = (what: string): Error =>
    new Error(
      `${path} is damaged: ${what}. It records the cluster's initial node ids and is written once, on the first start. ` +
        'Restore it from a backup of this data dir, or copy it from another member of the same cluster (every member has the same file); do not start this node with a hand-made one',
    );
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(`not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('the top level is not an object');
  const o = v as Record<string, unknown>;
  if (typeof o['haId'] !== 'string' || o['haId'] === '') throw bad('"haId" is not a non-empty string');
  const members = o['members'];
  if (!Array.isArray(members) || members.length === 0) throw bad('"members" is not a non-empty array');
  const out: BootstrapMember[] = members.map((m: unknown, i) => {
    const r = m as Record<string, unknown> | null;
    if (typeof r !== 'object' || r === null) throw bad(`members[${i}] is not an object`);
    const id = r['id'];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) throw bad(`members[${i}].id is not a positive integer`);
    if (typeof r['peerUrl'] !== 'string' || !/^[^\s]+:\d{1,5}$/.test(r['peerUrl'])) throw bad(`members[${i}].peerUrl is not host:port`);
    return { id, peerUrl: r['peerUrl'] };
  });
  if (new Set(out.map((m) => m.id)).size !== out.length) throw bad('"members" repeats an id');
  const one = (r: unknown, where: string): BootstrapMember => {
    const x = r as Record<string, unknown> | null;
    if (typeof x !== 'object' || x === null) throw bad(`${where} is not an object`);
    if (typeof x['id'] !== 'number' || !Number.isSafeInteger(x['id']) || x['id'] <= 0) throw bad(`${where}.id is not a positive integer`);
    if (typeof x['peerUrl'] !== 'string' || !/^[^\s]+:\d{1,5}$/.test(x['peerUrl'])) throw bad(`${where}.peerUrl is not host:port`);
    return { id: x['id'], peerUrl: x['peerUrl'] };
  };
  const b: { -readonly [K in keyof Bootstrap]: Bootstrap[K] } = { haId: o['haId'], members: out };
  if (o['self'] !== undefined) b.self = one(o['self'], 'self');
  if (o['peers'] !== undefined) {
    if (!Array.isArray(o['peers'])) throw bad('"peers" is not an array');
    b.peers = o['peers'].map((p: unknown, i) => one(p, `peers[${i}]`));
  }
  if (o['enrolledWithToken'] !== undefined) {
    if (typeof o['enrolledWithToken'] !== 'string') throw bad('"enrolledWithToken" is not a string');
    b.enrolledWithToken = o['enrolledWithToken'];
  }
  if (o['generation'] !== undefined) {
    if (typeof o['generation'] !== 'number' || !Number.isSafeInteger(o['generation']) || o['generation'] < 0) throw bad('"generation" is not a non-negative integer');
    b.generation = o['generation'];
  }
  if (o['promoted'] !== undefined) {
    const p = o['promoted'] as Record<string, unknown> | null;
    if (typeof p !== 'object' || p === null || (p['kind'] !== 'promote-dr' && p['kind'] !== 'force-new-cluster') || typeof p['at'] !== 'string'
      || typeof p['generation'] !== 'number' || typeof p['index'] !== 'number') throw bad('"promoted" is not {kind, at, generation, index}');
    b.promoted = { kind: p['kind'], at: p['at'], generation: p['generation'], index: p['index'] };
  }
  return b;
}

export function selfId(b: Bootstrap, config: QuorateConfig): number {
  const me = normalizePeerUrl(config.node.advertisePeerUrl);
  if (b.self !== undefined) {
    if (b.self.peerUrl !== me) throw new Error(`this node was enrolled with peer address ${b.self.peerUrl}, but node.advertisePeerUrl is now ${config.node.advertisePeerUrl}: restore the address it was enrolled with`);
    return b.self.id;
  }
  const m = b.members.find((x) => x.peerUrl === me);
  if (!m) {
    throw new Error(
      `this node's node.advertisePeerUrl (${config.node.advertisePeerUrl}) is not among the cluster's bootstrap members (${b.members.map((x) => x.peerUrl).join(', ')})`,
    );
  }
  return m.id;
}

/** Every id → peer address a node knows at start: the bootstrap members, and for an enrolled node its peers at enrollment and itself. */
export function bootstrapAddresses(b: Bootstrap): Map<number, string> {
  const m = new Map(b.members.map((x) => [x.id, x.peerUrl]));
  for (const p of b.peers ?? []) m.set(p.id, p.peerUrl);
  if (b.self) m.set(b.self.id, b.self.peerUrl);
  return m;
}

/** Writes <dataDir>/bootstrap.json (fsynced, atomically): for a node enrolled into a running cluster. */
export async function writeBootstrap(dataDir: string, b: Bootstrap): Promise<void> {
  await atomicWriteFile(join(dataDir, 'bootstrap.json'), [Buffer.from(JSON.stringify(b, null, 2))]);
}
