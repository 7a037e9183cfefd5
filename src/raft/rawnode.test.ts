import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MemCluster } from '../../test/support/raft.js';
import type { ConfigOverrides } from '../../test/support/raft.js';
import { RawNode } from './rawnode.js';
import { SeededRandom } from './prng.js';
import { encodeConfEntry } from './membership.js';
import type { Entry, Membership, Message, RaftConfig } from './types.js';

const enc = (s: string) => new TextEncoder().encode(s);

function threeNodes(config: ConfigOverrides = {}) {
  const c = new MemCluster({ voters: [1, 2, 3], config });
  assert.equal(c.elect(1), 1);
  return c;
}

function membership(voters: number[], extra: Membership['members'] = []): Membership {
  return { members: [...voters.map((id) => ({ id, role: 'voter' as const })), ...extra].sort((a, b) => a.id - b.id), removed: [] };
}

/** A RawNode with a given log (terms of entries 1..n) and current term. */
function nodeWithLog(id: number, terms: number[], term: number, m: Membership, cfg: Partial<RaftConfig> = {}): RawNode {
  const entries: Entry[] = terms.map((t, i) => ({ term: t, index: i + 1, type: 'normal', data: enc(`e${i + 1}`) }));
  return new RawNode(
    { id, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(id), ...cfg },
    { hardState: { term, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: m }, entries },
  );
}

function msg(p: Partial<Message> & Pick<Message, 'type' | 'from' | 'to' | 'term'>): Message {
  return { logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: 0, ...p };
}

function drain(n: RawNode): Message[] {
  const out: Message[] = [];
  while (n.hasReady()) {
    const rd = n.ready();
    out.push(...rd.messages);
    n.advance();
  }
  return out;
}

describe('§5.2 leader election', () => {
  test('a follower that hears from no leader for an election timeout pre-votes, campaigns and wins', () => {
    const c = new MemCluster({ voters: [1, 2, 3] });
    for (let i = 0; i < 20 && c.leader() === 0; i++) {
      c.tickAll();
      c.stabilize();
    }
    const lead = c.leader();
    assert.notEqual(lead, 0);
    for (const id of [1, 2, 3]) assert.equal(c.node(id).raw.status().lead, lead);
  });

  test('the only voter of its configuration campaigns at its first tick after soleVoterFastStart, not after an election timeout', () => {
    const n = nodeWithLog(1, [1, 1], 1, membership([1]));
    assert.equal(n.soleVoterFastStart(), true);
    n.tick();
    drain(n);
    assert.equal(n.status().role, 'leader');
    assert.equal(n.soleVoterFastStart(), false, 'a leader is known');
  });

  test('soleVoterFastStart does nothing with other voters, and keeps the rules of the election tick', () => {
    const three = nodeWithLog(1, [1, 1], 1, membership([1, 2, 3]));
    assert.equal(three.soleVoterFastStart(), false);
    three.tick();
    assert.equal(three.status().role, 'follower', 'still waits out its election timeout');
    const learner = nodeWithLog(2, [1, 1], 1, membership([1], [{ id: 2, role: 'learner' }]));
    assert.equal(learner.soleVoterFastStart(), false, 'the one voter is another node');
    const manual = new RawNode(
      { id: 1, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(1) },
      { hardState: { term: 1, vote: 1, commit: 2 }, snapshot: { index: 0, term: 0, membership: membership([1]) }, entries: [1, 1].map((t, i) => ({ term: t, index: i + 1, type: 'normal' as const, data: enc(`e${i + 1}`) })) },
    );
    manual.setAutoCampaign(false);
    assert.equal(manual.soleVoterFastStart(), true);
    manual.tick();
    drain(manual);
    assert.notEqual(manual.status().role, 'leader', 'automatic campaigns off (manual failover, paused): no election of its own');
  });

  test('election timeouts are randomized in [T, 2T)', () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const n = new RawNode({ id: 1, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(seed) },
        { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: membership([1, 2, 3]) }, entries: [] });
      let ticks = 0;
      while (n.status().role === 'follower') {
        n.tick();
        ticks++;
        assert.ok(ticks < 20, 'campaigned within 2T');
      }
      assert.ok(ticks >= 10, `waited at least T, got ${ticks}`);
      seen.add(ticks);
    }
    assert.ok(seen.size > 3, 'timeouts vary across seeds');
  });

  test('a node grants at most one vote per term', () => {
    const n = nodeWithLog(1, [], 1, membership([1, 2, 3]), { checkQuorum: false });
    n.step(msg({ type: 'vote', from: 2, to: 1, term: 2 }));
    n.step(msg({ type: 'vote', from: 3, to: 1, term: 2 }));
    const resps = drain(n).filter((m) => m.type === 'voteResp');
    assert.deepEqual(resps.map((m) => [m.to, m.reject]), [[2, false], [3, true]]);
    assert.equal(n.status().vote, 2);
  });

  test('§5.4.1 a voter rejects a candidate whose log is less up-to-date', () => {
    const n = nodeWithLog(1, [1, 2], 2, membership([1, 2, 3]), { checkQuorum: false });
    n.step(msg({ type: 'vote', from: 2, to: 1, term: 3, index: 5, logTerm: 1 }));
    n.step(msg({ type: 'vote', from: 3, to: 1, term: 4, index: 1, logTerm: 2 }));
    const resps = drain(n).filter((m) => m.type === 'voteResp');
    assert.deepEqual(resps.map((m) => m.reject), [true, true]);
    n.step(msg({ type: 'vote', from: 3, to: 1, term: 5, index: 2, logTerm: 2 }));
    assert.equal(drain(n).find((m) => m.type === 'voteResp')?.reject, false);
  });

  test('§4.2.3 votes are ignored while a live leader is known', () => {
    const c = threeNodes();
    const term = c.node(2).raw.status().term;
    c.node(2).raw.step(msg({ type: 'vote', from: 3, to: 2, term: term + 1, index: 100, logTerm: 100 }));
    assert.equal(c.node(2).raw.status().term, term, 'term unchanged');
    assert.equal(c.node(2).raw.status().lead, 1);
  });

  test('the new leader appends a no-op entry of its term', () => {
    const c = threeNodes();
    const st = c.node(1).raw.status();
    const e = c.node(1).raw.entry(st.lastIndex)!;
    assert.equal(e.term, st.term);
    assert.equal(e.data.length, 0);
    assert.equal(st.commit, st.lastIndex);
  });
});

