// Network namespaces for the virtual-IP tests: a switch namespace with a
// bridge, three node namespaces and a client namespace, each joined to the
// bridge by a veth pair, on a private subnet. Nothing is created in the host's
// namespace: the bridge lives in its own namespace, so the host's interfaces,
// routes and ARP tables are never touched. Every name starts with PREFIX; a
// crashed earlier run's leftovers are removed at setup. Agents run inside the
// node namespaces (`ip netns exec`), the client helper (./ns-client.ts) in the
// client namespace; the test process reaches them only through that helper.
// A test may use its own prefix (`createNetwork(n, prefix)`, `NsCluster(...,
// prefix)`): its namespaces then never collide with another test's, even in
// another checkout running at the same time (the subnet lives inside the
// switch namespace, so two families may use the same addresses).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLUSTER_SECRET, MAIN, TOKEN } from './harness.js';

export const PREFIX = 'qvip';
export const SUBNET = '10.231.7';
export const VIP = `${SUBNET}.100`;
export const VIP_CIDR = `${VIP}/24`;
export const CLIENT_IP = `${SUBNET}.50`;
/** Ports inside the node namespaces: each namespace has its own port space, so these collide with nothing on the host. */
export const API_PORT = 7101;
const PEER_PORT = 5201;
export const SWITCH = `${PREFIX}-sw`;
export const CLIENT_NS = `${PREFIX}-cl`;
const CLIENT_MAIN = fileURLToPath(new URL('./ns-client.js', import.meta.url));

export const nodeNs = (i: number) => `${PREFIX}-n${i + 1}`;
/** Node i's namespace in the family named `prefix` (nodeNs for the default one). */
export const nodeNsOf = (prefix: string, i: number) => `${prefix}-n${i + 1}`;
export const nodeIp = (i: number) => `${SUBNET}.${11 + i}`;

/** Whether this process may create namespaces (root with iproute2); the reason when not. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'pipe' });
  } catch (e) {
    return `ip netns does not work here: ${(e as Error).message}`;
  }
  return undefined;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Removes every namespace named `prefix`-* (killing what still runs in it: only this test starts processes there). */
export function removeLeftovers(prefix = PREFIX): void {
  const names = ip('netns', 'list').split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
  for (const ns of names) {
    for (const pid of ip('netns', 'pids', ns).split('\n').map(Number).filter((p) => p > 0)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    try { ip('netns', 'del', ns); } catch { /* raced */ }
  }
}

/** The switch, three node namespaces and the client namespace (`prefix`-sw, -n1.., -cl), wired and up. */
export function createNetwork(nodes = 3, prefix = PREFIX): void {
  removeLeftovers(prefix);
  const sw = `${prefix}-sw`;
  ip('netns', 'add', sw);
  ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', sw, 'link', 'set', 'br0', 'up');
  const members = [...Array.from({ length: nodes }, (_, i) => [nodeNsOf(prefix, i), nodeIp(i)] as const), [`${prefix}-cl`, CLIENT_IP] as const];
  members.forEach(([ns, addr], k) => attachNamespace(ns, addr, `p${k}`, prefix));
}

/** One more namespace `ns` on the switch of `prefix`, at `addr`/24, joined by the veth `port` (a name unused on that switch). */
export function attachNamespace(ns: string, addr: string, port: string, prefix = PREFIX): void {
  const sw = `${prefix}-sw`;
  ip('netns', 'add', ns);
  ip('-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip('-n', sw, 'link', 'set', port, 'master', 'br0', 'up');
  ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
}

/** The guard of every client: only the test's subnet or loopback. */
export function assertTestDestination(url: string): void {
  const host = new URL(url).hostname;
  if (!(host.startsWith(`${SUBNET}.`) || host === '127.0.0.1')) throw new Error(`refusing to send to ${host}: not in the test subnet ${SUBNET}.0/24 or loopback`);
}

/** A CA and node certificates for peer TLS between the namespaces (peer traffic off loopback needs TLS); `ipOf(i)` is node i's address. */
export function makeCerts(dir: string, nodes: number, ipOf: (i: number) => string = nodeIp): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1',
    '-subj', '/CN=quorate-vip-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (let i = 0; i < nodes; i++) {
    const name = `node${i + 1}`;
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=IP:${ipOf(i)}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  }
}

