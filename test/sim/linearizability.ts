// Linearizability checker for a register-per-key model (read / write / cas).
//
// Wing & Gong's search with Lowe's memoization ("Testing for linearizability",
// 2017): walk the history's call/return events in time order, try to
// linearize each pending call at the head, backtrack on a return whose call
// was not yet linearized, and never revisit a (linearized-set, state) pair.
// The register model is P-compositional, so every key is checked on its own,
// which keeps the bitsets small and the search shallow.
//
// An operation with an indeterminate outcome (client timeout, leader lost)
// has no return: its return sits at +infinity and its output matches
// anything. "Never took effect" needs no special case: it is the same as
// taking effect after every other operation, where nothing observes it.

export type RegisterValue = string | null;

export type KvOp =
  | { readonly kind: 'read'; readonly key: string }
  | { readonly kind: 'write'; readonly key: string; readonly value: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expected: RegisterValue; readonly value: string };

/** read -> the value seen; write -> 'ok'; cas -> 'ok' | 'fail'. */
export type KvOutput = { readonly kind: 'read'; readonly value: RegisterValue } | { readonly kind: 'ok' } | { readonly kind: 'fail' };

export interface HistoryEntry {
  readonly client: number;
  readonly op: KvOp;
  /** undefined when the outcome is indeterminate. */
  readonly output: KvOutput | undefined;
  readonly invokeAt: number;
  /** undefined when the outcome is indeterminate (may take effect any time after invoke, or never). */
  readonly returnAt: number | undefined;
}

export type CheckResult =
  | { readonly result: 'linearizable'; readonly keys: number; readonly ops: number; readonly states: number }
  | {
      readonly result: 'violation';
      readonly key: string;
      readonly states: number;
      /** The key's history, for the report. */
      readonly history: readonly HistoryEntry[];
      readonly detail: string;
    }
  | { readonly result: 'gaveUp'; readonly key: string; readonly states: number; readonly detail: string };

export interface CheckOptions {
  /** Search steps allowed per key before giving up (a give-up is not a pass). */
  readonly maxStatesPerKey?: number;
}

interface Step {
  readonly ok: boolean;
  readonly next: RegisterValue;
}

function applyModel(state: RegisterValue, op: KvOp, output: KvOutput | undefined): Step {
  switch (op.kind) {
    case 'read':
      if (output === undefined) return { ok: true, next: state };
      return { ok: output.kind === 'read' && output.value === state, next: state };
    case 'write':
      return { ok: output === undefined || output.kind === 'ok', next: op.value };
    case 'cas': {
      const succeeds = state === op.expected;
      if (succeeds) return { ok: output === undefined || output.kind === 'ok', next: op.value };
      return { ok: output === undefined || output.kind === 'fail', next: state };
    }
  }
}

interface Node {
  readonly opIdx: number;
  readonly isCall: boolean;
  match: Node | null; // call -> its return
  prev: Node | null;
  next: Node | null;
}

