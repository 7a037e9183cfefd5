// Ports for test processes that bind later (node agents, private redis-server
// and postgres). Picking a port with listen(0) and closing it is racy when test
// files run side by side: the kernel hands the same port out again as the
// source port of some other process's outgoing connection (ephemeral range),
// or to another file's pick, before our node binds it.
//
// So ports come from below the kernel's ephemeral range (never used as source
// ports) and each is reserved across processes by a lock file created with
// O_EXCL that names the owning pid. A reservation lasts as long as the test
// process; one left by a dead process is cleared for a later pick. A port is also checked
// bindable right now, so a service of the machine that sits in the range is
// skipped.
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DIR = join(tmpdir(), 'quorate-test-ports');
const held = new Set<number>();

/** The first port the kernel may use as a source port; ours stay below it. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 12000) return low;
  } catch { /* not Linux: fall back to the IANA dynamic range's start */ }
  return 32768;
}
const LOW = 10000;
const HIGH = ephemeralLow() - 1;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates the lock file for `port`. An existing one is never taken over in
 * place: two takers could both read the same dead pid and one would delete the
 * other's fresh lock. A lock whose owner is dead is instead renamed aside
 * (atomic: one renamer wins), checked, and removed; the port is then left for a
 * later pick.
 */
function lock(port: number): boolean {
  const file = join(DIR, String(port));
  try {
    const fd = openSync(file, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  let owner = NaN;
  try { owner = Number(readFileSync(file, 'utf8')); } catch { return false; }
  // An empty file is a reservation being written right now.
  if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) return false;
  const aside = `${file}.stale.${process.pid}`;
  try { renameSync(file, aside); } catch { return false; }
  let moved = NaN;
  try { moved = Number(readFileSync(aside, 'utf8')); } catch { /* unreadable: drop it */ }
  if (Number.isInteger(moved) && moved > 0 && alive(moved)) {
    // A live reservation replaced the stale one just before our rename: put it back.
    try { linkSync(aside, file); } catch { /* recreated meanwhile */ }
  }
  rmSync(aside, { force: true });
  return false;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

let releaseHooked = false;
function hookRelease(): void {
  if (releaseHooked) return;
  releaseHooked = true;
  process.on('exit', () => {
    for (const p of held) rmSync(join(DIR, String(p)), { force: true });
  });
}

/** Reserves `port` for this process if no live process holds it and it is bindable now. */
export async function tryReserve(port: number): Promise<boolean> {
  mkdirSync(DIR, { recursive: true });
  hookRelease();
  if (held.has(port)) return false;
  if (!lock(port)) return false;
  if (!(await bindable(port))) {
    rmSync(join(DIR, String(port)), { force: true });
    return false;
  }
  held.add(port);
  return true;
}

/** `n` distinct ports, free now and reserved for this process until it exits. */
export async function reservePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > 2000) throw new Error(`reservePorts: no free port in ${LOW}-${HIGH} after 2000 tries (lock files in ${DIR})`);
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (await tryReserve(port)) out.push(port);
  }
  return out;
}

/**
 * Ports at fixed offsets from one base (`quorate demo --base-port B` uses
 * B..B+n-1 for its APIs and B+100.. for its peers), all reserved; returns the base.
 */
export async function reservePortBlock(offsets: readonly number[]): Promise<number> {
  const span = Math.max(...offsets);
  for (let tries = 0; tries < 500; tries++) {
    const base = LOW + Math.floor(Math.random() * (HIGH - span - LOW + 1));
    const got: number[] = [];
    for (const o of offsets) {
      if (!(await tryReserve(base + o))) break;
      got.push(base + o);
    }
    if (got.length === offsets.length) return base;
    for (const p of got) release(p);
  }
  throw new Error(`reservePortBlock: no free block of offsets ${offsets.join(',')} in ${LOW}-${HIGH} after 500 tries`);
}

function release(port: number): void {
  held.delete(port);
  rmSync(join(DIR, String(port)), { force: true });
}

/** The API and peer ports of `quorate demo --base-port B` for `count` nodes; returns B. */
export function reserveDemoPorts(count: number): Promise<number> {
  return reservePortBlock([...Array.from({ length: count }, (_, k) => k), ...Array.from({ length: count }, (_, k) => 100 + k)]);
}

export const PORTS_DIR = DIR;
