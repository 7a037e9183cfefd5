// Role-change hooks (config `hooks`, SPEC §3; Patroni's callbacks):
// `onStart` when the node has started, `onRoleChange` when this node becomes
// primary (leads with a quorum) or stops being it, `onStop` when the node
// stops. Each runs as a command with argv
//   <hook> <role> <term> <fencingToken> <nodeName> <leaderName>
// and the same in the environment (QUORATE_HOOK, QUORATE_ROLE, QUORATE_TERM,
// QUORATE_FENCING_TOKEN, QUORATE_NODE_NAME, QUORATE_LEADER_NAME), one at a
// time in event order, killed at `hooks.timeoutMs`, logged with its exit code
// (`hook_finished`). A "primary" call runs only while this node still leads in
// that term (else `hook_skipped`); a hook still running when leadership is
// lost is told by the next call (role standby), which runs right after it.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { runCommand } from './app-health.js';
import type { Leadership, LeadershipState } from './leadership.js';

export type HookName = 'onStart' | 'onRoleChange' | 'onStop';
export interface HookEvent { readonly hook: HookName; readonly role: string; readonly term: number }

export class HookRunner {
  readonly #cfg: QuorateConfig['hooks'];
  readonly #leadership: Leadership;
  readonly #nodeName: string;
  readonly #standbyRole: string;
  readonly #leaderName: () => string | null;
  readonly #log: Logger;
  readonly #queue: HookEvent[] = [];
  #draining: Promise<void> | undefined;
  #role: string;
  #term = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(o: { hooks: QuorateConfig['hooks']; leadership: Leadership; nodeName: string; configuredRole: string; leaderName: () => string | null; logger: Logger }) {
    this.#cfg = o.hooks;
    this.#leadership = o.leadership;
    this.#nodeName = o.nodeName;
    this.#standbyRole = o.configuredRole === 'voter' ? 'standby' : o.configuredRole;
    this.#role = this.#standbyRole;
    this.#leaderName = o.leaderName;
    this.#log = o.logger;
  }

  start(): void {
    this.#term = this.#leadership.current().term;
    this.#push({ hook: 'onStart', role: this.#role, term: this.#term });
    this.#unsubscribe = this.#leadership.onChange((s) => this.#changed(s));
    this.#changed(this.#leadership.current());
  }

  /** Tells a primary hook it no longer leads, runs onStop, and waits (at most timeoutMs + 2 s) for the queue. */
  async stop(): Promise<void> {
    this.#unsubscribe?.();
    if (this.#role === 'primary') {
      this.#role = this.#standbyRole;
      this.#push({ hook: 'onRoleChange', role: this.#role, term: this.#leadership.current().term });
    }
    this.#push({ hook: 'onStop', role: this.#role, term: this.#leadership.current().term });
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.#draining ?? Promise.resolve(), new Promise<void>((r) => { t = setTimeout(r, this.#cfg.timeoutMs + 2000); })]);
    clearTimeout(t);
  }

  #changed(s: LeadershipState): void {
    const role = s.leading && s.quorum ? 'primary' : this.#standbyRole;
    if (role === this.#role && (role !== 'primary' || s.term === this.#term)) return;
    this.#role = role;
    this.#term = s.term;
    this.#push({ hook: 'onRoleChange', role, term: s.term });
  }

  #push(e: HookEvent): void {
    if (this.#cfg[e.hook] === undefined) return;
    this.#queue.push(e);
    if (this.#draining === undefined) this.#draining = this.#drain().finally(() => { this.#draining = undefined; });
  }

  async #drain(): Promise<void> {
    for (let e = this.#queue.shift(); e !== undefined; e = this.#queue.shift()) await this.#run(e);
  }

  async #run(e: HookEvent): Promise<void> {
    const command = this.#cfg[e.hook];
    if (command === undefined) return;
    const now = this.#leadership.current();
    if (e.role === 'primary' && !(now.leading && now.quorum && now.term === e.term)) {
      this.#log.info({ event: 'hook_skipped', hook: e.hook, role: e.role, hookTerm: e.term }, `hook ${e.hook} (primary, term ${e.term}) skipped: this node no longer leads in that term`);
      return;
    }
    const leader = e.role === 'primary' ? this.#nodeName : (this.#leaderName() ?? '');
    const args = [e.hook, e.role, String(e.term), String(e.term), this.#nodeName, leader];
    const env = { QUORATE_HOOK: e.hook, QUORATE_ROLE: e.role, QUORATE_TERM: String(e.term), QUORATE_FENCING_TOKEN: String(e.term), QUORATE_NODE_NAME: this.#nodeName, QUORATE_LEADER_NAME: leader };
    const started = performance.now();
    const r = await runCommand(command, { args, env, timeoutMs: this.#cfg.timeoutMs });
    const line = { event: 'hook_finished', hook: e.hook, role: e.role, hookTerm: e.term, exitCode: r.code, signal: r.signal, timedOut: r.timedOut, durationMs: Math.round(performance.now() - started), output: r.output.slice(-500), err: r.error };
    const why = r.error !== undefined ? `could not start: ${r.error}` : r.timedOut ? `timed out after ${this.#cfg.timeoutMs} ms (hooks.timeoutMs) and was killed` : `exited with ${r.code ?? r.signal ?? '?'}`;
    if (r.code === 0) this.#log.info(line, `hook ${e.hook} (${e.role}, term ${e.term}) exited with 0`);
    else this.#log.warn(line, `hook ${e.hook} (${e.role}, term ${e.term}) ${why}`);
  }
}
