// Datadriven script tests in the style of etcd-io/raft's testdata/*.txt.
//
// Each file in src/raft/testdata/ is a sequence of test cases:
//
//   # comments and blank lines are kept as they are
//   command arg key=value key=(1,2,3)
//   ----
//   expected output (no blank lines)
//   <blank line>
//
// The cases of one file run in order against one in-memory cluster of
// RawNodes driven by this interpreter, which follows the caller's contract
// (persist -> send -> apply -> advance) one node and one Ready at a time, so a
// script controls exactly which Ready is processed and which message is
// delivered when. A command with no output prints "ok". Errors the core
// throws (RaftError) print as `error: <code>: <message>`, so refusals are
// golden too; an InvariantViolation is a core bug and fails the test.
//
// Regenerate the golden output after a deliberate change with
//   REWRITE=1 node --test dist/src/raft/datadriven.test.js
// and review the diff (git diff src/raft/testdata) line by line: a golden
// file is only as good as the review of it.
//
// Commands:
//   add-nodes N [voters=(..)] [learners=(..)] [observers=(..)] [join] [cfg=value ...]
//       Adds N nodes with the next free ids. Their bootstrap membership is the
//       given voters/learners/observers (default: the new ids as voters);
//       `join` starts them with an empty membership (they learn it from the
//       leader's log or snapshot). cfg keys: electionTicks heartbeatTicks
//       preVote checkQuorum readOnly snapshotEntries trailingEntries
//       maxUncommittedBytes maxEntryBytes maxMsgBytes maxInflightMsgs writeQuorum transferTicks.
//       witness=true: witness mode (no elections; appointment and a commit set).
//   appoint ID epoch=N insync=(..) | set-commit-set ID ids=(..) [insync=(..)] | step-down ID
//   campaign ID | propose ID DATA | propose-conf-change ID add|remove|setRole ID2 [role]
//   transfer-leadership from=ID to=ID | read-index ID ctx=N
//   tick-election ID... | tick-heartbeat ID... | tick ID N
//   leader-unreachable ID | report-unreachable ID to=ID2
//   process-ready ID... | deliver-msgs [drop=(ids)] [ID...] | stabilize [ID...]
//   cut from=A to=B [both] | isolate ID | heal
//   status ID | raft-log ID | applied ID...
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RawNode } from './rawnode.js';
import { SeededRandom } from './prng.js';
import { decodeConfEntry } from './membership.js';
import { InvariantViolation, RaftError } from './errors.js';
import { handleReady, type CallerState } from '../../test/support/raft.js';
import type { ConfChange, Entry, HardState, Member, MemberRole, Membership, Message, NodeId, RaftConfig, Ready, SnapshotMeta } from './types.js';

// ------------------------------------------------------------------ locating testdata

function findTestdata(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const tried: string[] = [];
  const candidates: string[] = [];
  const env = process.env['RAFT_TESTDATA'];
  if (env) candidates.push(resolve(env));
  // Walk up from the compiled file and from the cwd to a directory holding
  // package.json and src/raft/testdata (dist/src/raft/... -> the repo root).
  // A build outside the repo (e.g. /tmp/build-dd) finds the repo through its
  // node_modules symlink.
  for (const start of [here, process.cwd()]) {
    for (let dir = start; ; dir = dirname(dir)) {
      candidates.push(join(dir, 'src', 'raft', 'testdata'));
      const nm = join(dir, 'node_modules');
      if (existsSync(nm)) {
        try {
          candidates.push(join(dirname(realpathSync(nm)), 'src', 'raft', 'testdata'));
        } catch {
          // a dangling symlink: ignore
        }
      }
      if (dirname(dir) === dir) break;
    }
  }
  for (const c of candidates) {
    tried.push(c);
    if (existsSync(c) && statSync(c).isDirectory() && existsSync(join(dirname(dirname(dirname(c))), 'package.json'))) return c;
    if (c === env && existsSync(c)) return c;
  }
  throw new Error(
    `datadriven: cannot find src/raft/testdata (set RAFT_TESTDATA to its path). Tried:\n  ${[...new Set(tried)].join('\n  ')}`,
  );
}

