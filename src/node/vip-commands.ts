// The commands behind the virtual IP: `ip addr` with a kernel lifetime (or the
// operator's vipScript, Digital Rebar's `SCRIPT add|remove IFACE ADDR`),
// gratuitous ARP (`arping -U`, iputils), and the fence script. Each runs as a
// child process with a timeout; the result carries the command's output for the
// log line. Nothing here decides when: ./vip.ts does.
import { execFile } from 'node:child_process';

export interface CommandResult {
  readonly ok: boolean;
  /** What ran, as the operator would type it. */
  readonly command: string;
  /** Exit code (or the signal / spawn error) and the command's stdout+stderr, trimmed. */
  readonly detail: string;
}

export type Runner = (file: string, args: readonly string[], env?: Record<string, string>, timeoutMs?: number) => Promise<CommandResult>;

/** Runs a program without a shell; never throws. */
export const runCommand: Runner = (file, args, env, timeoutMs = 10_000) =>
  new Promise((resolve) => {
    const command = [file, ...args].join(' ');
    execFile(file, [...args], { timeout: timeoutMs, env: env ? { ...process.env, ...env } : process.env, encoding: 'utf8' }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.trim().slice(0, 2000);
      if (!err) return resolve({ ok: true, command, detail: out });
      const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: string; killed?: boolean };
      const why = e.killed === true ? `timed out after ${timeoutMs} ms` : typeof e.code === 'number' ? `exit ${e.code}` : e.signal ? `signal ${e.signal}` : String(e.code ?? e.message);
      resolve({ ok: false, command, detail: out === '' ? why : `${why}: ${out}` });
    });
  });

/** How the address is added, renewed and removed on this node. */
export interface VipCommands {
  /** Add or renew the address so that the kernel drops it after `lifetimeSec` unless renewed again. */
  add(lifetimeSec: number): Promise<CommandResult>;
  /** Remove it; succeeds when it is not there. */
  remove(): Promise<CommandResult>;
  /** Whether the address is on the interface now (undefined: cannot tell, e.g. with a script). */
  present(): Promise<boolean | undefined>;
  /** Gratuitous ARP for the address (nothing with a script: the script announces). */
  announce(): Promise<CommandResult | undefined>;
}

const ABSENT = /Cannot assign requested address|does not exist|not found/i;

/** `ip addr replace CIDR dev IFACE valid_lft T preferred_lft T`, `ip addr del`, `arping -U`. */
export function ipCommands(cidr: string, iface: string, run: Runner = runCommand): VipCommands {
  const ip = cidr.split('/')[0] ?? cidr;
  return {
    add: (t) => run('ip', ['-4', 'addr', 'replace', cidr, 'dev', iface, 'valid_lft', String(t), 'preferred_lft', String(t)]),
    async remove() {
      const r = await run('ip', ['-4', 'addr', 'del', cidr, 'dev', iface]);
      return !r.ok && ABSENT.test(r.detail) ? { ...r, ok: true } : r;
    },
    async present() {
      const r = await run('ip', ['-o', '-4', 'addr', 'show', 'dev', iface]);
      if (!r.ok) return undefined;
      return r.detail.split('\n').some((l) => l.includes(` inet ${ip}/`));
    },
    announce: () => run('arping', ['-U', '-c', '2', '-w', '3', '-I', iface, ip], undefined, 5000),
  };
}

/**
 * The operator's script, called as `SCRIPT add IFACE ADDR` (at every renewal: it
 * must be idempotent) and `SCRIPT remove IFACE ADDR`, with
 * QUORATE_VIP_LIFETIME_SECONDS in the environment of `add` (a script that
 * passes it to `ip addr replace … valid_lft` keeps the kernel lifetime).
 */
export function scriptCommands(script: string, cidr: string, iface: string, run: Runner = runCommand): VipCommands {
  return {
    add: (t) => run(script, ['add', iface, cidr], { QUORATE_VIP_LIFETIME_SECONDS: String(t) }),
    remove: () => run(script, ['remove', iface, cidr]),
    present: () => Promise.resolve(undefined),
    announce: () => Promise.resolve(undefined),
  };
}

/** The previous leader a fence script is run against. */
export interface FenceTarget {
  readonly nodeName: string;
  readonly apiUrl: string;
  readonly peerUrl: string;
  readonly term: number;
}

/** `SCRIPT NODE_NAME ADDRESS TERM` (ADDRESS: the node's peer address, host:port), with the same and the API URL in QUORATE_FENCE_* variables. */
export function runFenceScript(script: string, t: FenceTarget, run: Runner = runCommand): Promise<CommandResult> {
  return run(script, [t.nodeName, t.peerUrl, String(t.term)], {
    QUORATE_FENCE_NODE: t.nodeName, QUORATE_FENCE_PEER_URL: t.peerUrl, QUORATE_FENCE_API_URL: t.apiUrl, QUORATE_FENCE_TERM: String(t.term),
  }, 120_000);
}
