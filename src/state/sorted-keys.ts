// A sorted set of strings for range reads: a list of sorted chunks (each at
// most CHUNK_MAX long). Insert and delete cost a binary search plus a splice
// inside one chunk, so 100k+ keys stay cheap, and a range read is a binary
// search then a walk. Order is JavaScript string order (UTF-16 code units):
// deterministic on every node, and all keys with a given prefix are contiguous.

const CHUNK_MAX = 512;

function lowerBound(a: readonly string[], key: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SortedKeys {
  #chunks: string[][] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Index of the first chunk whose last key is >= key (may be chunks.length). */
  #chunkFor(key: string): number {
    let lo = 0;
    let hi = this.#chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.#chunks[mid]!;
      if (c[c.length - 1]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Adds key; returns false if it was present. */
  add(key: string): boolean {
    if (this.#chunks.length === 0) {
      this.#chunks.push([key]);
      this.#size = 1;
      return true;
    }
    let ci = this.#chunkFor(key);
    if (ci === this.#chunks.length) ci--; // larger than every key: append to the last chunk
    const chunk = this.#chunks[ci]!;
    const i = lowerBound(chunk, key);
    if (chunk[i] === key) return false;
    chunk.splice(i, 0, key);
    this.#size++;
    if (chunk.length > CHUNK_MAX) {
      this.#chunks.splice(ci + 1, 0, chunk.splice(chunk.length >>> 1));
    }
    return true;
  }

  /** Removes key; returns false if it was absent. */
  delete(key: string): boolean {
    const ci = this.#chunkFor(key);
    const chunk = this.#chunks[ci];
    if (chunk === undefined) return false;
    const i = lowerBound(chunk, key);
    if (chunk[i] !== key) return false;
    chunk.splice(i, 1);
    this.#size--;
    if (chunk.length === 0) this.#chunks.splice(ci, 1);
    return true;
  }

  /** Keys >= start in order. */
  *from(start: string): Generator<string, void, undefined> {
    let ci = this.#chunkFor(start);
    if (ci >= this.#chunks.length) return;
    let i = lowerBound(this.#chunks[ci]!, start);
    for (; ci < this.#chunks.length; ci++, i = 0) {
      const chunk = this.#chunks[ci]!;
      for (; i < chunk.length; i++) yield chunk[i]!;
    }
  }

  /** Every key in order, as a new array (a snapshot's key list: a copy per chunk, no generator step per key). */
  toArray(): string[] {
    const out = new Array<string>(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) for (let i = 0; i < chunk.length; i++) out[at++] = chunk[i]!;
    return out;
  }

  /** Builds from keys already sorted ascending and distinct (restore path). */
  static fromSorted(keys: readonly string[]): SortedKeys {
    const s = new SortedKeys();
    const half = CHUNK_MAX >>> 1;
    for (let i = 0; i < keys.length; i += half) s.#chunks.push(keys.slice(i, i + half));
    s.#size = keys.length;
    return s;
  }
}
