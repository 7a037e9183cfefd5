// Keys that must agree across members (docs/configuration.md): a member whose
// file has another cluster.electionTimeoutMs is warned about on the others
// (config_mismatch naming the key, configWarnings in health/cluster); one with
// another database.writeQuorum is refused, the key named in the acceptors' logs.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { TOKEN, TestCluster, http, waitFor } from './harness.js';

function editConfig(c: TestCluster, i: number, edit: (cfg: { cluster: Record<string, unknown>; database: Record<string, unknown> }) => void): void {
  const p = c.nodes[i]!.configPath;
  const cfg = JSON.parse(readFileSync(p, 'utf8')) as { cluster: Record<string, unknown>; database: Record<string, unknown> };
  edit(cfg);
  writeFileSync(p, JSON.stringify(cfg, null, 2));
}

async function restartWith(c: TestCluster, i: number, edit: Parameters<typeof editConfig>[2]): Promise<void> {
  c.kill(i, 'SIGTERM');
  await c.waitExit(i);
  editConfig(c, i, edit);
  c.startNode(i);
}

describe('config keys that must agree', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('another electionTimeoutMs: config_mismatch naming the key on the others, configWarnings in health/cluster; another writeQuorum: refused', async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitLeader();
    const cl = c;
    await restartWith(cl, 2, (cfg) => { cfg.cluster['electionTimeoutMs'] = 1500; });
    for (const i of [0, 1]) {
      await waitFor(`${cl.nodes[i]!.name} to warn about node3's electionTimeoutMs`, () =>
        cl.log(i).split('\n').some((l) => l.includes('"event":"config_mismatch"') && l.includes('cluster.electionTimeoutMs is 1500 on node3 but 1000 on')));
    }
    // node3 warns when it hears the others' handshakes, which may come after they warned about it.
    await waitFor('node3 warns too', () => cl.log(2).includes('cluster.electionTimeoutMs is 1000 on node'));
    await waitFor('configWarnings in health/cluster', async () => {
      const h = await http(cl.nodes[0]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
      const w = h.body['configWarnings'] as string[] | undefined;
      return Array.isArray(w) && w.some((x) => /^config_mismatch: cluster\.electionTimeoutMs is 1500 on node3 but 1000 on node[12]; /.test(x));
    });
    await cl.waitLeader();

    await restartWith(cl, 2, (cfg) => { cfg.cluster['electionTimeoutMs'] = 1000; cfg.database['writeQuorum'] = 3; });
    for (const i of [0, 1]) {
      await waitFor(`${cl.nodes[i]!.name} to refuse node3`, () =>
        cl.log(i).split('\n').some((l) => l.includes('"event":"peer_refused_inbound"') && l.includes('"code":"config_mismatch"') && l.includes('has database.writeQuorum 3, this node')));
    }
    await waitFor('node3 to refuse the others as acceptor', () =>
      cl.log(2).split('\n').some((l) => l.includes('"code":"config_mismatch"') && l.includes('has database.writeQuorum unset (a majority of the voters), this node \\"node3\\" has 3')));
    const s = await http(cl.nodes[2]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    const peers = s.body['peers'] as { nodeName: string; status: string; self: boolean }[];
    assert.ok(peers.filter((p) => !p.self).every((p) => p.status === 'unreachable'), `node3 is cut off: ${JSON.stringify(peers)}`);
  });
});