/** Checks one key's history (all ops on the same key). */
export function checkKey(
  history: readonly HistoryEntry[],
  maxStates = 2_000_000,
): { result: 'linearizable' | 'violation' | 'gaveUp'; states: number } {
  // Indeterminate reads observe nothing and change nothing: drop them.
  const ops = history.filter((h) => !(h.op.kind === 'read' && h.output === undefined));
  const n = ops.length;
  if (n === 0) return { result: 'linearizable', states: 0 };
  const events: { t: number; call: boolean; i: number }[] = [];
  let determinate = 0;
  ops.forEach((h, i) => {
    events.push({ t: h.invokeAt, call: true, i });
    events.push({ t: h.returnAt ?? Number.POSITIVE_INFINITY, call: false, i });
    if (h.returnAt !== undefined) determinate++;
  });
  // Calls before returns at equal times: treat touching intervals as concurrent (never a false alarm).
  events.sort((a, b) => a.t - b.t || (a.call === b.call ? a.i - b.i : a.call ? -1 : 1));
  const head: Node = { opIdx: -1, isCall: false, match: null, prev: null, next: null };
  let tail = head;
  const calls: Node[] = new Array<Node>(n);
  for (const e of events) {
    const node: Node = { opIdx: e.i, isCall: e.call, match: null, prev: tail, next: null };
    tail.next = node;
    tail = node;
    if (e.call) calls[e.i] = node;
    else calls[e.i]!.match = node;
  }
  const lift = (c: Node): void => {
    c.prev!.next = c.next;
    if (c.next) c.next.prev = c.prev;
    const r = c.match!;
    r.prev!.next = r.next;
    if (r.next) r.next.prev = r.prev;
  };
  const unlift = (c: Node): void => {
    const r = c.match!;
    r.prev!.next = r;
    if (r.next) r.next.prev = r;
    c.prev!.next = c;
    if (c.next) c.next.prev = c;
  };
  const isDet = ops.map((h) => h.returnAt !== undefined);
  const cache = new Set<string>();
  const stack: { node: Node; state: RegisterValue }[] = [];
  let bits = 0n;
  let state: RegisterValue = null;
  let linearizedDet = 0;
  let steps = 0;
  let entry: Node | null = head.next;
  for (;;) {
    if (linearizedDet === determinate) return { result: 'linearizable', states: steps };
    if (++steps > maxStates) return { result: 'gaveUp', states: steps };
    if (entry === null) return { result: 'violation', states: steps }; // unreachable for well-formed histories
    if (entry.isCall) {
      const h = ops[entry.opIdx]!;
      const r = applyModel(state, h.op, h.output);
      if (r.ok) {
        const nb = bits | (1n << BigInt(entry.opIdx));
        const key = `${nb.toString(36)}|${r.next === null ? '\u0000' : r.next}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ node: entry, state });
          bits = nb;
          state = r.next;
          if (isDet[entry.opIdx]) linearizedDet++;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      const top = stack.pop();
      if (top === undefined) return { result: 'violation', states: steps };
      const c = top.node;
      bits &= ~(1n << BigInt(c.opIdx));
      state = top.state;
      if (isDet[c.opIdx]) linearizedDet--;
      unlift(c);
      entry = c.next;
    }
  }
}

/** Checks a whole history, key by key (P-compositionality). */
export function checkHistory(history: readonly HistoryEntry[], options: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, HistoryEntry[]>();
  for (const h of history) {
    let l = byKey.get(h.op.key);
    if (l === undefined) byKey.set(h.op.key, (l = []));
    l.push(h);
  }
  let total = 0;
  for (const [key, ops] of [...byKey.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const r = checkKey(ops, options.maxStatesPerKey);
    total += r.states;
    if (r.result === 'violation') {
      return { result: 'violation', key, states: r.states, history: ops, detail: `no linearization of the ${ops.length} ops on key ${JSON.stringify(key)}` };
    }
    if (r.result === 'gaveUp') {
      return { result: 'gaveUp', key, states: r.states, detail: `gave up after ${r.states} states on key ${JSON.stringify(key)} (${ops.length} ops)` };
    }
  }
  return { result: 'linearizable', keys: byKey.size, ops: history.length, states: total };
}

/** One line per op, for failure reports. */
export function formatHistory(history: readonly HistoryEntry[]): string {
  return [...history]
    .sort((a, b) => a.invokeAt - b.invokeAt)
    .map((h) => {
      const op =
        h.op.kind === 'read'
          ? `read(${h.op.key})`
          : h.op.kind === 'write'
            ? `write(${h.op.key}, ${h.op.value})`
            : `cas(${h.op.key}, ${String(h.op.expected)} -> ${h.op.value})`;
      const out = h.output === undefined ? '?' : h.output.kind === 'read' ? String(h.output.value) : h.output.kind;
      return `  c${h.client} [${h.invokeAt}, ${h.returnAt ?? '∞'}] ${op} => ${out}`;
    })
    .join('\n');
}