describe('§9.6 PreVote and CheckQuorum', () => {
  test('two followers whose pre-votes cross after the leader dies elect one leader at once (no split vote)', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    c.cut.add('1-2').add('1-3').add('2-1').add('3-1');
    c.node(2).raw.campaign();
    c.node(3).raw.campaign();
    c.stabilize();
    const leader = c.leader();
    assert.ok(leader === 2 || leader === 3, `a new leader without waiting for an election timeout (got ${leader})`);
    assert.equal(c.node(2).raw.status().term, c.node(3).raw.status().term);
  });

  test('a partitioned node rejoining does not disrupt the leader (its term does not inflate)', () => {
    const c = threeNodes();
    const term = c.node(1).raw.status().term;
    c.cut.add('3-1').add('3-2').add('1-3').add('2-3');
    for (let i = 0; i < 100; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.equal(c.node(3).raw.status().term, term, 'pre-votes fail without bumping the term');
    c.cut.clear();
    for (let i = 0; i < 5; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.equal(c.leader(), 1);
    assert.equal(c.node(1).raw.status().term, term);
  });

  test('a leader without a quorum steps down within an election timeout', () => {
    const c = threeNodes();
    c.cut.add('2-1').add('3-1');
    let ticks = 0;
    while (c.node(1).raw.status().role === 'leader') {
      c.tick(1);
      c.stabilize();
      ticks++;
      assert.ok(ticks <= 2 * 10, 'stepped down within two election timeouts of ticks');
    }
    assert.equal(c.node(1).raw.status().role, 'follower');
  });

  test('a follower that sees its leader connection reset campaigns within two heartbeats', () => {
    const c = threeNodes();
    c.cut.add('1-2').add('1-3').add('2-1').add('3-1');
    c.node(2).raw.leaderUnreachable();
    c.node(3).raw.leaderUnreachable();
    let ticks = 0;
    while (c.leader() === 1 || c.leader() === 0 || c.node(c.leader()).raw.status().term === c.node(1).raw.status().term) {
      c.tick(2);
      c.tick(3);
      c.stabilize();
      ticks++;
      assert.ok(ticks <= 6, `new leader after ${ticks} ticks`);
    }
    assert.ok([2, 3].includes(c.leader()));
  });

  test('a leader heartbeats a restarted follower as soon as its connection is up, and catches it up without waiting for a tick', () => {
    const c = new MemCluster({ voters: [1, 2, 3], config: { heartbeatTicks: 10, electionTicks: 100 } });
    c.node(1).raw.campaign();
    c.stabilize();
    c.cut.add('1-3').add('3-1');
    for (let i = 0; i < 5; i++) c.propose(1, `w${i}`);
    c.stabilize();
    c.restart(3);
    c.cut.clear();
    c.stabilize();
    assert.notEqual(c.node(3).raw.status().lead, 1, 'nothing reaches the restarted follower before a tick');
    c.node(1).raw.peerConnected(3);
    c.stabilize();
    assert.equal(c.node(3).raw.status().lead, 1);
    assert.deepEqual(c.appliedText(3).slice(-5), ['w0', 'w1', 'w2', 'w3', 'w4']);
  });

  test('two followers that see the reset at once elect one leader within half a heartbeat interval, at every seed', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const c = new MemCluster({ voters: [1, 2, 3], seed, config: { heartbeatTicks: 10, electionTicks: 100 } });
      c.node(1).raw.campaign();
      c.stabilize();
      assert.equal(c.leader(), 1);
      // Some seeds leave one follower a few entries behind (its appends cut before the crash).
      if (seed % 2 === 0) {
        c.cut.add('1-3');
        for (let i = 0; i < 3; i++) c.propose(1, `late${i}`);
        c.stabilize();
      }
      c.cut.add('1-2').add('1-3').add('2-1').add('3-1');
      c.node(2).raw.leaderUnreachable();
      c.node(3).raw.leaderUnreachable();
      let ticks = 0;
      while (c.leader() === 1 || c.leader() === 0) {
        c.tick(2);
        c.tick(3);
        c.stabilize();
        ticks++;
        assert.ok(ticks <= 5, `seed ${seed}: no new leader after ${ticks} ticks (a split vote waits out an election timeout)`);
      }
      if (seed % 2 === 0) assert.equal(c.leader(), 2, `seed ${seed}: the follower with the longer log leads`);
    }
  });
});

describe('§5.3 log replication', () => {
  test('the leader replicates and commits; every node applies the same entries in order', () => {
    const c = threeNodes();
    for (let i = 0; i < 20; i++) c.propose(1, `v${i}`);
    c.stabilize();
    c.tickAll();
    c.stabilize();
    const want = Array.from({ length: 20 }, (_, i) => `v${i}`);
    for (const id of [1, 2, 3]) assert.deepEqual(c.appliedText(id), want);
  });

  test('follower rejects mismatched prevLogTerm and hints where to probe', () => {
    const n = nodeWithLog(2, [1, 1, 2, 2, 2], 3, membership([1, 2, 3]));
    n.step(msg({ type: 'app', from: 1, to: 2, term: 4, index: 5, logTerm: 4, entries: [] }));
    const r = drain(n).find((m) => m.type === 'appResp')!;
    assert.equal(r.reject, true);
    assert.equal(r.index, 5);
    assert.equal(r.rejectHint, 5, 'all of term 2 < 4: the hint is the last index');
    assert.equal(r.logTerm, 2);
  });

  test('a conflicting uncommitted suffix is overwritten by the leader', () => {
    const n = nodeWithLog(2, [1, 2, 2], 3, membership([1, 2, 3]));
    const entries: Entry[] = [{ term: 3, index: 2, type: 'normal', data: enc('x') }];
    n.step(msg({ type: 'app', from: 1, to: 2, term: 3, index: 1, logTerm: 1, entries, commit: 2 }));
    const rd = n.ready();
    assert.deepEqual(rd.entries.map((e) => [e.index, e.term]), [[2, 3]]);
    assert.deepEqual(rd.committedEntries.map((e) => e.index), [1, 2]);
    n.advance();
    assert.equal(n.status().lastIndex, 2);
  });

  test('Figure 7: a new leader brings every divergent follower in line', () => {
    const m = membership([1, 2, 3, 4, 5, 6, 7]);
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers: Record<number, number[]> = {
      2: [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a)
      3: [1, 1, 1, 4], // (b)
      4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c)
      5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d)
      6: [1, 1, 1, 4, 4, 4, 4], // (e)
      7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f)
    };
    const nodes = new Map<number, RawNode>();
    nodes.set(1, nodeWithLog(1, leaderLog, 7, m, { checkQuorum: false }));
    for (const [id, log] of Object.entries(followers)) nodes.set(Number(id), nodeWithLog(Number(id), log, 7, m, { checkQuorum: false }));
    // Node 1 wins term 8 with votes from a, b, c (e, f would also grant).
    nodes.get(1)!.campaign();
    let queue: Message[] = [];
    const pump = () => {
      for (let round = 0; round < 200; round++) {
        for (const n of nodes.values()) queue.push(...drain(n));
        if (queue.length === 0) return;
        const batch = queue;
        queue = [];
        for (const x of batch) {
          // (d) is partitioned so the leader is not d (which has more entries).
          if (x.to === 5 && x.type !== 'app' && x.type !== 'heartbeat') continue;
          nodes.get(x.to)?.step(x);
        }
      }
    };
    pump();
    const leader = nodes.get(1)!;
    assert.equal(leader.status().role, 'leader');
    for (let i = 0; i < 3; i++) {
      leader.tick();
      pump();
    }
    const want = leader.status().lastIndex;
    const termsOf = (n: RawNode) => Array.from({ length: n.status().lastIndex }, (_, i) => n.entry(i + 1)!.term);
    for (const [id, n] of nodes) {
      assert.equal(n.status().lastIndex, want, `node ${id} log length`);
      assert.deepEqual(termsOf(n), termsOf(leader), `node ${id} log terms`);
      assert.equal(n.status().commit, want, `node ${id} commit`);
    }
  });
});

