// Cross-key rules of the virtual IP and fencing (cluster.virtualIp,
// vipInterface, vipScript, loadBalanced, fenceScript): Digital Rebar's
// (VirtAddr is a CIDR unless LoadBalanced; VirtInterface and
// VirtInterfaceScript only without LoadBalanced) and quorate's own.
import { isIPv4 } from 'node:net';
import { isAbsolute } from 'node:path';
import type { ConfigIssue } from './errors.js';
import type { RawConfig } from './schema.js';

const IFACE_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

export function vipChecks(cl: RawConfig['cluster']): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  const vip = cl.virtualIp;
  if (vip !== '') {
    const [addr, prefix, extra] = vip.split('/');
    const prefixOk = prefix !== undefined && /^\d{1,2}$/.test(prefix) && Number(prefix) <= 32;
    if (extra !== undefined || !isIPv4(addr ?? '') || (prefix === undefined ? !cl.loadBalanced : !prefixOk)) {
      add('cluster.virtualIp', `must be an IPv4 address with its prefix length (CIDR, e.g. "10.0.1.100/24")${cl.loadBalanced ? ' or, with loadBalanced, a plain IPv4 address' : ''}, got ${JSON.stringify(vip)}`);
    }
    if (!cl.loadBalanced && cl.vipInterface === '' && cl.vipScript === '') {
      add('cluster.virtualIp', 'needs cluster.vipInterface (the interface the leader adds the address to) or cluster.vipScript (a script that adds and removes it); or set cluster.loadBalanced: true when a load balancer owns the address');
    }
  }
  if (cl.loadBalanced) {
    if (cl.vipInterface !== '') add('cluster.vipInterface', 'must be "" with cluster.loadBalanced: true (the load balancer owns the address, quorate adds it nowhere)');
    if (cl.vipScript !== '') add('cluster.vipScript', 'must be "" with cluster.loadBalanced: true (the load balancer owns the address, quorate runs no script for it)');
  } else {
    if (cl.vipInterface !== '' && vip === '') add('cluster.vipInterface', 'is set but cluster.virtualIp is empty: set the virtual IP (CIDR) or remove the interface');
    if (cl.vipScript !== '' && vip === '') add('cluster.vipScript', 'is set but cluster.virtualIp is empty: set the virtual IP (CIDR) or remove the script');
  }
  if (cl.vipInterface !== '' && !IFACE_RE.test(cl.vipInterface)) add('cluster.vipInterface', `must be a network interface name (up to 15 letters, digits, "_.:@-"), got ${JSON.stringify(cl.vipInterface)}`);
  if (cl.vipScript !== '' && !isAbsolute(cl.vipScript)) add('cluster.vipScript', `must be an absolute path (it is run as SCRIPT add|remove IFACE ADDR), got ${JSON.stringify(cl.vipScript)}`);
  if (cl.fenceScript !== '') {
    if (!isAbsolute(cl.fenceScript)) add('cluster.fenceScript', `must be an absolute path (it is run as SCRIPT NODE_NAME PEER_URL TERM), got ${JSON.stringify(cl.fenceScript)}`);
  }
  return issues;
}
