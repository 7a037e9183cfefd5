// The virtual IP (cluster.virtualIp on cluster.vipInterface, or through
// cluster.vipScript) and fencing (cluster.fenceScript): a leader service.
//
// Never two holders, also across kill -9 and SIGSTOP. The address lives in the
// kernel, so a killed or frozen node cannot remove it; the leader therefore
// adds it with a kernel lifetime and renews it only after a fresh quorum
// confirmation (a ReadIndex round, `confirm`) started at t0, with a lifetime
// that ends by t0 + T. A majority acknowledged this leader after t0, so any
// newer leader was elected after t0: once it has led for T + margin, every
// lease the old leader could have set has run out (the margin covers the
// kernel's lifetime check, which may drop an address up to about a second
// late, and the spawn of `ip`). A new leader takes the address:
//   - at once after a clean switchover (the old leader removed the address and
//     confirmed before it handed over: `releaseForSwitchover`, then the new
//     leader's term is won by transfer);
//   - at once after cluster.fenceScript succeeded against the previous leader
//     (retried with backoff until it does; meanwhile the address is held back);
//   - otherwise after T + margin.
// A node removes the address when it stops leading with a quorum, on
// shutdown, at start (a crash may leave it on the interface: Digital Rebar's
// "locked interface"), and when it notices that its process was frozen
// (SIGSTOP, a VM pause): the lease may have run out meanwhile.
import type { Logger } from 'pino';
import type { VipView } from '../api/ports.js';
import type { LeaderService } from './leadership.js';
import { Fencing } from './fencing.js';
import { ipCommands, scriptCommands, type CommandResult, type FenceTarget, type VipCommands } from './vip-commands.js';

/** How long the kernel keeps the address without a renewal, from the quorum confirmation: T. */
export function vipLeaseSeconds(electionTimeoutMs: number): number {
  return Math.max(3, Math.ceil((3 * electionTimeoutMs) / 1000));
}
/** Added to T before a new leader takes the address without fencing. */
export const VIP_MARGIN_MS = 2000;
const RENEW_MS = 1000;
/** A timer gap this long means the process was frozen. */
const FREEZE_GAP_MS = 1500;

export type VipStatus = VipView;

export interface VipDeps {
  readonly cidr: string;
  readonly iface: string;
  readonly script: string;
  readonly fenceScript: string;
  readonly leaseSeconds: number;
  readonly commands: VipCommands;
  readonly log: Logger;
  /** A linearizable read barrier: resolves once a quorum confirmed this leader after the call. */
  confirm(): Promise<void>;
  /** This node won its current term by a leadership transfer (a clean switchover). */
  wonByTransfer(): boolean;
  /** The previous leader, as this node last saw it (for the fence script). */
  previousLeader(): FenceTarget | undefined;
  runFence?: (t: FenceTarget) => Promise<CommandResult>;
  /** The node's fencing gate (./fencing.ts), shared with the other gated leader work; without it the VIP runs its own. */
  fencing?: Fencing;
  /** Witness mode: the lease's step-down deadline (the same function the fencing gate was given). */
  leaseDeadline?: () => number | undefined;
  marginMs?: number;
}

export class VirtualIp implements LeaderService {
  readonly name = 'virtual-ip';
  readonly #d: VipDeps;
  readonly #log: Logger;
  #epoch = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #holding = false;
  /** performance.now() when the kernel lease set last ends. */
  #leaseEnd = 0;
  #state: VipStatus['state'] = 'standby';
  #takeAt: number | undefined;
  readonly #fencing: Fencing;
  /** The fencing gate is this VIP's own (started and stopped with it), not the node's shared one. */
  readonly #ownsFencing: boolean;
  #lastError: string | undefined;
  #suspended = false;
  #fencedTerm = 0;
  #lastFailLogAt = -Infinity;
  #lastTick = performance.now();
  readonly #watch: NodeJS.Timeout;

  constructor(d: VipDeps) {
    this.#d = d;
    this.#log = d.log.child({ component: 'vip' });
    this.#ownsFencing = d.fencing === undefined;
    this.#fencing = d.fencing ?? new Fencing({ fenceScript: d.fenceScript, log: d.log, wonByTransfer: d.wonByTransfer, previousLeader: d.previousLeader, ...(d.runFence ? { runFence: d.runFence } : {}), ...(d.leaseDeadline ? { leaseDeadline: d.leaseDeadline } : {}) });
    this.#watch = setInterval(() => this.#freezeCheck(), 100);
    this.#watch.unref();
  }

  /** At start, before serving: remove an address a crashed run left behind. */
  async cleanupAtStart(): Promise<void> {
    const present = await this.#d.commands.present();
    const r = await this.#exec(() => this.#d.commands.remove());
    if (!r.ok) this.#fail('vip_remove_failed', r, 'could not remove a stale virtual IP at start');
    else if (present === true) this.#log.warn({ event: 'vip_stale_removed', address: this.#d.cidr, interface: this.#d.iface }, `removed the virtual IP ${this.#d.cidr} left on ${this.#d.iface} by an earlier run (this node does not lead yet)`);
  }