describe('§5.4.2 Figure 8: committing entries from previous terms', () => {
  function figure8(mutation?: RaftConfig['testMutation']) {
    const m = membership([1, 2, 3, 4, 5]);
    // S1 leads term 2 and replicated index 2 (term 2) only to S2; S5 led term 3
    // with index 2 (term 3) only on itself. Now S1 leads term 4 (votes 1,2,3,4).
    const cfg = { checkQuorum: false, ...(mutation ? { testMutation: mutation } : {}) };
    const s1 = nodeWithLog(1, [1, 2], 3, m, cfg);
    const s3 = nodeWithLog(3, [1], 3, m, cfg);
    s1.campaign();
    let out = drain(s1);
    const preVotes = out.filter((x) => x.type === 'preVote');
    for (const pv of preVotes) s1.step(msg({ type: 'preVoteResp', from: pv.to, to: 1, term: pv.term }));
    out = drain(s1);
    for (const v of out.filter((x) => x.type === 'vote')) s1.step(msg({ type: 'voteResp', from: v.to, to: 1, term: v.term }));
    assert.equal(s1.status().role, 'leader');
    assert.equal(s1.status().term, 4);
    out = drain(s1);
    // S1 replicates index 2 (term 2) to S3 but the no-op (index 3, term 4) is lost.
    s3.step(msg({ type: 'app', from: 1, to: 3, term: 4, index: 1, logTerm: 1, entries: [s1.entry(2)!], commit: s1.status().commit }));
    const ack = drain(s3).find((x) => x.type === 'appResp')!;
    assert.equal(ack.reject, false);
    assert.equal(ack.index, 2);
    s1.step(ack);
    s1.step(msg({ type: 'appResp', from: 2, to: 1, term: 4, index: 2 }));
    drain(s1);
    return s1.status().commit;
  }

  test('an entry from a previous term stored on a majority is not committed by counting', () => {
    assert.equal(figure8(), 0);
  });

  test('the commitPreviousTermByCounting mutation does commit it (the check matters)', () => {
    assert.equal(figure8('commitPreviousTermByCounting'), 2);
  });
});

describe('persistence order', () => {
  test('a single-node leader commits its entry only after advance (after its own fsync)', () => {
    const c = new MemCluster({ voters: [1] });
    c.elect(1);
    const n = c.node(1).raw;
    const { index } = n.propose(enc('x'));
    const rd = n.ready();
    assert.equal(rd.entries.at(-1)?.index, index);
    assert.ok(rd.committedEntries.every((e) => e.index < index), 'not committed before persist');
    n.advance();
    const rd2 = n.ready();
    assert.deepEqual(rd2.committedEntries.map((e) => e.index), [index]);
    n.advance();
  });

  test('a vote is sent only in the same Ready as the hard state that records it (mustSync)', () => {
    const n = nodeWithLog(1, [], 1, membership([1, 2, 3]), { checkQuorum: false });
    n.step(msg({ type: 'vote', from: 2, to: 1, term: 2 }));
    const rd = n.ready();
    assert.equal(rd.hardState?.vote, 2);
    assert.equal(rd.mustSync, true);
    assert.ok(rd.messages.some((m) => m.type === 'voteResp' && !m.reject));
    n.advance();
  });

  test('calling ready() twice without advance() is a bug and throws', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.node(1).raw.ready();
    assert.throws(() => c.node(1).raw.ready(), /invariant/);
  });

  test('a restarted node recovers from its durable state and catches up', () => {
    const c = threeNodes();
    for (let i = 0; i < 5; i++) c.propose(1, `a${i}`);
    c.stabilize();
    c.cut.add('1-3');
    for (let i = 0; i < 5; i++) c.propose(1, `b${i}`);
    c.stabilize();
    c.restart(3);
    c.cut.clear();
    for (let i = 0; i < 3; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.deepEqual(c.appliedText(3), c.appliedText(1));
    assert.equal(c.appliedText(3).length, 10);
  });
});

