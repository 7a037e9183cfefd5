// The split-brain watch: remembers which peer sent appends or heartbeats as
// leader of each recent term; a second leader for the same term (another
// peer, or this node itself) is logged as `split_brain` and shown in the
// node's status. It only watches: Raft allows one leader per term, so this
// catches a broken invariant, it never acts on one.
import type { Logger } from 'pino';
import type { Message, NodeId } from '../raft/index.js';
import type { Replica } from './replica.js';

export class SplitBrainWatch {
  readonly #replica: Pick<Replica, 'soft' | 'term'>;
  readonly #nodeName: string;
  readonly #nameOf: (id: NodeId) => string;
  readonly #log: Logger;
  #termLeaders = new Map<number, NodeId>();
  #warning: string | undefined;

  constructor(o: { replica: Pick<Replica, 'soft' | 'term'>; nodeName: string; nameOf: (id: NodeId) => string; logger: Logger }) {
    this.#replica = o.replica;
    this.#nodeName = o.nodeName;
    this.#nameOf = o.nameOf;
    this.#log = o.logger;
  }

  /** The last split-brain seen (for the status), if any. */
  get warning(): string | undefined {
    return this.#warning;
  }

  /** An append or heartbeat admitted from `m.from`, leader of `m.term`. */
  watch(m: Message): void {
    const seen = this.#termLeaders.get(m.term);
    const selfLeads = this.#replica.soft.role === 'leader' && this.#replica.term === m.term;
    if ((seen !== undefined && seen !== m.from) || selfLeads) {
      const other = selfLeads ? this.#nodeName : this.#nameOf(seen!);
      this.#warning = `${this.#nameOf(m.from)} and ${other} both claimed leadership of term ${m.term}`;
      this.#log.error({ event: 'split_brain', term: m.term }, `Split-brain warning: ${this.#warning}`);
    } else if (seen === undefined) {
      this.#termLeaders.set(m.term, m.from);
      if (this.#termLeaders.size > 64) this.#termLeaders.delete(this.#termLeaders.keys().next().value!);
    }
  }
}