// ------------------------------------------------------------------ file format

interface Case {
  readonly kind: 'case';
  readonly line: number;
  readonly cmd: string;
  readonly expected: string;
}
interface Raw {
  readonly kind: 'raw';
  readonly text: string;
}
type Chunk = Case | Raw;

function parseFile(text: string, file: string): Chunk[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: Chunk[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === '' || l.startsWith('#')) {
      out.push({ kind: 'raw', text: l });
      i++;
      continue;
    }
    const line = i + 1;
    const cmd = l.trim();
    i++;
    if (lines[i] !== '----') throw new Error(`${file}:${line}: expected ---- after command "${cmd}"`);
    i++;
    const exp: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== '') exp.push(lines[i++]!);
    if (i < lines.length) i++; // the blank line ending the case
    out.push({ kind: 'case', line, cmd, expected: exp.join('\n') });
  }
  return out;
}

function formatFile(chunks: readonly Chunk[], actual: ReadonlyMap<Case, string>): string {
  const out: string[] = [];
  for (const c of chunks) {
    if (c.kind === 'raw') out.push(c.text);
    else out.push(c.cmd, '----', actual.get(c) ?? c.expected, '');
  }
  return out.join('\n') + '\n';
}

// ------------------------------------------------------------------ command line

interface Args {
  readonly pos: string[];
  readonly kv: Map<string, string>;
}

function tokenize(s: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|[^\s"]+(?:"(?:[^"\\]|\\.)*")?)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    if (m[1] === undefined) break;
    out.push(m[1]);
  }
  return out;
}

function unquote(s: string): string {
  return s.startsWith('"') ? (JSON.parse(s) as string) : s;
}

function parseArgs(tokens: readonly string[]): Args {
  const pos: string[] = [];
  const kv = new Map<string, string>();
  for (const t of tokens) {
    const eq = t.indexOf('=');
    if (eq > 0 && !t.startsWith('"')) kv.set(t.slice(0, eq), unquote(t.slice(eq + 1)));
    else pos.push(unquote(t));
  }
  return { pos, kv };
}

function int(s: string | undefined, what: string): number {
  if (s === undefined || !/^-?\d+$/.test(s)) throw new Error(`expected an integer for ${what}, got ${String(s)}`);
  return Number(s);
}

function idList(s: string | undefined): number[] {
  if (s === undefined) return [];
  const inner = s.replace(/^\(/, '').replace(/\)$/, '').trim();
  if (inner === '') return [];
  return inner.split(',').map((x) => int(x.trim(), 'id list'));
}

// ------------------------------------------------------------------ formatting

const dec = new TextDecoder();

function fmtMembers(m: Membership): string {
  const ms = m.members.map((x) => `${x.id}${x.role === 'voter' ? '' : x.role === 'learner' ? 'L' : 'O'}`).join(' ');
  return `[${ms}]${m.removed.length > 0 ? ` removed=(${m.removed.join(',')})` : ''}`;
}

function fmtChange(cc: ConfChange): string {
  if (cc.op === 'remove') return `remove ${cc.id}`;
  if (cc.op === 'setMember') return `setMember ${cc.id} ${JSON.stringify(cc.member)}`;
  return `${cc.op} ${cc.id} ${cc.role}`;
}

function fmtEntry(e: Entry): string {
  if (e.type === 'conf') {
    const ce = decodeConfEntry(e.data);
    return `${e.term}/${e.index} EntryConf ${fmtChange(ce.change)} -> ${fmtMembers(ce.membership)}`;
  }
  return `${e.term}/${e.index} EntryNormal ${JSON.stringify(dec.decode(e.data))}`;
}

function fmtSnap(s: SnapshotMeta): string {
  return `Index:${s.index} Term:${s.term} Members:${fmtMembers(s.membership)}`;
}