describe('a follower whose log went backwards (lost tail)', () => {
  function loseTail(c: MemCluster, id: number, keep: number): void {
    const n = c.node(id);
    n.entries = n.entries.filter((e) => e.index <= keep);
    n.hardState = { ...n.hardState, commit: Math.min(n.hardState.commit, keep) };
    c.restart(id);
  }

  test('an idle leader learns of it from the heartbeat, reports it diverged, and re-replicates until it is back', () => {
    const c = threeNodes();
    for (let i = 0; i < 6; i++) c.propose(1, `a${i}`);
    c.stabilize();
    const before = c.node(1).raw.status().progress.find((p) => p.id === 3)!;
    assert.ok(before.match >= 7 && !before.diverged);
    loseTail(c, 3, 3);
    c.cut.add('3-1'); // hold 3's answers until the leader has sent one heartbeat round
    c.tick(1);
    c.stabilize();
    c.cut.clear();
    c.tick(1);
    c.stabilize((m) => m.type === 'heartbeat' || m.type === 'heartbeatResp');
    const during = c.node(1).raw.status().progress.find((p) => p.id === 3)!;
    assert.equal(during.diverged, true, 'the leader marks the follower diverged');
    assert.ok(during.match < before.match, `match went back from ${before.match} to ${during.match}`);
    for (let i = 0; i < 3; i++) {
      c.tick(1);
      c.stabilize();
    }
    const after = c.node(1).raw.status().progress.find((p) => p.id === 3)!;
    assert.equal(after.diverged, false);
    assert.equal(after.match, c.node(1).raw.status().lastIndex);
    assert.deepEqual(c.appliedText(3), c.appliedText(1));
  });

  test('a probe rejected below the match index marks it diverged instead of probing the same index forever', () => {
    const c = threeNodes();
    for (let i = 0; i < 4; i++) c.propose(1, `a${i}`);
    c.stabilize();
    loseTail(c, 3, 2);
    c.propose(1, 'b');
    c.stabilize((m) => !(m.type === 'appResp' && m.from === 3 && !m.reject));
    const pr = c.node(1).raw.status().progress.find((p) => p.id === 3)!;
    assert.equal(pr.diverged, true);
    for (let i = 0; i < 3; i++) {
      c.tick(1);
      c.stabilize();
    }
    assert.deepEqual(c.appliedText(3), c.appliedText(1));
    assert.equal(c.node(1).raw.status().progress.find((p) => p.id === 3)!.diverged, false);
  });
});

describe('a node that came back with a new data dir (amnesia)', () => {
  const voteReq = (term: number) => msg({ type: 'vote', from: 1, to: 3, term, logTerm: 0, index: 0 });
  const recorded = (inc3: string | undefined): Membership => membership([1, 2], [{ id: 3, role: 'voter', ...(inc3 ? { incarnation: inc3 } : {}) }]);

  test('when its membership records another incarnation for it, it grants no vote and never campaigns', () => {
    const n = nodeWithLog(3, [], 0, recorded('old'), { incarnation: 'new' });
    n.step(voteReq(5));
    const resp = drain(n).find((m) => m.type === 'voteResp')!;
    assert.equal(resp.reject, true, 'vote refused');
    for (let i = 0; i < 100; i++) n.tick();
    assert.ok(!drain(n).some((m) => m.type === 'preVote' || m.type === 'vote'), 'no campaign');
    // The same node whose record matches (or that has none) votes as usual.
    for (const m of [recorded('new'), recorded(undefined)]) {
      const ok = nodeWithLog(3, [], 0, m, { incarnation: 'new' });
      ok.step(voteReq(5));
      assert.equal(drain(ok).find((x) => x.type === 'voteResp')!.reject, false);
    }
  });

  test('told by a peer that it is rejoining (setRejoining), it withholds its vote until cleared', () => {
    const n = nodeWithLog(3, [], 0, recorded(undefined), { incarnation: 'new' });
    n.setRejoining(true);
    n.step(voteReq(5));
    assert.equal(drain(n).find((m) => m.type === 'voteResp')!.reject, true);
    n.step(msg({ type: 'preVote', from: 1, to: 3, term: 7, logTerm: 0, index: 0 }));
    assert.equal(drain(n).find((m) => m.type === 'preVoteResp')!.reject, true);
    n.setRejoining(false);
    n.step(voteReq(9));
    assert.equal(drain(n).find((m) => m.type === 'voteResp')!.reject, false);
  });
});

describe('§6.4 ReadIndex', () => {
  test('a read is served at the commit index only after a quorum confirms leadership', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    const commit = c.node(1).raw.status().commit;
    c.node(1).raw.readIndex(7);
    c.processReady();
    assert.equal(c.node(1).readStates.length, 0, 'not before heartbeat acks');
    c.stabilize();
    assert.deepEqual(c.node(1).readStates, [{ index: commit, ctx: 7 }]);
  });

  test('a deposed leader cut off from the quorum never serves a read', () => {
    const c = threeNodes();
    c.cut.add('1-2').add('1-3').add('2-1').add('3-1');
    c.node(1).raw.readIndex(9);
    for (let i = 0; i < 30; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.equal(c.node(1).readStates.length, 0);
    assert.deepEqual(c.node(1).droppedReads, [9], 'the read fails when leadership is lost');
  });

  test('one read round in flight at a time: reads that arrive meanwhile share the next round', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    const leader = c.node(1);
    const heartbeats = () => c.inflight.filter((m) => m.type === 'heartbeat');
    leader.raw.readIndex(1);
    c.processReady();
    const round1 = heartbeats();
    assert.equal(round1.length, 2, 'one heartbeat per follower');
    leader.raw.readIndex(2);
    c.processReady();
    leader.raw.readIndex(3);
    c.processReady();
    assert.equal(heartbeats().length, 2, 'no second round while the first is unconfirmed');
    c.deliver(); // the followers get round 1
    c.processReady();
    c.deliver(); // the leader gets their answers
    c.processReady();
    assert.deepEqual(leader.readStates.map((r) => r.ctx), [1]);
    const round2 = heartbeats();
    assert.equal(round2.length, 2, 'one round for reads 2 and 3');
    assert.ok(round2.every((m) => m.context > round1[0]!.context));
    c.stabilize();
    assert.deepEqual(leader.readStates.map((r) => r.ctx), [1, 2, 3]);
  });

  test('a read is never confirmed by a round sent before it arrived, even when the periodic heartbeat repeats that round', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    const leader = c.node(1);
    leader.raw.readIndex(1);
    c.processReady();
    c.inflight = []; // round 1 is lost on the way
    leader.raw.readIndex(2); // arrives after round 1 left
    c.tick(1); // the periodic heartbeat carries round 1 again
    c.processReady();
    const repeated = c.inflight.filter((m) => m.type === 'heartbeat');
    assert.equal(repeated.length, 2);
    leader.raw.readIndex(3); // arrives after the periodic heartbeat left
    c.deliver();
    c.processReady();
    c.deliver(); // the acknowledgements of the periodic heartbeat
    c.processReady();
    assert.deepEqual(leader.readStates.map((r) => r.ctx), [1], 'reads 2 and 3 wait for a round sent after them');
    assert.ok(c.inflight.some((m) => m.type === 'heartbeat' && m.context > repeated[0]!.context), 'their round is on its way');
    c.stabilize();
    assert.deepEqual(leader.readStates.map((r) => r.ctx), [1, 2, 3]);
  });

  test('a new leader defers reads until it commits an entry of its term', () => {
    const c = new MemCluster({ voters: [1, 2, 3] });
    c.node(1).raw.campaign();
    // Deliver only votes: the leader is elected but its no-op is not acked.
    c.stabilize((m) => m.type !== 'appResp');
    assert.equal(c.leader(), 1);
    c.node(1).raw.readIndex(3);
    c.stabilize((m) => m.type !== 'appResp');
    assert.equal(c.node(1).readStates.length, 0);
    c.tickAll();
    c.stabilize();
    assert.equal(c.node(1).readStates.length, 1);
    assert.equal(c.node(1).readStates[0]!.index, c.node(1).raw.status().commit);
  });
});