export interface NsNode { readonly name: string; readonly ns: string; readonly dir: string; readonly configPath: string; readonly logPath: string; readonly url: string; proc: ChildProcess | undefined; exited: boolean }

/** Three agents, one per node namespace, with a virtual IP on eth0 (or `cluster` overrides). */
export class NsCluster {
  readonly root: string;
  readonly nodes: NsNode[] = [];

  /** `extra`: more top-level config sections (redis, database) for every node; `prefix`: the namespace family (createNetwork's). */
  constructor(cluster: Record<string, unknown>, nodes = 3, extra: Record<string, unknown> = {}, prefix = PREFIX) {
    this.root = mkdtempSync(join(tmpdir(), `${prefix}-it-`));
    makeCerts(this.root, nodes);
    for (let i = 0; i < nodes; i++) {
      const name = `node${i + 1}`;
      const dir = join(this.root, name);
      mkdirSync(dir, { recursive: true });
      const config = {
        node: { nodeName: name, dataDir: dir, apiAddress: `0.0.0.0:${API_PORT}`, peerAddress: `${nodeIp(i)}:${PEER_PORT}`, advertiseApiUrl: `http://${nodeIp(i)}:${API_PORT}`, advertisePeerUrl: `https://${nodeIp(i)}:${PEER_PORT}` },
        cluster: {
          haId: 'vip-it', peerEndpoints: Array.from({ length: nodes }, (_, j) => j).filter((j) => j !== i).map((j) => `https://${nodeIp(j)}:${PEER_PORT}`),
          electionTimeoutMs: 1000, heartbeatIntervalMs: 100, virtualIp: VIP_CIDR, vipInterface: 'eth0', ...cluster,
        },
        security: { tls: { certFile: join(this.root, `${name}.crt`), keyFile: join(this.root, `${name}.key`), caFile: join(this.root, 'ca.crt') } },
        ...extra,
      };
      const configPath = join(dir, 'quorate.json');
      writeFileSync(configPath, JSON.stringify(config, null, 2));
      writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
      writeFileSync(join(dir, 'cluster.secret'), `${CLUSTER_SECRET}\n`, { mode: 0o600 });
      writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: TOKEN, role: 'admin', name: 'admin' }]), { mode: 0o600 });
      this.nodes.push({ name, ns: nodeNsOf(prefix, i), dir, configPath, logPath: join(dir, 'node.log'), url: `http://${nodeIp(i)}:${API_PORT}`, proc: undefined, exited: true });
    }
  }

  start(i: number): void {
    const nd = this.nodes[i]!;
    const fd = openSync(nd.logPath, 'a');
    // `ip netns exec` enters the namespace and execs node: the pid is the agent's.
    const proc = spawn('ip', ['netns', 'exec', nd.ns, process.execPath, MAIN, 'agent', '--config', nd.configPath], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    nd.proc = proc;
    nd.exited = false;
    proc.on('exit', () => { nd.exited = true; });
  }

  signal(i: number, sig: NodeJS.Signals): void {
    this.nodes[i]!.proc?.kill(sig);
  }

  async waitExit(i: number, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.nodes[i]!.exited) {
      if (Date.now() > deadline) throw new Error(`${this.nodes[i]!.name} did not exit`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  log(i: number): string {
    try { return readFileSync(this.nodes[i]!.logPath, 'utf8'); } catch { return ''; }
  }

  async stop(): Promise<void> {
    for (let i = 0; i < this.nodes.length; i++) {
      const nd = this.nodes[i]!;
      if (nd.exited) continue;
      nd.proc?.kill('SIGCONT');
      nd.proc?.kill('SIGTERM');
      await this.waitExit(i).catch(() => { nd.proc?.kill('SIGKILL'); });
    }
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The client helper in the client namespace: JSON requests on stdin, answers on stdout (./ns-client.ts). */
export class NsClient {
  readonly #proc: ChildProcess;
  #buf = '';
  #next = 1;
  readonly #waiting = new Map<number, (v: Record<string, unknown>) => void>();

  /** In the client namespace, or (ns null) in this process's namespace, for clients of loopback addresses. */
  constructor(ns: string | null = CLIENT_NS) {
    this.#proc = ns === null
      ? spawn(process.execPath, [CLIENT_MAIN], { stdio: ['pipe', 'pipe', 'inherit'] })
      : spawn('ip', ['netns', 'exec', ns, process.execPath, CLIENT_MAIN], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.#proc.stdin!.on('error', () => undefined);
    this.#proc.on('exit', (code) => {
      for (const w of this.#waiting.values()) w({ status: 0, error: `the client helper exited (${code})` });
      this.#waiting.clear();
    });
    this.#proc.stdout!.setEncoding('utf8');
    this.#proc.stdout!.on('data', (d: string) => {
      this.#buf += d;
      let nl;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const m = JSON.parse(line) as Record<string, unknown>;
        const w = this.#waiting.get(m['id'] as number);
        this.#waiting.delete(m['id'] as number);
        w?.(m);
      }
    });
  }

  call(op: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (typeof op['url'] === 'string') assertTestDestination(op['url']);
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#proc.stdin!.write(`${JSON.stringify({ ...op, id })}\n`);
    });
  }

  /** GET/PUT through the client namespace; status 0 when it did not connect. */
  async http(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const r = await this.call({ op: 'http', url, method, path, body, token: TOKEN });
    return { status: r['status'] as number, body: (r['body'] ?? {}) as Record<string, unknown> };
  }

  close(): void {
    this.#proc.stdin!.end();
    this.#proc.kill('SIGTERM');
  }
}

