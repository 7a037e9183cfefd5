// quorate-test: serial (network namespaces with fixed names and addresses; see scripts/run-tests.mjs)
// The virtual IP in real network namespaces (./netns.ts): three node
// namespaces and a client namespace on a bridge, agents in the namespaces, a
// sampler of every node namespace's addresses every 10 ms.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { vipLeaseSeconds, VIP_MARGIN_MS } from '../../src/node/vip.js';
import { TOKEN } from './harness.js';
import { API_PORT, NsClient, NsCluster, VIP, VIP_CIDR, VipSampler, createNetwork, netnsUnavailable, nodeNs, removeLeftovers } from './netns.js';

const skip = netnsUnavailable();
if (skip) console.log(`# vip tests skipped: ${skip}`);
const VIP_URL = `http://${VIP}:${API_PORT}`;
const T_MS = vipLeaseSeconds(1000) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<V>(what: string, fn: () => Promise<V | undefined> | V | undefined, ms = 30_000): Promise<V> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Ms from the fault until the writer in the client namespace has a write acknowledged after the VIP moved. */
async function writesResume(client: NsClient, faultAt: number, movedAt: number): Promise<number> {
  const at = await until('writes through the VIP resume', async () => {
    const r = await client.call({ op: 'write-status' });
    const last = r['lastAckAt'] as number;
    return last > movedAt ? last : undefined;
  });
  return at - faultAt;
}

async function leader(c: NsCluster, client: NsClient, exclude: number[] = []): Promise<number | undefined> {
  for (let i = 0; i < c.nodes.length; i++) {
    if (exclude.includes(i) || c.nodes[i]!.exited) continue;
    if ((await client.http(c.nodes[i]!.url, 'GET', '/system/health/leader')).status === 200) return i;
  }
  return undefined;
}