const TYPE: Record<Message['type'], string> = {
  app: 'MsgApp',
  appResp: 'MsgAppResp',
  vote: 'MsgVote',
  voteResp: 'MsgVoteResp',
  preVote: 'MsgPreVote',
  preVoteResp: 'MsgPreVoteResp',
  heartbeat: 'MsgHeartbeat',
  heartbeatResp: 'MsgHeartbeatResp',
  snap: 'MsgSnap',
  timeoutNow: 'MsgTimeoutNow',
};

function fmtMsg(m: Message): string {
  const parts = [`${m.from}->${m.to} ${TYPE[m.type]} Term:${m.term}`];
  switch (m.type) {
    case 'app':
      parts.push(`Log:${m.logTerm}/${m.index} Commit:${m.commit}`);
      if (m.entries.length > 0) parts.push(`Entries:[${m.entries.map(fmtEntry).join(', ')}]`);
      break;
    case 'appResp':
      parts.push(`Index:${m.index}`);
      if (m.reject) parts.push(`Rejected (Hint: ${m.logTerm}/${m.rejectHint})`);
      break;
    case 'vote':
    case 'preVote':
      parts.push(`Log:${m.logTerm}/${m.index}`);
      if (m.context === 1) parts.push('Transfer');
      break;
    case 'voteResp':
    case 'preVoteResp':
      if (m.reject) parts.push('Rejected');
      break;
    case 'heartbeat':
      parts.push(`Commit:${m.commit}`);
      if (m.context !== 0) parts.push(`ReadRound:${m.context}`);
      break;
    case 'heartbeatResp':
      if (m.context !== 0) parts.push(`ReadRound:${m.context}`);
      break;
    case 'snap':
      if (m.snapshot) parts.push(`Snapshot[${fmtSnap(m.snapshot)}]`);
      break;
    case 'timeoutNow':
      break;
  }
  return parts.join(' ');
}

function fmtHard(h: HardState): string {
  return `Term:${h.term} Vote:${h.vote} Commit:${h.commit}`;
}

// ------------------------------------------------------------------ the environment

interface DNode extends CallerState {
  readonly config: RaftConfig;
}

const CFG_KEYS = [
  'electionTicks',
  'heartbeatTicks',
  'snapshotEntries',
  'trailingEntries',
  'maxUncommittedBytes',
  'maxEntryBytes',
  'maxMsgBytes',
  'maxInflightMsgs',
  'maxInflightBytes',
  'writeQuorum',
  'transferTicks',
] as const;

class Env {
  readonly nodes = new Map<NodeId, DNode>();
  /** Sent and not yet delivered, in send order. */
  msgs: Message[] = [];
  readonly cut = new Set<string>();
  out: string[] = [];

  print(s: string): void {
    this.out.push(s);
  }

  node(id: NodeId): DNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  addNodes(a: Args): void {
    const count = int(a.pos[0], 'add-nodes N');
    const first = this.nodes.size === 0 ? 1 : Math.max(...this.nodes.keys()) + 1;
    const newIds = Array.from({ length: count }, (_, i) => first + i);
    const join = a.pos.includes('join');
    const voters = a.kv.has('voters') ? idList(a.kv.get('voters')) : join ? [] : newIds;
    const members: Member[] = [
      ...voters.map((id) => ({ id, role: 'voter' as MemberRole })),
      ...idList(a.kv.get('learners')).map((id) => ({ id, role: 'learner' as MemberRole })),
      ...idList(a.kv.get('observers')).map((id) => ({ id, role: 'observer' as MemberRole })),
    ].sort((x, y) => x.id - y.id);
    const membership: Membership = { members, removed: [] };
    const overrides: Record<string, unknown> = {};
    for (const k of CFG_KEYS) if (a.kv.has(k)) overrides[k] = int(a.kv.get(k), k);
    for (const k of ['preVote', 'checkQuorum', 'witness'] as const) if (a.kv.has(k)) overrides[k] = a.kv.get(k) === 'true';
    if (a.kv.has('readOnly')) overrides['readOnly'] = a.kv.get('readOnly');
    for (const k of a.kv.keys()) {
      if (!['voters', 'learners', 'observers', 'preVote', 'checkQuorum', 'witness', 'readOnly', ...CFG_KEYS].includes(k)) throw new Error(`add-nodes: unknown option ${k}`);
    }
    for (const id of newIds) {
      const config = { electionTicks: 10, heartbeatTicks: 1, ...overrides, id, random: new SeededRandom(id * 7919) } as RaftConfig;
      const snapshot: SnapshotMeta = { index: 0, term: 0, membership };
      const hardState: HardState = { term: 0, vote: 0, commit: 0 };
      this.nodes.set(id, {
        raw: new RawNode(config, { hardState, snapshot, entries: [] }),
        config,
        hardState,
        snapshot,
        entries: [],
        applied: [],
        snapshotData: [],
        incoming: [],
      });
      this.print(`added node ${id} members=${fmtMembers(membership)}`);
    }
  }

