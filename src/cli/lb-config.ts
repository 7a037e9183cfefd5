// `quorate lb-config haproxy|nginx [--mode active-standby|active-active]`: a
// ready load-balancer configuration for this cluster's nodes, from the
// members the cluster reports (`/v1/cluster/status` over the HTTP API).
//
// active-standby: only the leader receives traffic. HAProxy checks
// /system/health/leader on every node (200 only on the leader with a quorum).
// Open-source nginx has no active health checks: the leader at generation
// time is the primary (weight 5), the others are `backup`, with passive checks
// (max_fails/fail_timeout) and a retry on the next node for errors that
// applied nothing; a standby forwards to the new leader after a failover.
// active-active: every node receives traffic (followers forward writes and
// linearizable reads): HAProxy checks /system/health/ready; nginx balances
// over all nodes with passive checks.
import { UsageError, str } from './args.js';
import { EXIT, type Verb } from './command.js';

export type LbKind = 'haproxy' | 'nginx';
export type LbMode = 'active-standby' | 'active-active';

export interface LbNode {
  readonly name: string;
  /** host:port of its HTTP API. */
  readonly address: string;
  readonly https: boolean;
  readonly leader: boolean;
}

export interface LbOptions {
  readonly mode: LbMode;
  /** What the load balancer listens on, host:port. */
  readonly listen: string;
  readonly haId: string;
  readonly generatedAt: string;
}

export function haproxyConfig(nodes: readonly LbNode[], o: LbOptions): string {
  const check = o.mode === 'active-standby' ? '/system/health/leader' : '/system/health/ready';
  const anyTls = nodes.some((n) => n.https);
  return [
    `# quorate lb-config haproxy --mode ${o.mode} (cluster ${o.haId}, ${o.generatedAt})`,
    o.mode === 'active-standby'
      ? '# Only the leader passes GET /system/health/leader (200 while it leads with a quorum); after a failover the new leader passes within ~1 s.'
      : '# Every node that can serve (directly or by forwarding to the leader) passes GET /system/health/ready.',
    '# Retries: only on a failed connection or a 503 (no_leader / quorum_not_met: nothing was applied); never on a 504 commit_unknown.',
    'global',
    '    maxconn 4096',
    '',
    'defaults',
    '    mode http',
    '    timeout connect 2s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    # long enough for a watch stream (GET /v1/watch) to stay open',
    '    timeout tunnel 1h',
    '    retries 3',
    '    retry-on conn-failure 503',
    '    option redispatch',
    '',
    'frontend quorate',
    `    bind ${o.listen}`,
    '    default_backend quorate_nodes',
    '',
    'backend quorate_nodes',
    ...(o.mode === 'active-active' ? ['    balance roundrobin'] : []),
    `    option httpchk GET ${check}`,
    '    http-check expect status 200',
    '    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 1 on-marked-down shutdown-sessions',
    ...(anyTls ? ['    # The nodes serve HTTPS: put the cluster CA in ca-file.'] : []),
    ...nodes.map((n) => `    server ${n.name} ${n.address} check${n.https ? ' ssl verify required ca-file /etc/quorate/ca.crt' : ''}`),
    '',
  ].join('\n');
}

export function nginxConfig(nodes: readonly LbNode[], o: LbOptions): string {
  const scheme = nodes.some((n) => n.https) ? 'https' : 'http';
  const standby = o.mode === 'active-standby';
  // nginx needs one server that is not a backup: without a leader now, the first node is the primary.
  const primary = nodes.find((n) => n.leader) ?? nodes[0];
  const servers = nodes.map((n) => {
    const role = standby ? (n === primary ? ' weight=5' : ' backup') : '';
    return `        server ${n.address}${role} max_fails=1 fail_timeout=5s;  # ${n.name}${standby ? (n === primary ? (n.leader ? ' (leader now: primary)' : ' (primary: no leader was known)') : ' (standby)') : ''}`;
  });
  return [
    `# quorate lb-config nginx --mode ${o.mode} (cluster ${o.haId}, ${o.generatedAt})`,
    '# Open-source nginx has no active health checks (health_check is NGINX Plus only): it cannot route by',
    '# /system/health/leader. It marks a node down after a failed connection (passive check, max_fails/fail_timeout)',
    '# and retries the request on the next node; any node serves every call (followers forward writes to the leader),',
    standby
      ? '# so after a failover the standbys carry the traffic through forwarding. Re-run lb-config and reload nginx to make the new leader the primary.'
      : '# so every node is used alike.',
    '# Retried on another node: connection errors, timeouts and 503 (no_leader / quorum_not_met: nothing was applied);',
    '# never a 504 commit_unknown. nginx does not retry POST (non-idempotent) once it was sent; it does retry PUT/DELETE.',
    '# Use it inside the http {} block of nginx.conf (or as a file in conf.d/).',
    'upstream quorate_cluster {',
    ...servers,
    '        keepalive 16;',
    '}',
    '',
    'server {',
    `    listen ${o.listen};`,
    '    location / {',
    `        proxy_pass ${scheme}://quorate_cluster;`,
    '        proxy_http_version 1.1;',
    '        proxy_set_header Connection "";',
    '        proxy_set_header Host $host;',
    '        proxy_set_header X-Real-IP $remote_addr;',
    '        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '        proxy_set_header X-Forwarded-Proto $scheme;',
    '        proxy_connect_timeout 2s;',
    '        # watch streams (server-sent events) stay open',
    '        proxy_read_timeout 1h;',
    '        proxy_buffering off;',
    '        proxy_next_upstream error timeout http_502 http_503;',
    '        proxy_next_upstream_tries 3;',
    '    }',
    '}',
    '',
  ].join('\n');
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+|\*):\d{1,5}$/;

