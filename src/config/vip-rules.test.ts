import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from './index.js';

const load = (cluster: Record<string, unknown>) => parseConfig({ node: { nodeName: 'n1' }, cluster }, {}, { baseDir: '/srv/q' });

function issues(cluster: Record<string, unknown>): string[] {
  try {
    load(cluster);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

test('a virtual IP with an interface or a script loads; the fence script with it', () => {
  assert.equal(load({ virtualIp: '10.0.1.100/24', vipInterface: 'eth0' }).cluster.virtualIp, '10.0.1.100/24');
  assert.equal(load({ virtualIp: '10.0.1.100/24', vipScript: '/usr/local/bin/vip' }).cluster.vipScript, '/usr/local/bin/vip');
  assert.equal(load({ virtualIp: '10.0.1.100/24', vipInterface: 'eth0', fenceScript: '/usr/local/bin/fence' }).cluster.fenceScript, '/usr/local/bin/fence');
  assert.equal(load({ virtualIp: '10.0.1.100', loadBalanced: true }).cluster.loadBalanced, true);
});

test('a virtual IP without an interface or script, or with a bad address, is refused naming the key', () => {
  assert.match(issues({ virtualIp: '10.0.1.100/24' }).join('\n'), /^cluster\.virtualIp: needs cluster\.vipInterface .* or cluster\.vipScript/);
  assert.match(issues({ virtualIp: '10.0.1.100', vipInterface: 'eth0' }).join('\n'), /^cluster\.virtualIp: must be an IPv4 address with its prefix length \(CIDR/);
  assert.match(issues({ virtualIp: '10.0.1.300/24', vipInterface: 'eth0' }).join('\n'), /^cluster\.virtualIp: must be an IPv4/);
  assert.match(issues({ virtualIp: '10.0.1.1/33', vipInterface: 'eth0' }).join('\n'), /^cluster\.virtualIp: must be an IPv4/);
  assert.match(issues({ virtualIp: '10.0.1.1/24', vipInterface: 'eth 0' }).join('\n'), /^cluster\.vipInterface: must be a network interface name/);
  assert.match(issues({ virtualIp: '10.0.1.1/24', vipScript: 'vip.sh' }).join('\n'), /^cluster\.vipScript: must be an absolute path/);
  assert.match(issues({ vipInterface: 'eth0' }).join('\n'), /^cluster\.vipInterface: is set but cluster\.virtualIp is empty/);
});

test('loadBalanced excludes an interface and a script (the load balancer owns the address)', () => {
  assert.match(issues({ virtualIp: '10.0.1.100', loadBalanced: true, vipInterface: 'eth0' }).join('\n'), /^cluster\.vipInterface: must be "" with cluster\.loadBalanced: true/);
  assert.match(issues({ virtualIp: '10.0.1.100', loadBalanced: true, vipScript: '/x' }).join('\n'), /^cluster\.vipScript: must be "" with cluster\.loadBalanced: true/);
});

test('a fence script needs a virtual IP it guards and an absolute path', () => {
  assert.deepEqual(issues({ fenceScript: '/usr/local/bin/fence' }), [], 'fencing also gates jobs, outbox delivery and backups, so it needs no virtual IP');
  assert.match(issues({ virtualIp: '10.0.1.1/24', vipInterface: 'eth0', fenceScript: 'fence' }).join('\n'), /^cluster\.fenceScript: must be an absolute path/);
});