  /** Handle one Ready of node `id` per the caller's contract, printing it. Returns false if none. */
  processReady(id: NodeId): boolean {
    const n = this.node(id);
    if (!n.raw.hasReady()) return false;
    const rd: Ready = n.raw.ready();
    this.print(`> ${id} handling Ready`);
    const p = (s: string) => this.print(`  ${s}`);
    if (rd.softState) p(`State: ${rd.softState.role} Lead:${rd.softState.lead}`);
    if (rd.hardState) p(`HardState ${fmtHard(rd.hardState)}${rd.mustSync ? ' (sync)' : ''}`);
    if (rd.snapshot) p(`Snapshot ${fmtSnap(rd.snapshot)}`);
    if (rd.entries.length > 0) {
      p(`Entries${rd.mustSync && !rd.hardState ? ' (sync)' : ''}:`);
      for (const e of rd.entries) p(`  ${fmtEntry(e)}`);
    }
    if (rd.committedEntries.length > 0) {
      p('CommittedEntries:');
      for (const e of rd.committedEntries) p(`  ${fmtEntry(e)}`);
    }
    if (rd.messages.length > 0) {
      p('Messages:');
      for (const m of rd.messages) p(`  ${fmtMsg(m)}`);
    }
    if (rd.readStates.length > 0) p(`ReadStates: ${rd.readStates.map((r) => `ctx=${r.ctx}@${r.index}`).join(' ')}`);
    if (rd.droppedReads.length > 0) p(`DroppedReads: ${rd.droppedReads.join(' ')}`);
    // persist → send → apply → advance (and a snapshot if asked): one shared implementation.
    const compactedTo = handleReady(n, rd, this.msgs);
    if (compactedTo !== undefined) p(`SnapshotRequest:${rd.snapshotRequest} -> snapshotTaken, log compacted to ${compactedTo}`);
    return true;
  }

  /** Deliver in-flight messages addressed to `to` (all nodes when empty). */
  deliver(to: readonly NodeId[], drop: readonly NodeId[] = []): number {
    const keep: Message[] = [];
    const batch = this.msgs;
    this.msgs = [];
    let n = 0;
    for (const m of batch) {
      const wanted = drop.includes(m.to) || to.length === 0 || to.includes(m.to);
      if (!wanted) {
        keep.push(m);
        continue;
      }
      if (drop.includes(m.to) || this.cut.has(`${m.from}-${m.to}`)) {
        this.print(`dropped: ${fmtMsg(m)}`);
        continue;
      }
      const dst = this.nodes.get(m.to);
      if (!dst) {
        this.print(`dropped (no such node): ${fmtMsg(m)}`);
        continue;
      }
      this.print(fmtMsg(m));
      n++;
      if (m.type === 'snap') dst.incoming = [...this.node(m.from).snapshotData];
      dst.raw.step(m);
      // The snapshot's bytes stream at once here.
      if (m.type === 'snap') this.nodes.get(m.from)?.raw.reportSnapshot(m.to, true);
    }
    // Stepping sends nothing directly (sends surface in a later Ready).
    this.msgs = keep;
    return n;
  }

