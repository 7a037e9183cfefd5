// install-service: the unit it writes, and docs/quorate.service kept equal to it.
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../node/runtime-env.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from './main.js';
import { systemdUnit } from './service.js';

const DOC = fileURLToPath(new URL('../../../docs/quorate.service', import.meta.url));
const DOC_DEFAULTS = { node: '/usr/bin/node', cli: '/usr/lib/node_modules/quorate/dist/src/bundle/main.js', config: '/etc/quorate/quorate.json', user: 'quorate', dataDir: '/var/lib/quorate' };

function io(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: {}, cwd } };
}

test('docs/quorate.service is the unit install-service writes with the documented defaults', () => {
  assert.equal(readFileSync(DOC, 'utf8'), systemdUnit(DOC_DEFAULTS), 'regenerate docs/quorate.service from systemdUnit(DOC_DEFAULTS)');
});

test('install-service writes a unit that restarts always, raises LimitNOFILE, runs as its user and writes only the data dir; systemd accepts it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-unit-'));
  try {
    const t = io(dir);
    const code = await main(['install-service', '--config', 'q.json', '--output', join(dir, 'quorate.service'), '--user', 'svc', '--json'], t.io);
    assert.equal(code, 0, t.err.join('\n'));
    const unit = readFileSync(join(dir, 'quorate.service'), 'utf8');
    assert.match(unit, /^Restart=always$/m);
    assert.match(unit, /^LimitNOFILE=65536$/m);
    assert.match(unit, /^User=svc$/m);
    assert.match(unit, new RegExp(`^ExecStart=${[process.execPath, ...AGENT_NODE_FLAGS].join(' ').replace(/[/.]/g, '\\$&')} \\S+/cli/main\\.js agent --config ${join(dir, 'q.json').replace(/[/.]/g, '\\$&')}$`, 'm'));
    assert.match(unit, new RegExp(`^ReadWritePaths=${join(dir, 'data').replace(/[/.]/g, '\\$&')}$`, 'm'));
    assert.match(unit, /^ProtectSystem=strict$/m);
    for (const [k, v] of Object.entries(AGENT_ENV)) assert.match(unit, new RegExp(`^Environment=${k}=${v}$`, 'm'), 'the memory settings of src/node/runtime-env.ts');
    const next = (JSON.parse(t.out.join('')) as { next: string[] }).next;
    assert.ok(next.some((s) => s.includes('systemctl enable --now quorate')));
    const verify = spawnSync('systemd-analyze', ['verify', join(dir, 'quorate.service')], { encoding: 'utf8' });
    assert.equal(verify.error, undefined, 'systemd-analyze (Debian package systemd) runs');
    assert.doesNotMatch(verify.stderr, /Unknown (key|section)|Failed to parse|Invalid/i, verify.stderr);

    const again = io(dir);
    assert.equal(await main(['install-service', '--config', 'q.json', '--output', join(dir, 'quorate.service')], again.io), 1);
    assert.match(again.err.join(''), /exists; pass --force/);
    const bad = io(dir);
    assert.equal(await main(['install-service', '--output', join(dir, 'x')], bad.io), 2);
    assert.match(bad.err.join(''), /--config is required/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