describe('roles and quorum', () => {
  test('observers vote and count but do not campaign while a voter could; learners never vote and are not counted', () => {
    const c = new MemCluster({ voters: [1], observers: [2, 3], learners: [4] });
    // Two election timeouts at most (timeouts are randomized in [T, 2T), T = 10 ticks): a voter would have campaigned.
    for (let i = 0; i < 20; i++) {
      c.tick(2);
      c.tick(3);
      c.tick(4);
      c.stabilize();
    }
    assert.equal(c.leader(), 0, 'no observer or learner campaigns within two election timeouts');
    assert.equal(c.node(2).raw.status().term, 0);
    assert.equal(c.elect(1), 1);
    c.cut.add('1-2').add('1-3');
    c.propose(1, 'x');
    c.stabilize();
    assert.deepEqual(c.appliedText(4), [], 'a learner ack does not make a quorum');
    c.cut.clear();
    c.tickAll();
    c.stabilize();
    assert.deepEqual(c.appliedText(4), ['x']);
  });

  test('an observer holding the only copy of a committed entry stands in as leader, takes no proposals, and hands over to the voter', () => {
    // Voters 1 and 2, observer 3. Leader 1 commits "x" with the observer's ack alone, then dies: voter 2 lacks "x",
    // so the observer (whose log is longer) refuses it every vote, and observers used never to campaign: no leader ever.
    const c = new MemCluster({ voters: [1, 2], observers: [3] });
    assert.equal(c.elect(1), 1);
    c.cut.add('1-2');
    c.propose(1, 'x');
    c.stabilize();
    assert.deepEqual(c.appliedText(1), ['x'], 'committed by leader + observer');
    assert.deepEqual(c.appliedText(2), []);
    c.nodes.delete(1);
    c.cut.clear();
    for (let i = 0; i < 200 && (c.leader() === 0 || c.node(c.leader()).raw.status().membership.members.find((m) => m.id === c.leader())?.role !== 'voter'); i++) {
      c.tick(2);
      c.tick(3);
      c.stabilize();
      if (c.leader() === 3) {
        assert.throws(() => c.propose(3, 'y'), { code: 'not_leader' }, 'a stand-in leader takes no proposals');
      }
    }
    assert.equal(c.leader(), 2, 'the voter leads after the hand-over');
    assert.deepEqual(c.appliedText(2), ['x'], 'the entry only the observer held survived');
    c.propose(2, 'y');
    c.stabilize();
    assert.deepEqual(c.appliedText(3), ['x', 'y']);
  });

  test('an observer never stands in while a voter that can win is alive', () => {
    const c = new MemCluster({ voters: [1, 2, 3], observers: [4], seed: 7 });
    assert.equal(c.elect(1), 1);
    c.propose(1, 'x');
    c.stabilize();
    c.nodes.delete(1);
    let observerLed = false;
    for (let i = 0; i < 100 && c.leader() === 0; i++) {
      c.tickAll();
      c.stabilize();
      if (c.leader() === 4) observerLed = true;
    }
    assert.ok([2, 3].includes(c.leader()), `a voter leads (leader ${c.leader()})`);
    assert.equal(observerLed, false);
  });


  test('writeQuorum above a majority waits for that many acks', () => {
    const c = threeNodes({ writeQuorum: 3 });
    c.cut.add('1-3');
    c.propose(1, 'x');
    c.stabilize();
    assert.deepEqual(c.appliedText(1), [], 'two of three is not enough');
    c.cut.clear();
    c.tickAll();
    c.stabilize();
    assert.deepEqual(c.appliedText(1), ['x']);
  });

  test('back-pressure: proposals beyond maxUncommittedBytes fail with Overloaded, also after a term change', () => {
    const c = threeNodes({ maxUncommittedBytes: 100, checkQuorum: false });
    c.cut.add('1-3').add('3-1').add('2-1');
    c.propose(1, 'a'.repeat(60));
    assert.throws(() => c.propose(1, 'b'.repeat(60)), { code: 'overloaded' });
    c.stabilize();
    // Node 1 is lost; node 2, holding node 1's uncommitted entry, takes over.
    c.cut.add('1-2').add('2-1');
    c.cut.delete('1-3');
    c.cut.delete('3-1');
    c.cut.add('1-3').add('3-1');
    c.node(2).raw.campaign();
    c.stabilize((m) => m.type !== 'appResp');
    assert.equal(c.leader(), 2);
    assert.equal(c.node(2).raw.status().uncommittedBytes, 60, 'the old term entry still counts');
    assert.throws(() => c.propose(2, 'c'.repeat(60)), { code: 'overloaded' });
  });
});

