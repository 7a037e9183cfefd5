// What the simulator knows of one node's log: the term and a chain hash of
// every entry the node layer wrote (chain(i) = mix(chain(i-1), entry i)), so
// "equal chain hash at (index, term)" means "identical logs up to index".
// That turns the log-matching oracle into one map lookup per written entry.
import type { Entry } from '../../src/raft/types.js';
import { entryHash, mix } from './hash.js';

export class LogView {
  baseIndex = 0;
  baseTerm = 0;
  baseHash = 0;
  terms: number[] = [];
  hashes: number[] = [];

  get lastIndex(): number {
    return this.baseIndex + this.terms.length;
  }

  termAt(i: number): number | undefined {
    if (i === this.baseIndex) return this.baseTerm;
    if (i < this.baseIndex || i > this.lastIndex) return undefined;
    return this.terms[i - this.baseIndex - 1];
  }

  hashAt(i: number): number | undefined {
    if (i === this.baseIndex) return this.baseHash;
    if (i < this.baseIndex || i > this.lastIndex) return undefined;
    return this.hashes[i - this.baseIndex - 1];
  }

  reset(index: number, term: number, hash: number): void {
    this.baseIndex = index;
    this.baseTerm = term;
    this.baseHash = hash;
    this.terms = [];
    this.hashes = [];
  }

  /** Appends (overwriting a suffix from e.index); returns the entry's chain hash, or undefined if it would leave a gap. */
  append(e: Entry): number | undefined {
    if (e.index <= this.baseIndex) return this.hashAt(e.index);
    if (e.index > this.lastIndex + 1) return undefined;
    const keep = e.index - this.baseIndex - 1;
    this.terms.length = keep;
    this.hashes.length = keep;
    const prev = keep === 0 ? this.baseHash : this.hashes[keep - 1]!;
    const h = mix(prev, entryHash(e));
    this.terms.push(e.term);
    this.hashes.push(h);
    return h;
  }

  /** Forgets entries before `index` (they are in a snapshot). */
  compact(index: number): void {
    if (index <= this.baseIndex || index > this.lastIndex) return;
    const k = index - this.baseIndex;
    this.baseTerm = this.terms[k - 1]!;
    this.baseHash = this.hashes[k - 1]!;
    this.terms = this.terms.slice(k);
    this.hashes = this.hashes.slice(k);
    this.baseIndex = index;
  }
}