describe('virtual IP in network namespaces', { skip }, () => {
  let c: NsCluster | undefined;
  let client: NsClient | undefined;
  let sampler: VipSampler | undefined;
  const report: Record<string, unknown> = {};

  before(() => createNetwork());
  after(async () => {
    sampler?.stop();
    client?.close();
    await c?.stop();
    c?.cleanup();
    removeLeftovers();
    console.log(`# vip report ${JSON.stringify(report)}`);
  });

  test('the VIP follows the leader through kill -9, SIGSTOP/SIGCONT, a switchover and a partition of the leader, is never on two nodes, and a stale one is removed at start', async () => {
    // A stale address left by a crashed run, without a lifetime.
    execFileSync('ip', ['-n', nodeNs(1), 'addr', 'add', VIP_CIDR, 'dev', 'eth0']);
    sampler = new VipSampler([0, 1, 2].map(nodeNs));
    c = new NsCluster({});
    client = new NsClient();
    for (let i = 0; i < 3; i++) c.start(i);
    const cl = c;
    const cli = client;
    const smp = sampler;
    const l1 = await until('a leader', () => leader(cl, cli));
    await until(`the VIP on ${nodeNs(l1)}`, () => (smp.holder() === nodeNs(l1) ? true : undefined));
    assert.match(c.log(1), /"event":"vip_stale_removed"/, 'node2 removed the stale address at start');
    const st = await cli.http(VIP_URL, 'GET', '/v1/cluster/status');
    assert.equal(st.body['nodeName'], c.nodes[l1]!.name, 'the VIP reaches the leader');
    assert.equal((st.body['vip'] as { holding: boolean }).holding, true);

    await cli.call({ op: 'write-start', url: VIP_URL, prefix: 'vip', token: TOKEN });
    await sleep(1000);

    // kill -9 the leader: the address stays in its namespace's kernel until the lease runs out.
    let t = Date.now();
    c.signal(l1, 'SIGKILL');
    await c.waitExit(l1);
    const l2 = await until('a new leader after kill -9', () => leader(cl, cli, [l1]));
    const electedKill = Date.now() - t;
    await until(`the VIP on ${nodeNs(l2)}`, () => (smp.holder() === nodeNs(l2) ? true : undefined));
    report['killVipMoveMs'] = Date.now() - t;
    report['killElectionMs'] = electedKill;
    report['killWritesResumeMs'] = await writesResume(cli, t, t + (report['killVipMoveMs'] as number));
    c.start(l1);
    await until(`${c.nodes[l1]!.name} back`, async () => ((await cli.http(cl.nodes[l1]!.url, 'GET', '/system/health/standby')).status === 200 ? true : undefined));

    // SIGSTOP the new leader, then SIGCONT it once another node holds the address.
    t = Date.now();
    c.signal(l2, 'SIGSTOP');
    const l3 = await until('a new leader after SIGSTOP', () => leader(cl, cli, [l2]));
    await until(`the VIP on ${nodeNs(l3)}`, () => (smp.holder() === nodeNs(l3) ? true : undefined));
    report['pauseVipMoveMs'] = Date.now() - t;
    report['pauseWritesResumeMs'] = await writesResume(cli, t, t + (report['pauseVipMoveMs'] as number));
    c.signal(l2, 'SIGCONT');
    await sleep(3000);
    assert.equal(smp.holder(), nodeNs(l3), 'the resumed old leader did not take the address back');

    // A switchover hands the address over at once (the old leader released it first). Asked of the
    // leader's own address: an answer through the VIP cannot leave once the address is released.
    t = Date.now();
    const sw = await cli.http(c.nodes[l3]!.url, 'POST', '/v1/cluster/switchover', {});
    assert.equal(sw.status, 200, JSON.stringify(sw.body));
    const to = c.nodes.findIndex((n) => n.name === sw.body['to']);
    await until(`the VIP on ${nodeNs(to)} after the switchover`, () => (smp.holder() === nodeNs(to) ? true : undefined));
    report['switchoverVipMoveMs'] = Date.now() - t;
    assert.ok((report['switchoverVipMoveMs'] as number) < T_MS + VIP_MARGIN_MS, `a switchover does not wait out the lease (${String(report['switchoverVipMoveMs'])} ms)`);

    // Partition the leader (its link down): it loses its quorum and steps down; the others elect a leader that takes the address.
    await until(`${c.nodes[l3]!.name} back`, async () => ((await cli.http(cl.nodes[l3]!.url, 'GET', '/system/health/standby')).status === 200 ? true : undefined));
    t = Date.now();
    execFileSync('ip', ['-n', nodeNs(to), 'link', 'set', 'eth0', 'down']);
    try {
      const l5 = await until('a new leader after the partition', () => leader(cl, cli, [to]));
      await until(`the VIP on ${nodeNs(l5)}`, () => (smp.holder() === nodeNs(l5) ? true : undefined));
      report['partitionVipMoveMs'] = Date.now() - t;
      report['partitionWritesResumeMs'] = await writesResume(cli, t, t + (report['partitionVipMoveMs'] as number));
      assert.match(c.log(to), /"event":"vip_removed"[^\n]*"reason":"stopped leading with a quorum"/, 'the partitioned leader removed the address when it lost its quorum');
    } finally {
      execFileSync('ip', ['-n', nodeNs(to), 'link', 'set', 'eth0', 'up']);
    }
    await sleep(2000);

    const w = await cli.call({ op: 'write-stop' }) as { acked: string[]; unknown: string[]; failures: number; gaps: { fromMs: number; toMs: number }[] };
    report['writes'] = { acked: w.acked.length, unknown: w.unknown.length, failures: w.failures, gaps: w.gaps };
    assert.ok(w.acked.length > 20, `writes through the VIP were acknowledged (${w.acked.length})`);
    const longest = Math.max(0, ...w.gaps.map((g) => g.toMs - g.fromMs));
    report['longestWriteGapMs'] = longest;
    assert.ok(longest < 30_000, `writes through the VIP resumed within 30 s (longest gap ${longest} ms)`);
    // Every acknowledged write is there: one linearizable range read through the VIP (paged).
    const stored = new Map<string, string>();
    for (let after = ''; ;) {
      // A connection kept alive to the previous holder goes nowhere after the switchover: retry until one connects.
      const path = `/v1/kv?prefix=vip/&limit=10000${after !== '' ? `&startAfter=${encodeURIComponent(after)}` : ''}`;
      const r = await until('a range read through the VIP', async () => {
        const x = await cli.http(VIP_URL, 'GET', path);
        return x.status === 0 ? undefined : x;
      }, 15_000);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const items = r.body['items'] as { key: string; value: string }[];
      for (const it of items) stored.set(it.key, it.value);
      if (r.body['more'] !== true || items.length === 0) break;
      after = items.at(-1)!.key;
    }
    for (const key of w.acked) assert.equal(stored.get(key), key.split('/')[1], `${key} acknowledged, then ${stored.has(key) ? `holds ${stored.get(key)}` : 'missing'}`);
    report['samples'] = smp.rounds;
    report['timeline'] = smp.timeline.map((e) => e.holder || '-').join(' > ');
    assert.ok(smp.rounds > 500, `the sampler ran (${smp.rounds} rounds)`);
    assert.deepEqual(smp.doubles, [], 'never two holders at once');
  });
});

