// quorate-test: serial (npm pack and install, CPU- and disk-bound; see scripts/run-tests.mjs)
// `npm install -g quorate` gives a working `quorate` command: the package is
// packed and installed into a scratch prefix, and the installed command runs.
// Dependencies come from npm's cache (filled by this checkout's install) or
// the registry; install scripts are skipped here (the native addons are built
// by the checkout's own install, which CI runs), so this checks what the
// package ships and how its bin is wired, in seconds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('npm install -g of the packed tarball gives a working quorate command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-pkg-'));
  try {
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--json'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(pack.status, 0, pack.stderr);
    const tarball = join(dir, (JSON.parse(pack.stdout) as [{ filename: string }])[0].filename);
    const prefix = join(dir, 'prefix');
    const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball], { cwd: dir, encoding: 'utf8', timeout: 180_000 });
    assert.equal(install.status, 0, install.stderr);
    const bin = join(prefix, 'bin', 'quorate');
    assert.ok(existsSync(bin), `${bin} is installed`);
    const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: quorate <verb>/);
    const work = join(dir, 'node');
    const init = spawnSync(bin, ['init', '--dir', work, '--node-name', 'n1'], { encoding: 'utf8' });
    assert.equal(init.status, 0, init.stderr);
    assert.ok(existsSync(join(work, 'quorate.json')));
    const installed = join(prefix, 'lib', 'node_modules', 'quorate');
    assert.ok(existsSync(join(installed, 'dist', 'web', 'app.js')), 'the dashboard ships in the package');
    assert.equal((JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { name: string }).name, 'quorate');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
