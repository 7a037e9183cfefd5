// The state machine of the Raft group that leads an external-shared cluster
// (`database.mode: "external-shared"`, `cluster.coordination: "raft"`,
// ./raft-lead.ts): the fencing-token counter. Its only command is a claim,
// proposed by a new Raft leader once per term:
//
//   {floor, term, by, nodeName, apiUrl}
//
// and applying it takes the next token: `max(last token, floor) + 1`, where
// `floor` is the value of PostgreSQL's fencing row the leader read before
// proposing (a token left there by a Redis-led era, or by a Raft group whose
// data dirs were wiped, is passed). The token is computed when the entry
// applies, not by the proposer, so every claim is accepted and every token
// is strictly greater than the one before it, on every member alike
// (deterministic: the same log gives the same tokens); a proposer's guess
// could be overtaken by an earlier term's claim committed after it was
// computed. The claim records who claimed it in which Raft term: the leader
// uses the token only while it still leads in that term (./raft-lead.ts).
import type { ApplyResult } from '../state/index.js';
import type { SnapshotChunks, StateMachine } from '../node/ports.js';

/** A claim as proposed (the token is computed when it applies). */
export interface ClaimRequest {
  /** The fencing row's token in PostgreSQL when the leader read it (0: no row yet). */
  readonly floor: number;
  /** The Raft term of the leader that proposed it (the term of its entry). */
  readonly term: number;
  /** The proposer's Raft node id. */
  readonly by: number;
  readonly nodeName: string;
  readonly apiUrl: string;
}

/** A claim as applied: the token it took. */
export interface Claim extends ClaimRequest {
  readonly token: number;
  /** The log index it applied at. */
  readonly index: number;
}

const MAGIC = 'quorate-lead-claims';

export function encodeClaim(c: ClaimRequest): Uint8Array {
  return Buffer.from(JSON.stringify({ claim: c }));
}

function safeInt(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}

/** The claim in an entry, or an Error saying what is wrong with it. */
export function decodeClaim(data: Uint8Array): ClaimRequest | Error {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch (e) {
    return new Error(`an entry of the leader group's log is not JSON (${(e as Error).message})`);
  }
  const c = (v as { claim?: Record<string, unknown> } | null)?.claim;
  if (typeof c !== 'object' || c === null) return new Error('an entry of the leader group\'s log is not a token claim');
  if (!safeInt(c['floor'], 0) || !safeInt(c['term'], 1) || !safeInt(c['by'], 1) || typeof c['nodeName'] !== 'string' || typeof c['apiUrl'] !== 'string') {
    return new Error('a token claim in the leader group\'s log lacks floor, term, by, nodeName or apiUrl');
  }
  return { floor: c['floor'], term: c['term'], by: c['by'], nodeName: c['nodeName'], apiUrl: c['apiUrl'] };
}

/** The token a claim takes after `last` (the rule, kept apart for the unit test and the docs). */
export function nextToken(last: number, floor: number): number {
  return Math.max(last, floor) + 1;
}

export class TokenClaims implements StateMachine {
  #applied = 0;
  #last: Claim | undefined;
  readonly #listeners = new Set<(c: Claim) => void>();

  get appliedIndex(): number { return this.#applied; }
  /** The newest claim applied (undefined before the first). */
  get last(): Claim | undefined { return this.#last; }
  /** The highest token claimed so far (0 before the first claim). */
  get token(): number { return this.#last?.token ?? 0; }

  /** Called after each claim applies (in the replica's loop). */
  onClaim(listener: (c: Claim) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  apply(index: number, data: Uint8Array): ApplyResult | undefined {
    this.#applied = index;
    if (data.length === 0) return undefined; // a new leader's no-op
    const req = decodeClaim(data);
    // Only this node's code proposes to this log: an entry it cannot read is a broken invariant.
    if (req instanceof Error) throw new Error(`${req.message} (index ${index}); the leader group's data dir holds entries quorate did not write`);
    const claim: Claim = { ...req, token: nextToken(this.token, req.floor), index };
    this.#last = claim;
    for (const l of this.#listeners) l(claim);
    // The proposer's waiter resolves with a result only (src/node/waiters.ts): the claim with its token.
    return { data: claim };
  }

  markApplied(index: number): void {
    this.#applied = index;
  }

  async *snapshot(): SnapshotChunks {
    await Promise.resolve();
    yield Buffer.from(JSON.stringify({ magic: MAGIC, applied: this.#applied, last: this.#last ?? null }));
  }

  async restore(chunks: SnapshotChunks): Promise<void> {
    const s = await readSnapshot(chunks);
    this.#applied = s.applied;
    this.#last = s.last;
  }

  /** The checks of restore() without keeping anything (the storage's and the transport's snapshot check). */
  async validate(chunks: SnapshotChunks): Promise<void> {
    await readSnapshot(chunks);
  }
}

async function readSnapshot(chunks: SnapshotChunks): Promise<{ applied: number; last: Claim | undefined }> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const c of chunks) {
    bytes += c.length;
    if (bytes > 1024 * 1024) throw new Error('a snapshot of the leader group is larger than 1 MiB: it is not one quorate wrote');
    parts.push(Buffer.from(c));
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`a snapshot of the leader group is not JSON (${(e as Error).message})`);
  }
  if (v['magic'] !== MAGIC || !safeInt(v['applied'], 0)) throw new Error('a snapshot of the leader group lacks its magic or applied index');
  const last = v['last'];
  if (last === null) return { applied: v['applied'], last: undefined };
  const l = last as Record<string, unknown>;
  const req = decodeClaim(Buffer.from(JSON.stringify({ claim: l })));
  if (req instanceof Error || !safeInt(l['token'], 1) || !safeInt(l['index'], 1)) throw new Error('a snapshot of the leader group holds a malformed claim');
  return { applied: v['applied'], last: { ...req, token: l['token'], index: l['index'] } };
}
