// The leader's view of one follower's replication (etcd's Progress): probe
// (one append in flight until we learn where the logs match), replicate
// (optimistic pipelining bounded by count and bytes), snapshot (paused until
// the snapshot is installed or fails).

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** Probe: an append is in flight; cleared by a heartbeat response or reply. */
  probeSent = false;
  pendingSnapshot = 0;
  recentActive = false;
  ticksSinceContact = 0;
  /** Non-zero while the follower is diverged: the match index it had acknowledged before its log went backwards. */
  divergedFrom = 0;
  /** Highest ReadIndex heartbeat round this peer acknowledged. */
  readAckRound = 0;
  /** In-flight appends: last index and data bytes of each, oldest first. */
  #inflight: Array<{ index: number; bytes: number }> = [];
  #inflightBytes = 0;
  readonly #maxMsgs: number;
  readonly #maxBytes: number;

  constructor(next: number, maxMsgs: number, maxBytes: number) {
    this.next = next;
    this.#maxMsgs = maxMsgs;
    this.#maxBytes = maxBytes;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.#reset('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#reset('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.#reset('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.#reset('snapshot');
    this.pendingSnapshot = index;
  }

  #reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.#inflight = [];
    this.#inflightBytes = 0;
  }

  /** A successful append response for `index`; returns true if it moved match forward. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    this.#freeTo(index);
    if (this.divergedFrom !== 0 && this.match >= this.divergedFrom) this.divergedFrom = 0;
    return updated;
  }

  /** A rejection of an append at `rejected`; `probeAt` is the leader's guess of the last matching index. */
  maybeDecrTo(rejected: number, probeAt: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // stale
    if (rejected <= this.match && this.match > 0) {
      // The follower refuses an entry it acknowledged: its log went backwards.
      this.markDiverged(probeAt);
      return true;
    }
    this.next = Math.max(Math.min(rejected, probeAt + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /**
   * The follower no longer holds entries it acknowledged (a lost log tail).
   * What it still holds is unknown, so match restarts from 0 (it only ever
   * delays commits) and probing resumes after `lastHeld`, its reported end.
   */
  markDiverged(lastHeld: number): void {
    this.divergedFrom = Math.max(this.divergedFrom, this.match);
    this.match = 0;
    this.#reset('probe');
    this.next = Math.max(1, lastHeld + 1);
  }

  sentEntries(lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      this.next = lastIndex + 1;
      this.#inflight.push({ index: lastIndex, bytes });
      this.#inflightBytes += bytes;
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  #freeTo(index: number): void {
    while (this.#inflight.length > 0 && this.#inflight[0]!.index <= index) {
      this.#inflightBytes -= this.#inflight.shift()!.bytes;
    }
  }

  /**
   * Free the oldest in-flight slot. Called on a heartbeat response while the
   * window is full: if every append in it (or every ack) was lost, nothing
   * else would ever free it; the next append then hits a gap, the follower
   * rejects it, and we fall back to probe.
   */
  freeFirstOne(): void {
    const first = this.#inflight.shift();
    if (first) this.#inflightBytes -= first.bytes;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.#inflight.length >= this.#maxMsgs || this.#inflightBytes >= this.#maxBytes;
      case 'snapshot':
        return true;
    }
  }
}