  stabilize(ids: readonly NodeId[]): void {
    const set = ids.length > 0 ? ids : this.ids();
    for (let round = 0; round < 1000; round++) {
      let any = false;
      for (const id of set) while (this.processReady(id)) any = true;
      const pending = this.msgs.some((m) => set.includes(m.to));
      if (pending) {
        this.deliver(set);
        any = true;
      }
      if (!any) return;
    }
    throw new Error('stabilize: no fixpoint after 1000 rounds');
  }

  status(id: NodeId): void {
    const st = this.node(id).raw.status();
    this.print(
      `${id} ${st.role} term=${st.term} vote=${st.vote} lead=${st.lead} commit=${st.commit} applied=${st.applied} log=${st.firstIndex}..${st.lastIndex}` +
        (st.leadTransferee !== 0 ? ` transferee=${st.leadTransferee}` : '') +
        (st.role === 'leader' ? ` uncommittedBytes=${st.uncommittedBytes} reachableVoters=${st.reachableVoters}` : '') +
        (st.commitSet ? ` commitSet=(${st.commitSet.join(',')})` : ''),
    );
    this.print(`members=${fmtMembers(st.membership)}`);
    for (const pr of [...st.progress].sort((a, b) => a.id - b.id)) {
      this.print(`  ${pr.id}: ${pr.role} ${pr.state} match=${pr.match} next=${pr.next}${pr.recentActive ? ' active' : ''}`);
    }
  }

  exec(line: string): void {
    const tokens = tokenize(line);
    const cmd = tokens[0] ?? '';
    const a = parseArgs(tokens.slice(1));
    const ids = () => a.pos.map((x) => int(x, 'node id'));
    const one = () => int(a.pos[0], 'node id');
    const ticks = (idsToTick: number[], f: (n: DNode) => number) => {
      for (const id of idsToTick) {
        const n = this.node(id);
        const k = f(n);
        for (let i = 0; i < k; i++) n.raw.tick();
      }
    };
    switch (cmd) {
      case 'add-nodes':
        this.addNodes(a);
        return;
      case 'campaign':
        this.node(one()).raw.campaign();
        return;
      case 'appoint':
        this.node(one()).raw.appoint(int(a.kv.get('epoch'), 'appoint epoch'), idList(a.kv.get('insync')));
        return;
      case 'set-commit-set':
        this.node(one()).raw.setCommitSet(idList(a.kv.get('ids')), ...(a.kv.has('insync') ? [idList(a.kv.get('insync'))] : []));
        return;
      case 'step-down':
        this.node(one()).raw.stepDown();
        return;
      case 'propose': {
        const data = a.pos[1];
        if (data === undefined) throw new Error('propose ID DATA');
        const r = this.node(one()).raw.propose(new TextEncoder().encode(data));
        this.print(`proposed ${r.term}/${r.index}`);
        return;
      }
      case 'propose-conf-change': {
        const [, op, target, role] = a.pos;
        const id2 = int(target, 'conf change target');
        const roleOk = (r: string | undefined): MemberRole => {
          if (r !== 'voter' && r !== 'learner' && r !== 'observer') throw new Error(`bad role ${String(r)}`);
          return r;
        };
        let cc: ConfChange;
        if (op === 'add') cc = { op, id: id2, role: roleOk(role ?? 'voter') };
        else if (op === 'remove') cc = { op, id: id2 };
        else if (op === 'setRole') cc = { op, id: id2, role: roleOk(role) };
        else throw new Error(`bad conf change op ${String(op)}`);
        const r = this.node(one()).raw.proposeConfChange(cc);
        this.print(`proposed ${r.term}/${r.index}`);
        return;
      }
      case 'transfer-leadership':
        this.node(int(a.kv.get('from'), 'from')).raw.transferLeadership(int(a.kv.get('to'), 'to'));
        return;
      case 'read-index':
        this.node(one()).raw.readIndex(int(a.kv.get('ctx'), 'ctx'));
        return;
      case 'tick-election':
        // A follower's randomized timeout is in [T, 2T): 2T-1 ticks fire it exactly once.
        // A leader's CheckQuorum runs every T ticks.
        ticks(ids(), (n) => (n.raw.status().role === 'leader' ? n.config.electionTicks : 2 * n.config.electionTicks - 1));
        return;
      case 'tick-heartbeat':
        ticks(ids(), (n) => n.config.heartbeatTicks);
        return;
      case 'tick':
        ticks([one()], () => int(a.pos[1] ?? '1', 'tick count'));
        return;
      case 'leader-unreachable':
        this.node(one()).raw.leaderUnreachable();
        return;
      case 'report-unreachable':
        this.node(one()).raw.reportUnreachable(int(a.kv.get('to'), 'to'));
        return;
      case 'process-ready':
        for (const id of ids().length > 0 ? ids() : this.ids()) this.processReady(id);
        return;
      case 'deliver-msgs':
        this.deliver(ids(), idList(a.kv.get('drop')));
        return;
      case 'stabilize':
        this.stabilize(ids());
        return;
      case 'cut': {
        const from = int(a.kv.get('from'), 'from');
        for (const to of idList(a.kv.get('to'))) {
          this.cut.add(`${from}-${to}`);
          if (a.pos.includes('both')) this.cut.add(`${to}-${from}`);
        }
        return;
      }
      case 'isolate': {
        const id = one();
        for (const other of this.ids()) {
          if (other === id) continue;
          this.cut.add(`${id}-${other}`).add(`${other}-${id}`);
        }
        return;
      }
      case 'heal':
        this.cut.clear();
        return;
      case 'status':
        for (const id of ids()) this.status(id);
        return;
      case 'raft-log': {
        const n = this.node(one());
        const st = n.raw.status();
        if (st.firstIndex > 1) this.print(`(compacted through ${st.firstIndex - 1}; snapshot ${fmtSnap(n.snapshot)})`);
        for (let i = st.firstIndex; i <= st.lastIndex; i++) {
          const e = n.raw.entry(i);
          this.print(e ? fmtEntry(e) : `${i}: missing`);
        }
        if (st.firstIndex > st.lastIndex) this.print('(empty log)');
        return;
      }
      case 'applied':
        for (const id of ids()) this.print(`${id}: [${this.node(id).applied.map((e) => dec.decode(e.data)).join(' ')}]`);
        return;
      default:
        throw new Error(`unknown command ${JSON.stringify(cmd)}`);
    }
  }

