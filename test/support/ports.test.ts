import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PORTS_DIR, reservePorts, tryReserve } from './ports.js';

const PORTS = fileURLToPath(new URL('./ports.js', import.meta.url));
const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

const children: ChildProcess[] = [];
after(() => { for (const c of children) c.stdin?.end(); });

function reserveInChild(n: number): Promise<number[]> {
  // The child prints its ports and keeps them until its stdin closes (when the test is done).
  const script = `import(${JSON.stringify(PORTS)}).then(async (m) => { process.stdout.write(JSON.stringify(await m.reservePorts(${n})) + '\\n'); process.stdin.resume(); })`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(p);
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.endsWith('\n')) resolve(JSON.parse(out) as number[]);
    });
    p.on('exit', (code) => reject(new Error(`child exited ${code} before reserving`)));
  });
}

test('test ports reserved by concurrent processes are distinct and never in the kernel ephemeral range', async () => {
  const [a, b, mine] = await Promise.all([reserveInChild(300), reserveInChild(300), reservePorts(300)]);
  const all = [...a, ...b, ...mine];
  assert.equal(new Set(all).size, all.length, 'a port was handed to two processes');
  for (const p of all) assert.ok(p >= 10000 && p < ephemeralLow, `port ${p} is outside 10000..${ephemeralLow - 1}`);
});

test('a reservation left by a dead process is cleared for a later pick; one held by a live process is kept', async () => {
  mkdirSync(PORTS_DIR, { recursive: true });
  const free = async (): Promise<number> => {
    for (;;) {
      const p = 10000 + Math.floor(Math.random() * (ephemeralLow - 10000));
      if (!existsSync(join(PORTS_DIR, String(p)))) return p;
    }
  };
  const dead = 2 ** 22 + 12345; // above the largest pid Linux hands out, so never a live process
  const stale = await free();
  writeFileSync(join(PORTS_DIR, String(stale)), String(dead));
  assert.equal(await tryReserve(stale), false, 'a stale lock was taken over in place');
  assert.equal(existsSync(join(PORTS_DIR, String(stale))), false, 'a stale lock was not cleared');
  assert.equal(await tryReserve(stale), true, 'a cleared port could not be reserved');
  assert.equal(readFileSync(join(PORTS_DIR, String(stale)), 'utf8'), String(process.pid));
  assert.equal(await tryReserve(stale), false, 'a port was handed out twice in one process');

  const taken = await free();
  writeFileSync(join(PORTS_DIR, String(taken)), String(process.ppid));
  try {
    assert.equal(await tryReserve(taken), false, 'a live owner lost its port');
  } finally {
    rmSync(join(PORTS_DIR, String(taken)), { force: true });
  }
});