/**
 * Samples every node namespace's addresses every `everyMs` (one `ip -batch`
 * process per namespace, so a sample costs no process spawn; each sample is
 * `addr show dev eth0` then `addr show dev lo`, whose 127.0.0.1 line ends it:
 * iproute2's batch mode garbles an `addr show` that follows a `link show`): the holders of
 * the VIP per round, the rounds in which more than one namespace held it.
 */
export class VipSampler {
  readonly #procs: ChildProcess[];
  readonly #pending: (boolean | undefined)[];
  readonly #bufs: string[];
  readonly #timer: NodeJS.Timeout;
  #inRound = false;
  rounds = 0;
  readonly doubles: { at: number; holders: string[] }[] = [];
  /** Holder changes: [time, namespace or '' for none]. */
  readonly timeline: { at: number; holder: string }[] = [];

  constructor(readonly namespaces: readonly string[], everyMs = 10) {
    this.#pending = namespaces.map(() => undefined);
    this.#bufs = namespaces.map(() => '');
    this.#procs = namespaces.map((ns, k) => {
      const p = spawn('ip', ['-n', ns, '-o', '-4', '-batch', '-'], { stdio: ['pipe', 'pipe', 'ignore'] });
      p.stdout!.setEncoding('utf8');
      p.stdout!.on('data', (d: string) => this.#data(k, d));
      return p;
    });
    this.#timer = setInterval(() => this.#round(), everyMs);
  }

  #round(): void {
    if (this.#inRound) return;
    this.#inRound = true;
    this.#pending.fill(undefined);
    for (const p of this.#procs) p.stdin!.write('addr show dev eth0\naddr show dev lo\n');
  }

  #data(k: number, d: string): void {
    this.#bufs[k] += d;
    let nl;
    let seen = false;
    while ((nl = this.#bufs[k]!.indexOf('\n')) >= 0) {
      const line = this.#bufs[k]!.slice(0, nl);
      this.#bufs[k] = this.#bufs[k]!.slice(nl + 1);
      if (line.includes(` inet ${VIP}/`)) seen = true;
      else if (/^1: lo\s+inet /.test(line)) {
        this.#pending[k] = seen || this.#pending[k] === true;
        seen = false;
        if (this.#pending.every((v) => v !== undefined)) this.#done();
      }
    }
    if (seen) this.#pending[k] = true;
  }

  #done(): void {
    this.rounds++;
    const holders = this.namespaces.filter((_, k) => this.#pending[k] === true);
    const at = Date.now();
    if (holders.length > 1) this.doubles.push({ at, holders });
    const h = holders.join(',');
    if ((this.timeline[this.timeline.length - 1]?.holder ?? null) !== h) this.timeline.push({ at, holder: h });
    this.#inRound = false;
  }

  /** The current holder ('' none) as last sampled. */
  holder(): string {
    return this.timeline[this.timeline.length - 1]?.holder ?? '';
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const p of this.#procs) { p.stdin!.end(); p.kill('SIGTERM'); }
  }
}