  run(line: string): string {
    this.out = [];
    try {
      this.exec(line);
    } catch (err) {
      if (err instanceof InvariantViolation || !(err instanceof RaftError)) throw err;
      this.print(`error: ${err.code}: ${err.message}`);
    }
    return this.out.length === 0 ? 'ok' : this.out.join('\n');
  }
}

// ------------------------------------------------------------------ the tests

const dir = findTestdata();
const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();
const rewrite = process.env['REWRITE'] === '1';

test('datadriven: testdata directory holds scripts', () => {
  assert.ok(files.length > 0, `no *.txt scripts in ${dir}`);
});

for (const f of files) {
  test(`datadriven ${f}`, () => {
    const path = join(dir, f);
    const chunks = parseFile(readFileSync(path, 'utf8'), f);
    const env = new Env();
    const actual = new Map<Case, string>();
    const diffs: string[] = [];
    for (const c of chunks) {
      if (c.kind !== 'case') continue;
      let got: string;
      try {
        got = env.run(c.cmd);
      } catch (err) {
        throw new Error(`${f}:${c.line}: ${c.cmd}: ${(err as Error).stack ?? String(err)}`, { cause: err });
      }
      actual.set(c, got);
      if (got !== c.expected) diffs.push(`${f}:${c.line}: ${c.cmd}\n--- expected\n${c.expected}\n--- actual\n${got}`);
    }
    if (rewrite) {
      writeFileSync(path, formatFile(chunks, actual));
      return;
    }
    if (diffs.length > 0) assert.fail(`${diffs.length} case(s) differ (REWRITE=1 regenerates; review the diff):\n\n${diffs.join('\n\n')}`);
  });
}