  start(term: number): void {
    const epoch = ++this.#epoch;
    this.#suspended = false;
    if (this.#ownsFencing) this.#fencing.start(term);
    void this.#run(term, epoch);
  }

  stop(): void {
    this.#epoch++;
    if (this.#ownsFencing) this.#fencing.stop();
    this.#state = 'standby';
    this.#takeAt = undefined;
    void this.#remove('stopped leading with a quorum');
  }

  /** Node shutdown: remove the address and wait for it. */
  async close(): Promise<void> {
    clearInterval(this.#watch);
    this.#epoch++;
    if (this.#ownsFencing) this.#fencing.stop();
    this.#state = 'standby';
    await this.#remove('node stopping');
  }

  /** Before a switchover hands leadership over: remove the address and wait, so the new leader may take it at once. */
  async releaseForSwitchover(): Promise<void> {
    this.#suspended = true;
    this.#state = 'released';
    await this.#remove('switchover');
  }

  /** The switchover failed and this node still leads: hold the address again (after a fresh confirmation). */
  resumeAfterSwitchover(): void {
    this.#suspended = false;
  }

  /** The term in which this leader fenced its predecessor or waited out its lease (0: not yet); for leader work with external side effects. */
  get fencedTerm(): number {
    return this.#fencedTerm;
  }

  status(): VipStatus {
    return {
      address: this.#d.cidr, interface: this.#d.iface, script: this.#d.script, state: this.#state, holding: this.#holding, leaseSeconds: this.#d.leaseSeconds,
      ...(this.#takeAt !== undefined ? { takeAt: new Date(Date.now() + Math.max(0, this.#takeAt - performance.now())).toISOString() } : {}),
      ...(this.#fencing.status() ? { fence: this.#fencing.status()! } : {}),
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  #alive(epoch: number): boolean {
    return epoch === this.#epoch;
  }

  async #run(term: number, epoch: number): Promise<void> {
    const startedAt = performance.now();
    const T = this.#d.leaseSeconds * 1000;
    if (this.#d.wonByTransfer()) {
      this.#log.info({ event: 'vip_take', reason: 'switchover', term }, `won term ${term} by a switchover: the previous leader released the virtual IP, taking it now`);
    } else if (this.#d.fenceScript !== '' && this.#d.previousLeader() !== undefined) {
      this.#state = 'fencing';
      const o = await this.#fencing.whenReady(term);
      if (o === 'ended' || !this.#alive(epoch)) return;
      if (o === 'fenced') this.#log.info({ event: 'vip_take', reason: 'fenced', term }, `the previous leader was fenced: taking the virtual IP ${this.#d.cidr} now`);
    } else {
      this.#state = 'waiting';
      this.#takeAt = startedAt + T + (this.#d.marginMs ?? VIP_MARGIN_MS);
      this.#log.info({ event: 'vip_waiting', term, waitMs: Math.round(this.#takeAt - startedAt) },
        `leading in term ${term}: taking the virtual IP ${this.#d.cidr} in ${Math.round(this.#takeAt - startedAt)} ms, when any lease of the previous leader has run out${this.#d.fenceScript === '' ? ' (set cluster.fenceScript to take it at once after fencing)' : ' (previous leader unknown, so nothing to fence)'}`);
      if (!(await this.#sleepUntil(this.#takeAt, epoch))) return;
      this.#takeAt = undefined;
    }
    if (!this.#alive(epoch)) return;
    this.#fencedTerm = term;
    while (this.#alive(epoch)) {
      if (!this.#suspended) await this.#renew(epoch, T);
      // Witness mode: wake at the lease's step-down deadline too, and give the address up then unless a renewal moved it.
      const deadline = this.#fencing.leaseOk() ? this.#leaseDeadline() : undefined;
      if (!(await this.#sleepUntil(Math.min(performance.now() + RENEW_MS, deadline ?? Infinity), epoch))) return;
      if (!this.#fencing.leaseOk() && this.#holding) {
        this.#lastError = this.#fencing.leaseProblem();
        this.#state = 'standby';
        this.#log.warn({ event: 'witness_lease_deadline', service: this.name }, `giving up the virtual IP ${this.#d.cidr}: ${this.#fencing.leaseProblem()}`);
        await this.#remove('the witness lease was not renewed in time');
      }
    }
  }

  async #renew(epoch: number, T: number): Promise<void> {
    const t0 = performance.now();
    try {
      await this.#d.confirm();
    } catch (e) {
      if (this.#alive(epoch)) this.#lastError = `quorum not confirmed: ${(e as Error).message}`;
      return;
    }
    if (!this.#fencing.leaseOk()) {
      if (this.#alive(epoch)) this.#lastError = `not taking the virtual IP: ${this.#fencing.leaseProblem()}`;
      return;
    }
    const r = await this.#exec(async () => {
      const secs = Math.floor((t0 + T - performance.now()) / 1000);
      // The witness lease is checked again at the moment the address is added.
      if (!this.#alive(epoch) || this.#suspended || secs < 1 || !this.#fencing.leaseOk()) return undefined;
      const res = await this.#d.commands.add(secs);
      if (res.ok) this.#leaseEnd = t0 + T;
      return res;
    });
    if (r === undefined || !this.#alive(epoch)) return;
    if (!r.ok) return this.#fail('vip_add_failed', r, `could not add the virtual IP ${this.#d.cidr}; retrying in ${RENEW_MS} ms`);
    this.#lastError = undefined;
    this.#state = 'holding';
    if (!this.#holding) {
      this.#holding = true;
      this.#log.info({ event: 'vip_added', address: this.#d.cidr, interface: this.#d.iface, leaseSeconds: this.#d.leaseSeconds, command: r.command }, `holding the virtual IP ${this.#d.cidr} on ${this.#d.iface}`);
      void this.#d.commands.announce().then((a) => {
        if (a && !a.ok) this.#log.warn({ event: 'vip_arp_failed', command: a.command, output: a.detail }, `gratuitous ARP for ${this.#d.cidr} failed (${a.detail}); clients' ARP caches update when their entries expire`);
      });
    }
  }

  async #remove(why: string): Promise<void> {
    const was = this.#holding;
    this.#holding = false;
    const r = await this.#exec(() => this.#d.commands.remove());
    if (!r.ok) {
      this.#fail('vip_remove_failed', r, `could not remove the virtual IP ${this.#d.cidr} (${why}); the kernel drops it when its lease runs out`);
      return;
    }
    if (was) this.#log.info({ event: 'vip_removed', address: this.#d.cidr, interface: this.#d.iface, reason: why }, `removed the virtual IP ${this.#d.cidr} (${why})`);
  }

  #freezeCheck(): void {
    const now = performance.now();
    const gap = now - this.#lastTick;
    this.#lastTick = now;
    if (gap < FREEZE_GAP_MS || !this.#holding) return;
    this.#log.warn({ event: 'vip_process_resumed', gapMs: Math.round(gap), leaseExpired: now >= this.#leaseEnd }, `this process did not run for ${Math.round(gap)} ms (frozen?): removing the virtual IP until a quorum confirms this node again`);
    void this.#remove('process resumed after a freeze');
  }

  #exec<R>(fn: () => Promise<R>): Promise<R> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #fail(event: string, r: CommandResult, what: string): void {
    const err = `${r.command}: ${r.detail}`;
    // A failure repeated at every renewal (no CAP_NET_ADMIN, a wrong interface) is logged once per 30 s.
    const now = performance.now();
    const repeat = err === this.#lastError && now - this.#lastFailLogAt < 30_000;
    this.#lastError = err;
    if (repeat) return;
    this.#lastFailLogAt = now;
    this.#log.error({ event, command: r.command, output: r.detail }, `${what} (${err})`);
  }

  #leaseDeadline(): number | undefined {
    return this.#d.leaseDeadline?.();
  }

  /** Sleeps until `at` (performance.now()); false when the epoch ended meanwhile. */
  async #sleepUntil(at: number, epoch: number): Promise<boolean> {
    while (this.#alive(epoch)) {
      const left = at - performance.now();
      if (left <= 0) return true;
      await new Promise((r) => setTimeout(r, Math.min(left, 100)));
    }
    return false;
  }
}

/** The VIP of this node's config, or undefined (no virtualIp, loadBalanced, or a node that never leads). */
export function virtualIpFor(
  config: { readonly node: { readonly role: string }; readonly cluster: { readonly virtualIp: string; readonly vipInterface: string; readonly vipScript: string; readonly fenceScript: string; readonly loadBalanced: boolean; readonly electionTimeoutMs: number } },
  deps: Pick<VipDeps, 'log' | 'confirm' | 'wonByTransfer' | 'previousLeader' | 'fencing' | 'leaseDeadline'>,
  commands: (cidr: string, iface: string, script: string) => VipCommands = (cidr, iface, script) => (script !== '' ? scriptCommands(script, cidr, iface) : ipCommands(cidr, iface)),
): VirtualIp | undefined {
  const c = config.cluster;
  if (c.virtualIp === '' || c.loadBalanced || config.node.role !== 'voter') return undefined;
  return new VirtualIp({
    ...deps, cidr: c.virtualIp, iface: c.vipInterface, script: c.vipScript, fenceScript: c.fenceScript,
    leaseSeconds: vipLeaseSeconds(c.electionTimeoutMs), commands: commands(c.virtualIp, c.vipInterface, c.vipScript),
  });
}
