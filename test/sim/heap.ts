// Min-heap of timed events; ties broken by insertion order (determinism).
export interface TimedEvent {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
}

export class EventQueue {
  #h: TimedEvent[] = [];
  #seq = 0;

  get size(): number {
    return this.#h.length;
  }

  push(at: number, run: () => void): void {
    const h = this.#h;
    const ev: TimedEvent = { at, seq: this.#seq++, run };
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(ev, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = ev;
  }

  /** The time of the earliest event, or undefined when empty. */
  peekAt(): number | undefined {
    return this.#h[0]?.at;
  }

  pop(): TimedEvent | undefined {
    const h = this.#h;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && less(h[r]!, h[l]!) ? r : l;
      if (!less(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }
}

function less(a: TimedEvent, b: TimedEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