export const lbConfigCommand: Verb = {
  name: 'lb-config',
  usage: 'haproxy|nginx [--mode active-standby|active-active] [--listen HOST:PORT]',
  description: 'Reads the members and their API addresses from the cluster (any node answers). active-standby (default): traffic only to the leader ' +
    '(HAProxy checks /system/health/leader; nginx: the leader as primary, the others as backup). active-active: every node (followers forward), ' +
    'HAProxy checks /system/health/ready. Open-source nginx has no active health checks: it learns a node is down from a failed request.',
  flags: [
    { name: 'mode', type: 'string', value: 'MODE', help: 'active-standby (default) or active-active' },
    { name: 'listen', type: 'string', value: 'HOST:PORT', help: 'where the load balancer listens (default 0.0.0.0:7100)' },
  ],
  examples: ['quorate lb-config haproxy > /etc/haproxy/haproxy.cfg', 'quorate lb-config nginx --mode active-active --listen 0.0.0.0:80 > /etc/nginx/conf.d/quorate.conf'],
  remote: true,
  async run(ctx) {
    const kind = ctx.args.positionals[0];
    if (ctx.args.positionals.length !== 1 || (kind !== 'haproxy' && kind !== 'nginx')) throw new UsageError(`lb-config needs exactly one of haproxy or nginx, got ${JSON.stringify(ctx.args.positionals.join(' '))}`, 'lb-config');
    const mode = str(ctx.args, 'mode') ?? 'active-standby';
    if (mode !== 'active-standby' && mode !== 'active-active') throw new UsageError(`--mode must be active-standby or active-active, got ${JSON.stringify(mode)}`, 'lb-config');
    const listen = str(ctx.args, 'listen') ?? '0.0.0.0:7100';
    if (!HOST_PORT.test(listen)) throw new UsageError(`--listen must be HOST:PORT (e.g. 0.0.0.0:7100), got ${JSON.stringify(listen)}`, 'lb-config');
    const s = await ctx.client().clusterStatus() as { haId?: string; leader?: string | null; peers?: { nodeName: string; apiUrl: string | null; role: string }[] };
    const nodes: LbNode[] = [];
    const missing: string[] = [];
    for (const p of s.peers ?? []) {
      if (p.role === 'observer' || p.role === 'removed') continue;
      if (p.apiUrl === null || p.apiUrl === '') { missing.push(p.nodeName); continue; }
      const u = new URL(p.apiUrl);
      nodes.push({ name: p.nodeName, address: u.host, https: u.protocol === 'https:', leader: p.nodeName === s.leader });
    }
    if (nodes.length === 0) {
      ctx.io.err('No member with a known API URL: the cluster reports none yet (is a leader elected? see `quorate status`).');
      return EXIT.failed;
    }
    if (missing.length > 0) ctx.io.err(`warning: no API URL is known for ${missing.join(', ')} (not heard from yet): left out; re-run once they are up.`);
    if (mode === 'active-standby' && kind === 'nginx' && !nodes.some((n) => n.leader)) {
      ctx.io.err(`warning: no leader right now: ${nodes[0]!.name} is made the primary; re-run lb-config once a leader is elected.`);
    }
    const o: LbOptions = { mode, listen, haId: s.haId ?? 'quorate', generatedAt: new Date().toISOString() };
    const text = kind === 'haproxy' ? haproxyConfig(nodes, o) : nginxConfig(nodes, o);
    ctx.print({ kind, mode, listen, nodes, config: text }, () => text.trimEnd());
    return EXIT.ok;
  },
};
