// Leadership changes as this node sees them, with how long it saw no working
// leader in between: polled every pollMs from the node's status. "Working"
// means a leader is known and, on the leader itself, it has its quorum. The
// gap runs from the last poll that saw the previous working leader to the
// first that saw the new one, so it is precise to one poll (100 ms), and it
// does not include the time before this node noticed the old leader was gone
// (for an election after a silent failure: up to an election timeout; after
// a crash the connection reset is noticed at once). The leader's own record
// of its term is the best estimate of the write outage its election caused.
import { NONE } from '../raft/index.js';
import type { NodeStatus } from '../api/ports.js';
import type { LeaderChangeSeen } from '../api/ports-ops.js';

const KEEP = 50;

export class LeaderWatch {
  readonly #status: () => NodeStatus;
  readonly #pollMs: number;
  #timer: NodeJS.Timeout | undefined;
  #last: { name: string; term: number; at: number } | undefined;
  readonly #seen: LeaderChangeSeen[] = [];

  constructor(status: () => NodeStatus, pollMs = 100) {
    this.#status = status;
    this.#pollMs = pollMs;
  }

  start(): void {
    if (this.#timer) return;
    this.poll();
    this.#timer = setInterval(() => this.poll(), this.#pollMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  poll(now = Date.now()): void {
    let st: NodeStatus;
    try { st = this.#status(); } catch { return; }
    const working = st.leaderId !== NONE && st.leaderName !== undefined && (st.raftRole !== 'leader' || st.quorumMet);
    if (!working) return;
    const prev = this.#last;
    if (prev !== undefined && (prev.name !== st.leaderName || prev.term !== st.term)) {
      this.#seen.push({ term: st.term, from: prev.name, to: st.leaderName!, at: new Date(now).toISOString(), noLeaderMs: now - prev.at, pollMs: this.#pollMs });
      if (this.#seen.length > KEEP) this.#seen.shift();
    }
    this.#last = { name: st.leaderName!, term: st.term, at: now };
  }

  /** Oldest first. */
  changes(): LeaderChangeSeen[] {
    return [...this.#seen];
  }
}
