// The Leadership seam: who leads, with which term (the fencing token), and
// whether it has a quorum, as change notifications; and leader-only services,
// started with a term when this node leads with a quorum and stopped when it
// loses either. Raft provides leadership now (RaftLeadership, fed by the node
// loop); a Redis lease can provide it later behind the same interface.
import type { Logger } from 'pino';
import { majority, roleOf, votingIds, type Status } from '../raft/index.js';

export interface LeadershipState {
  /** This node leads. */
  readonly leading: boolean;
  /** The term of the current leadership: the fencing token for leader-only work. */
  readonly term: number;
  /** A quorum of voters is reachable (without it a leader's work cannot commit). */
  readonly quorum: boolean;
}

export interface Leadership {
  current(): LeadershipState;
  /** Called on every change; returns an unsubscribe function. */
  onChange(listener: (s: LeadershipState) => void): () => void;
}

/** Leadership as the Raft loop reports it (`update` is called by the node). */
export class RaftLeadership implements Leadership {
  #state: LeadershipState = { leading: false, term: 0, quorum: false };
  readonly #listeners = new Set<(s: LeadershipState) => void>();

  current(): LeadershipState {
    return this.#state;
  }

  onChange(listener: (s: LeadershipState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  update(next: LeadershipState): void {
    const s = this.#state;
    if (s.leading === next.leading && s.term === next.term && s.quorum === next.quorum) return;
    this.#state = next;
    for (const l of this.#listeners) l(next);
  }

  /** From the core's status (moved from node.ts): leading, the term, and a quorum in the sense CheckQuorum keeps leadership: a majority of voters heard from. */
  updateFrom(st: Pick<Status, 'id' | 'role' | 'term' | 'reachableVoters' | 'membership'>): void {
    // An observer that stood in as leader (a last resort, see src/raft) only hands over to a voter: it runs no leader work.
    const leading = st.role === 'leader' && roleOf(st.membership, st.id) === 'voter';
    const quorum = leading && st.reachableVoters >= majority(votingIds(st.membership).length);
    this.update({ leading, term: st.term, quorum });
  }
}

/** Work only the leader does (TTL expiry, membership reconciliation; later VIP, backups, jobs, drills). */
export interface LeaderService {
  readonly name: string;
  /** This node leads with a quorum in `term`. */
  start(term: number): void;
  /** It no longer does (or the node stops). Must not throw. */
  stop(): void;
}

/**
 * Runs each service while this node leads with a quorum: started with the
 * term, stopped when leadership or quorum is lost or the term changes (a new
 * term restarts them with the new fencing token).
 */
export class LeaderServices {
  readonly #services: LeaderService[] = [];
  readonly #log: Logger;
  #runningTerm: number | undefined;
  readonly #unsubscribe: () => void;

  constructor(leadership: Leadership, logger: Logger) {
    this.#log = logger;
    this.#unsubscribe = leadership.onChange((s) => this.#apply(s));
    this.#apply(leadership.current());
  }

  add(service: LeaderService): void {
    this.#services.push(service);
    if (this.#runningTerm !== undefined) this.#start(service, this.#runningTerm);
  }

  /** Stop every service for good (node shutdown). */
  close(): void {
    this.#unsubscribe();
    this.#stopAll('node stopping');
  }

  #apply(s: LeadershipState): void {
    const want = s.leading && s.quorum ? s.term : undefined;
    if (want === this.#runningTerm) return;
    if (this.#runningTerm !== undefined) this.#stopAll(s.leading ? (s.quorum ? `new term ${s.term}` : 'quorum lost') : 'leadership lost');
    if (want !== undefined) {
      this.#runningTerm = want;
      for (const svc of this.#services) this.#start(svc, want);
    }
  }

  #start(svc: LeaderService, term: number): void {
    try {
      svc.start(term);
      this.#log.info({ event: 'leader_service_started', service: svc.name, fencingTerm: term }, `leader service ${svc.name} started (term ${term})`);
    } catch (e) {
      this.#log.error({ event: 'leader_service_failed', service: svc.name, err: (e as Error).message }, `leader service ${svc.name} failed to start: ${(e as Error).message}`);
    }
  }

  #stopAll(why: string): void {
    if (this.#runningTerm === undefined) return;
    this.#runningTerm = undefined;
    for (const svc of this.#services) {
      try {
        svc.stop();
      } catch (e) {
        this.#log.error({ event: 'leader_service_failed', service: svc.name, err: (e as Error).message }, `leader service ${svc.name} failed to stop: ${(e as Error).message}`);
      }
      this.#log.info({ event: 'leader_service_stopped', service: svc.name, reason: why }, `leader service ${svc.name} stopped (${why})`);
    }
  }
}

/** A leader service that runs `tick` every `intervalMs` while started. */
export function periodicService(name: string, intervalMs: number, tick: (term: number) => void): LeaderService {
  let timer: NodeJS.Timeout | undefined;
  return {
    name,
    start(term) {
      if (timer) clearInterval(timer);
      timer = setInterval(() => tick(term), intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
