// "The static way" (RP-PAM "Adding More Nodes"): the new node is listed in
// every node's cluster.peerEndpoints and they are restarted one at a time,
// and the new node starts with the copied config and cluster secret. The
// members keep their ids (bootstrap.json is kept), refuse the newcomer with a
// reason that says to run `quorate enroll`, and it forms no cluster of its own.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_SECRET, TOKEN, TestCluster, freePorts, http, sleep, waitFor } from './harness.js';

interface Cfg { node: Record<string, unknown>; cluster: { peerEndpoints: string[] } & Record<string, unknown>; database: Record<string, unknown>; security: Record<string, unknown> }

describe('adding a node the static way', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('members keep their ids, refuse the newcomer naming `quorate enroll`, and it never leads', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const cl = c;
    await cl.waitLeader();
    await cl.client().kvPut('static/k', 'v');
    const idOf = async (i: number) => (await http(cl.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['id'];
    const ids = [await idOf(0), await idOf(1), await idOf(2)];

    const [api, peer] = await freePorts(2);
    const newPeer = `http://127.0.0.1:${peer}`;
    // The operator lists the new node everywhere and restarts the members one at a time.
    for (let i = 0; i < 3; i++) {
      const cfg = JSON.parse(readFileSync(cl.nodes[i]!.configPath, 'utf8')) as Cfg;
      cfg.cluster.peerEndpoints = [...cfg.cluster.peerEndpoints, newPeer];
      cl.kill(i, 'SIGTERM');
      await cl.waitExit(i);
      writeFileSync(cl.nodes[i]!.configPath, JSON.stringify(cfg, null, 2));
      cl.startNode(i);
      await cl.waitReady(i);
      await cl.waitLeader();
    }
    assert.deepStrictEqual([await idOf(0), await idOf(1), await idOf(2)], ids, 'restarted members keep their ids');

    // The new node: the copied config (its own addresses, every other peer) and the cluster secret.
    const base = JSON.parse(readFileSync(cl.nodes[0]!.configPath, 'utf8')) as Cfg;
    const dir = join(cl.root, 'node4');
    mkdirSync(dir, { recursive: true });
    const self = `http://${String(base.node['peerAddress'])}`;
    const cfg: Cfg = {
      ...base,
      node: { ...base.node, nodeName: 'node4', dataDir: dir, apiAddress: `127.0.0.1:${api}`, peerAddress: `127.0.0.1:${peer}` },
      cluster: { ...base.cluster, peerEndpoints: [self, ...base.cluster.peerEndpoints.filter((u) => u !== newPeer)] },
    };
    const configPath = join(dir, 'quorate.json');
    writeFileSync(configPath, JSON.stringify(cfg, null, 2));
    writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'cluster.secret'), `${CLUSTER_SECRET}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: TOKEN, role: 'admin', name: 'admin' }]), { mode: 0o600 });
    cl.nodes.push({ name: 'node4', dir, configPath, url: `http://127.0.0.1:${api}`, logPath: join(dir, 'node.log'), proc: undefined, exitCode: undefined });
    cl.startNode(3);

    const refusal = (l: string) => l.includes('"event":"peer_refused_inbound"') && l.includes('quorate enroll') && /"code":"(peer_unknown|identity_mismatch|wrong_node)"/.test(l);
    await waitFor('a member to refuse node4 naming `quorate enroll`', () => [0, 1, 2].some((i) => cl.log(i).split('\n').some(refusal)));
    for (let t = 0; t < 20; t++) {
      assert.notEqual((await http(cl.nodes[3]!.url, 'GET', '/system/health/leader').catch(() => ({ status: 0 }))).status, 200, 'node4 never leads');
      await sleep(100);
    }
    const leader = await cl.waitLeader(5000, [3]);
    const st = await http(cl.nodes[leader]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    const names = (st.body['peers'] as { nodeName: string }[]).map((p) => p.nodeName).sort();
    assert.deepStrictEqual(names, ['node1', 'node2', 'node3'], 'the membership is unchanged');
    assert.equal((await cl.client().kvGet('static/k'))?.value, 'v');
  });
});