describe('leadership transfer', () => {
  test('TimeoutNow moves leadership to a caught-up voter; proposals are refused meanwhile', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    c.cut.add('1-2');
    c.node(1).raw.transferLeadership(2);
    assert.throws(() => c.propose(1, 'y'), { code: 'transfer_in_progress' });
    c.cut.clear();
    c.tickAll();
    c.stabilize();
    assert.equal(c.leader(), 2);
    assert.equal(c.node(1).raw.status().role, 'follower');
  });

  test('a transfer that cannot finish is aborted after the transfer timeout', () => {
    const c = threeNodes();
    c.cut.add('1-2').add('2-1');
    c.node(1).raw.transferLeadership(2);
    for (let i = 0; i < 10; i++) {
      c.tick(1);
      c.stabilize();
    }
    assert.equal(c.node(1).raw.status().leadTransferee, 0);
    c.propose(1, 'accepted again');
  });

  test('a late TimeoutNow reaching a follower whose log is behind is ignored (no futile election)', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    const term = c.node(1).raw.status().term;
    const last = c.node(1).raw.status().lastIndex;
    c.node(2).raw.step(msg({ type: 'timeoutNow', from: 1, to: 2, term, index: last + 5 }));
    c.stabilize();
    assert.equal(c.leader(), 1);
    assert.equal(c.node(2).raw.status().term, term, 'no campaign');
    c.node(2).raw.step(msg({ type: 'timeoutNow', from: 1, to: 2, term, index: last }));
    c.stabilize();
    assert.equal(c.leader(), 2, 'a current one is obeyed');
  });

  test('observers and learners refuse to lead', () => {
    const c = new MemCluster({ voters: [1, 2], observers: [3], learners: [4] });
    c.elect(1);
    assert.throws(() => c.node(1).raw.transferLeadership(3), { code: 'invalid_transfer' });
    assert.throws(() => c.node(1).raw.transferLeadership(4), { code: 'invalid_transfer' });
    c.node(3).raw.step(msg({ type: 'timeoutNow', from: 1, to: 3, term: c.node(1).raw.status().term }));
    c.stabilize();
    assert.equal(c.leader(), 1);
  });
});

describe('§4 membership changes', () => {
  test('add a learner, promote it to voter, then remove a voter; ids are never reused', () => {
    const c = threeNodes();
    c.stabilize();
    c.addNode(4);
    c.node(1).raw.proposeConfChange({ op: 'add', id: 4, role: 'learner' });
    c.stabilize();
    c.tickAll();
    c.stabilize();
    c.propose(1, 'x');
    c.stabilize();
    assert.deepEqual(c.appliedText(4), ['x']);
    c.node(1).raw.proposeConfChange({ op: 'setRole', id: 4, role: 'voter' });
    c.stabilize();
    c.node(1).raw.proposeConfChange({ op: 'remove', id: 3 });
    c.stabilize();
    c.tickAll();
    c.stabilize();
    const m = c.node(1).raw.status().membership;
    assert.deepEqual(m.members.map((x) => [x.id, x.role]), [[1, 'voter'], [2, 'voter'], [4, 'voter']]);
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'add', id: 3, role: 'voter' }), { code: 'invalid_conf_change' });
  });

  test('one pending change at a time, and none before the leader commits in its term', () => {
    const c = new MemCluster({ voters: [1, 2, 3] });
    c.node(1).raw.campaign();
    c.stabilize((m) => m.type !== 'appResp');
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'add', id: 4, role: 'voter' }), { code: 'conf_change_in_progress' });
    c.tickAll();
    c.stabilize();
    c.cut.add('1-2').add('1-3');
    c.node(1).raw.proposeConfChange({ op: 'add', id: 4, role: 'voter' });
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'add', id: 5, role: 'voter' }), { code: 'conf_change_in_progress' });
  });

  test('a removed leader steps down once its removal commits', () => {
    const c = threeNodes();
    c.node(1).raw.proposeConfChange({ op: 'remove', id: 1 });
    c.stabilize();
    c.tickAll();
    c.stabilize();
    assert.notEqual(c.node(1).raw.status().role, 'leader');
    for (let i = 0; i < 40 && (c.leader() === 0 || c.leader() === 1); i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.ok([2, 3].includes(c.leader()));
    c.propose(c.leader(), 'after');
    c.stabilize();
    assert.deepEqual(c.appliedText(2).at(-1), 'after');
  });

  test('a transfer and a removal of its target never overlap: each refuses the other', () => {
    const c = threeNodes();
    c.cut.add('1-3');
    c.node(1).raw.transferLeadership(3);
    assert.equal(c.node(1).raw.status().leadTransferee, 3);
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'remove', id: 3 }), { code: 'transfer_in_progress' });
    // Once the transfer times out, the removal is accepted; a transfer to the
    // node being removed (already out of the membership in the log) is refused.
    for (let i = 0; i < 10; i++) c.tick(1);
    assert.equal(c.node(1).raw.status().leadTransferee, 0, 'transfer aborted after its timeout');
    c.node(1).raw.proposeConfChange({ op: 'remove', id: 3 });
    assert.throws(() => c.node(1).raw.transferLeadership(3), { code: 'invalid_transfer' });
  });

  test('setMember records a member\'s metadata through the log; invalid records are refused naming the field', () => {
    const c = threeNodes();
    c.stabilize();
    c.node(1).raw.proposeConfChange({ op: 'setMember', id: 2, member: { id: 2, role: 'voter', incarnation: 'abc', apiUrl: 'http://127.0.0.1:7102', name: 'n2' } });
    c.stabilize();
    c.tickAll();
    c.stabilize();
    for (const id of [1, 2, 3]) {
      const mem = c.node(id).raw.status().membership.members.find((x) => x.id === 2);
      assert.deepEqual(mem, { id: 2, role: 'voter', incarnation: 'abc', apiUrl: 'http://127.0.0.1:7102', name: 'n2' });
    }
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'setMember', id: 2, member: { id: 2, role: 'voter', incarnation: '' } }), /incarnation must be a non-empty string/);
    assert.throws(() => c.node(1).raw.proposeConfChange({ op: 'setMember', id: 2, member: { id: 3, role: 'voter' } }), /differs/);
    // setRole keeps the recorded facts but ends a catch-up gate.
    c.node(1).raw.proposeConfChange({ op: 'setMember', id: 3, member: { id: 3, role: 'learner', incarnation: 'new', catchUpTo: 5 } });
    c.stabilize();
    c.tickAll();
    c.stabilize();
    c.node(1).raw.proposeConfChange({ op: 'setRole', id: 3, role: 'voter' });
    c.stabilize();
    assert.deepEqual(c.node(1).raw.status().membership.members.find((x) => x.id === 3), { id: 3, role: 'voter', incarnation: 'new' });
  });

  test('a conf entry with malformed data is rejected with a clear error', () => {
    const m = membership([1]);
    const bad: Entry = { term: 1, index: 1, type: 'conf', data: enc('{"change":{"op":"add","id":-1},"membership":{"members":[],"removed":[]}}') };
    assert.throws(
      () => new RawNode({ id: 1, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(1) },
        { hardState: { term: 1, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: m }, entries: [bad] }),
      /positive integer/,
    );
    assert.ok(encodeConfEntry({ change: { op: 'remove', id: 2 }, membership: m }).length > 0);
  });
});