describe('vipScript and fenceScript in network namespaces', { skip }, () => {
  let c: NsCluster | undefined;
  let client: NsClient | undefined;
  let sampler: VipSampler | undefined;
  const report: Record<string, unknown> = {};

  before(() => createNetwork());
  after(async () => {
    sampler?.stop();
    client?.close();
    await c?.stop();
    c?.cleanup();
    removeLeftovers();
    console.log(`# fence report ${JSON.stringify(report)}`);
  });

  test('vipScript is called as add|remove IFACE ADDR; fenceScript runs against the old leader before the VIP moves, and a failing one holds it back', async () => {
    sampler = new VipSampler([0, 1, 2].map(nodeNs));
    c = new NsCluster({});
    const dir = c.root;
    const vipLog = join(dir, 'vip.log');
    const fenceLog = join(dir, 'fence.log');
    const failFlag = join(dir, 'fence-fails');
    writeFileSync(join(dir, 'vip.sh'), `#!/bin/sh
echo "$(date +%s%3N) $(ip netns identify $$) $* lifetime=$QUORATE_VIP_LIFETIME_SECONDS" >> ${vipLog}
case "$1" in
  add) exec ip -4 addr replace "$3" dev "$2" valid_lft "$QUORATE_VIP_LIFETIME_SECONDS" preferred_lft "$QUORATE_VIP_LIFETIME_SECONDS" ;;
  remove) ip -4 addr del "$3" dev "$2" 2>/dev/null; exit 0 ;;
esac
exit 2
`);
    writeFileSync(join(dir, 'fence.sh'), `#!/bin/sh
if [ -e ${failFlag} ]; then echo "$(date +%s%3N) $(ip netns identify $$) fail $*" >> ${fenceLog}; echo "power switch unreachable" >&2; exit 3; fi
echo "$(date +%s%3N) $(ip netns identify $$) ok $*" >> ${fenceLog}
`);
    chmodSync(join(dir, 'vip.sh'), 0o755);
    chmodSync(join(dir, 'fence.sh'), 0o755);
    for (const nd of c.nodes) {
      const cfg = JSON.parse(readFileSync(nd.configPath, 'utf8')) as { cluster: Record<string, unknown> };
      cfg.cluster = { ...cfg.cluster, vipScript: join(dir, 'vip.sh'), fenceScript: join(dir, 'fence.sh') };
      writeFileSync(nd.configPath, JSON.stringify(cfg, null, 2));
    }
    client = new NsClient();
    for (let i = 0; i < 3; i++) c.start(i);
    const cl = c;
    const cli = client;
    const smp = sampler;
    const l1 = await until('a leader', () => leader(cl, cli));
    await until(`the VIP on ${nodeNs(l1)}`, () => (smp.holder() === nodeNs(l1) ? true : undefined));
    const lines = readFileSync(vipLog, 'utf8').trim().split('\n');
    for (let i = 0; i < 3; i++) assert.ok(lines.some((l) => l.includes(` ${nodeNs(i)} remove eth0 ${VIP_CIDR} `)), `${nodeNs(i)} ran "remove eth0 ${VIP_CIDR}" at start`);
    const adds = lines.filter((l) => l.includes(` ${nodeNs(l1)} add eth0 ${VIP_CIDR} lifetime=`));
    assert.ok(adds.length >= 1, 'the leader ran "add eth0 ADDR"');
    for (const a of adds) assert.ok(Number(/lifetime=(\d+)/.exec(a)?.[1]) <= T_MS / 1000, `lifetime at most T: ${a}`);
    assert.equal(existsSync(fenceLog), false, 'the first leader has no predecessor to fence');

    // The fence fails: the new leader serves writes but does not take the VIP.
    writeFileSync(failFlag, '');
    const killedAt = Date.now();
    c.signal(l1, 'SIGKILL');
    await c.waitExit(l1);
    const l2 = await until('a new leader', () => leader(cl, cli, [l1]));
    assert.equal((await cli.http(c.nodes[l2]!.url, 'PUT', '/v1/kv/fence/w', { value: 'x' })).status, 200, 'writes are served while fencing fails');
    await until('two failed fence attempts', () => (existsSync(fenceLog) && readFileSync(fenceLog, 'utf8').split('\n').filter((l) => l.includes(' fail ')).length >= 2 ? true : undefined));
    await sleep(Math.max(0, killedAt + T_MS + VIP_MARGIN_MS + 2000 - Date.now()));
    assert.equal(smp.holder(), '', 'nobody holds the VIP while fencing fails, also after the lease wait');
    const st = await cli.http(c.nodes[l2]!.url, 'GET', '/v1/cluster/status');
    const vip = st.body['vip'] as { state: string; fence: { ok: boolean; target: string; lastError: string } };
    assert.equal(vip.state, 'fencing');
    assert.equal(vip.fence.ok, false);
    assert.match(vip.fence.lastError, /power switch unreachable/);

    rmSync(failFlag);
    const fencedBy = Date.now();
    await until(`the VIP on ${nodeNs(l2)} after fencing`, () => (smp.holder() === nodeNs(l2) ? true : undefined), 60_000);
    report['heldBackMs'] = fencedBy - killedAt;
    report['afterFenceOkVipMs'] = Date.now() - fencedBy;
    const fence = readFileSync(fenceLog, 'utf8').trim().split('\n');
    const ok = fence.find((l) => l.includes(' ok '))!;
    assert.match(ok, new RegExp(` ${nodeNs(l2)} ok ${c.nodes[l1]!.name} 10\\.231\\.7\\.${11 + l1}:5201 \\d+$`), 'fenced with the old leader\'s name, address and term');
    const okAt = Number(ok.split(' ')[0]);
    const addAt = readFileSync(vipLog, 'utf8').trim().split('\n').filter((l) => l.includes(` ${nodeNs(l2)} add `)).map((l) => Number(l.split(' ')[0]))[0]!;
    assert.ok(addAt >= okAt, 'the VIP was added only after the fence succeeded');
    report['samples'] = smp.rounds;
    assert.deepEqual(smp.doubles, [], 'never two holders at once');
  });
});