describe('log compaction and snapshots', () => {
  test('the core asks for a snapshot at the entry threshold and keeps trailing entries', () => {
    const c = threeNodes({ snapshotEntries: 20, trailingEntries: 5 });
    for (let i = 0; i < 50; i++) c.propose(1, `v${i}`);
    c.stabilize();
    c.tickAll();
    c.stabilize();
    const n = c.node(1);
    assert.ok(n.snapshotsTaken >= 1);
    const st = n.raw.status();
    assert.ok(st.firstIndex > 1, 'log compacted');
    assert.equal(st.firstIndex - 1, n.raw.status().firstIndex - 1);
    assert.ok(n.snapshot.index - (st.firstIndex - 1) <= 5, 'at most trailingEntries kept before the snapshot');
  });

  test('the trailing entries are bounded in bytes too (large entries such as file chunks)', () => {
    const c = threeNodes({ snapshotEntries: 20, trailingEntries: 15, trailingBytes: 3 * 100 });
    for (let i = 0; i < 50; i++) c.propose(1, 'x'.repeat(100));
    c.stabilize();
    c.tickAll();
    c.stabilize();
    const n = c.node(1);
    assert.ok(n.snapshotsTaken >= 1);
    const st = n.raw.status();
    const kept = n.snapshot.index - (st.firstIndex - 1);
    assert.ok(kept <= 3, `at most trailingBytes of entries kept before the snapshot (kept ${kept} entries of 100 bytes)`);
    assert.ok(kept >= 2, `the newest entries that fit are kept (kept ${kept})`);
  });

  test('the bytes threshold grows with the snapshot\'s size up to snapshotBytesMax, so a large state is not copied after every few writes', () => {
    // A state that grows by 100 bytes per entry: a fixed 1000-byte threshold would snapshot every 10 entries.
    const c = threeNodes({ snapshotEntries: 1_000_000, snapshotBytes: 1000, snapshotBytesMax: 4000 });
    const at: number[] = [];
    for (let i = 0; i < 200; i++) {
      c.propose(1, 'x'.repeat(100));
      c.stabilize();
      const idx = c.node(1).snapshot.index;
      if (idx > (at.at(-1) ?? 0)) at.push(idx);
    }
    const gaps = at.map((x, i) => x - (at[i - 1] ?? 0));
    // About 10, 10, 20, 40, then 40 each: the threshold follows the state (1000, 2000, 4000 bytes) and stops at the max.
    assert.ok(gaps[0]! <= 11 && gaps[1]! <= 11, `the first snapshots come at snapshotBytes (gaps ${gaps.join(', ')})`);
    assert.ok(gaps.slice(3).every((g) => g >= 39 && g <= 41), `then one snapshot per snapshotBytesMax of writes (gaps ${gaps.join(', ')})`);
    assert.ok(at.length <= 8, `${at.length} snapshots for 200 entries, not 20`);
  });

  test('a follower behind the compacted point is sent a snapshot and catches up', () => {
    const c = threeNodes({ snapshotEntries: 10, trailingEntries: 2 });
    c.cut.add('1-3').add('3-1');
    for (let i = 0; i < 40; i++) {
      c.propose(1, `v${i}`);
      c.stabilize();
    }
    assert.ok(c.node(1).raw.status().firstIndex > 3);
    c.cut.clear();
    for (let i = 0; i < 5; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.deepEqual(c.appliedText(3), c.appliedText(1));
    assert.equal(c.appliedText(3).length, 40);
  });
});

describe('snapshots while catching up', () => {
  /** Follower 2 of leader 1 (term 1), snapshotting every 10 entries; `append` sends it entries from..to with the leader's commit, and returns the snapshot requests of its Readys. */
  function follower(snapshotEntries = 10) {
    const n = new RawNode({ id: 2, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(2), snapshotEntries },
      { hardState: { term: 1, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: membership([1, 2, 3]) }, entries: [] });
    const append = (from: number, to: number, commit: number): number[] => {
      const entries: Entry[] = [];
      for (let i = from; i <= to; i++) entries.push({ term: 1, index: i, type: 'normal', data: enc(`e${i}`) });
      n.step(msg({ type: 'app', from: 1, to: 2, term: 1, index: from - 1, logTerm: from === 1 ? 0 : 1, entries, commit }));
      const asked: number[] = [];
      while (n.hasReady()) {
        const rd = n.ready();
        if (rd.snapshotRequest !== undefined) asked.push(rd.snapshotRequest);
        n.advance();
      }
      return asked;
    };
    return { n, append };
  }

  test('a follower behind the leader\'s commit applies first and asks for its snapshot once caught up', () => {
    const { n, append } = follower();
    assert.deepEqual(append(1, 15, 40), [], 'behind the leader (commit 40, log ends at 15): no snapshot yet');
    assert.deepEqual(append(16, 30, 40), []);
    assert.equal(n.status().applied, 30);
    assert.deepEqual(append(31, 40, 40), [40], 'caught up: one snapshot, at the end');
  });

  test('with a large threshold, a follower within 256 entries of the leader\'s commit is no longer catching up', () => {
    const { append } = follower(2000);
    assert.deepEqual(append(1, 2000, 2400), [], '400 behind: still catching up');
    // The request names what was applied when it was made: before this batch.
    assert.deepEqual(append(2001, 2200, 2400), [2000], '200 behind: the snapshot is taken now, not after the last entries');
  });

  test('with snapshotJitter 0.5, each node snapshots after 0.75 to 1.25 times the entries threshold, drawn anew each period, and nodes differ', () => {
    const at = (seed: number): number[] => {
      const n = new RawNode({ id: 2, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(seed), snapshotEntries: 100, snapshotJitter: 0.5 },
        { hardState: { term: 1, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: membership([1, 2, 3]) }, entries: [] });
      const asked: number[] = [];
      for (let i = 1; i <= 2000; i++) {
        n.step(msg({ type: 'app', from: 1, to: 2, term: 1, index: i - 1, logTerm: i === 1 ? 0 : 1, entries: [{ term: 1, index: i, type: 'normal', data: enc(`e${i}`) }], commit: i }));
        while (n.hasReady()) {
          const rd = n.ready();
          if (rd.snapshotRequest !== undefined) asked.push(rd.snapshotRequest);
          n.advance();
        }
      }
      return asked;
    };
    const a = at(1);
    const b = at(2);
    const gaps = a.map((x, i) => x - (i === 0 ? 0 : a[i - 1]!));
    assert.ok(gaps.every((g) => g >= 75 && g <= 125), `every period within [75, 125] entries: ${gaps.join(', ')}`);
    assert.ok(new Set(gaps).size > 3, `periods differ from one to the next: ${gaps.join(', ')}`);
    assert.notDeepEqual(a, b, 'two nodes (two random streams) snapshot at different indexes');
    // The bytes threshold (memory held for large entries) is not jittered: 1000 bytes of 100-byte entries, every 10.
    const big = new RawNode({ id: 2, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(3), snapshotEntries: 1000, snapshotBytes: 1000, snapshotJitter: 0.5 },
      { hardState: { term: 1, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: membership([1, 2, 3]) }, entries: [] });
    const asked: number[] = [];
    for (let i = 1; i <= 50; i++) {
      big.step(msg({ type: 'app', from: 1, to: 2, term: 1, index: i - 1, logTerm: i === 1 ? 0 : 1, entries: [{ term: 1, index: i, type: 'normal', data: new Uint8Array(100) }], commit: i }));
      while (big.hasReady()) {
        const rd = big.ready();
        if (rd.snapshotRequest !== undefined) asked.push(rd.snapshotRequest);
        big.advance();
      }
    }
    assert.deepEqual(asked, [10, 20, 30, 40, 50]);
  });

  test('the deferral is bounded: past 4 times the threshold it snapshots anyway', () => {
    const { append } = follower();
    assert.deepEqual(append(1, 39, 1000), []);
    assert.deepEqual(append(40, 45, 1000), [45], 'at 4 x snapshotEntries applied, it no longer waits');
  });

  test('a follower that keeps up snapshots at the threshold as before, also when a little behind the leader\'s commit', () => {
    const { append } = follower();
    assert.deepEqual(append(1, 5, 5), []);
    assert.deepEqual(append(6, 11, 11), [11]);
    // Pipelined: the leader's commit (the other follower acknowledged) one entry beyond this batch.
    assert.deepEqual(append(12, 21, 22), [21], 'one entry behind the leader\'s commit is not catching up');
  });
});

describe('setAutoCampaign(false): manual failover, paused, drained', () => {
  test('a node with auto-campaign off never pre-votes or campaigns on election timeout once something committed', () => {
    const n = nodeWithLog(2, [1, 1], 1, membership([1, 2, 3]));
    n.step(msg({ type: 'heartbeat', from: 1, to: 2, term: 1, commit: 2 }));
    drain(n);
    assert.equal(n.status().lead, 1);
    n.setAutoCampaign(false);
    for (let i = 0; i < 200; i++) n.tick();
    const out = drain(n);
    assert.ok(!out.some((m) => m.type === 'preVote' || m.type === 'vote'), 'no pre-vote, no vote request');
    assert.equal(n.status().role, 'follower');
    assert.equal(n.status().term, 1, 'term unchanged');
    assert.equal(n.status().lead, 0, 'a leader not heard from for an election timeout is forgotten');
    n.setAutoCampaign(true);
    for (let i = 0; i < 20; i++) n.tick();
    assert.ok(drain(n).some((m) => m.type === 'preVote'), 'campaigns again once switched back on');
  });

  test('it still votes, and campaigns (pre-vote first) when told to', () => {
    const n = nodeWithLog(2, [1, 1], 1, membership([1, 2, 3]));
    n.step(msg({ type: 'heartbeat', from: 1, to: 2, term: 1, commit: 2 }));
    drain(n);
    n.setAutoCampaign(false);
    for (let i = 0; i < 30; i++) n.tick();
    drain(n);
    n.step(msg({ type: 'preVote', from: 3, to: 2, term: 2, logTerm: 1, index: 2 }));
    assert.equal(drain(n).find((m) => m.type === 'preVoteResp')!.reject, false, 'grants a pre-vote');
    n.step(msg({ type: 'vote', from: 3, to: 2, term: 2, logTerm: 1, index: 2 }));
    assert.equal(drain(n).find((m) => m.type === 'voteResp')!.reject, false, 'grants a vote');
    n.campaign();
    const sent = drain(n);
    assert.equal(sent.filter((m) => m.type === 'preVote').length, 2, 'campaign() pre-votes to both peers');
    assert.equal(n.status().role, 'preCandidate');
    // Nobody answers: the requested campaign ends as a follower, with no retry.
    for (let i = 0; i < 40; i++) n.tick();
    assert.ok(!drain(n).some((m) => m.type === 'preVote' || m.type === 'vote'));
    assert.equal(n.status().role, 'follower');
  });

  test('in a 3-node cluster with auto-campaign off everywhere, a dead leader is replaced only on campaign()', () => {
    const c = threeNodes();
    c.propose(1, 'x');
    c.stabilize();
    for (const id of [1, 2, 3]) c.node(id).raw.setAutoCampaign(false);
    c.cut.add('1-2').add('1-3').add('2-1').add('3-1');
    for (let i = 0; i < 100; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.equal(c.node(1).raw.status().role, 'follower', 'the isolated leader steps down (CheckQuorum)');
    assert.equal(c.node(2).raw.status().role, 'follower');
    assert.equal(c.node(3).raw.status().role, 'follower');
    const term = c.node(2).raw.status().term;
    c.node(3).raw.campaign();
    c.stabilize();
    assert.equal(c.node(2).raw.status().lead, 3);
    assert.equal(c.node(3).raw.status().role, 'leader');
    assert.equal(c.node(3).raw.status().term, term + 1);
  });

  test('switchover (TimeoutNow) still works with auto-campaign off', () => {
    const c = threeNodes();
    for (const id of [1, 2, 3]) c.node(id).raw.setAutoCampaign(false);
    c.node(1).raw.transferLeadership(2);
    c.stabilize();
    assert.equal(c.node(2).raw.status().role, 'leader');
  });

  test('a brand-new cluster (nothing committed) still elects its first leader with auto-campaign off', () => {
    const c = new MemCluster({ voters: [1, 2, 3] });
    for (const id of [1, 2, 3]) c.node(id).raw.setAutoCampaign(false);
    for (let i = 0; i < 40 && c.leader() === 0; i++) {
      c.tickAll();
      c.stabilize();
    }
    assert.notEqual(c.leader(), 0);
  });
});
