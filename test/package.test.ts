// The published package: what `import … from 'quorate'` and 'quorate/client'
// give (resolved through package.json `exports`, as a dependent would), and
// what `npm pack` would ship: no tests, no test support, nothing a shipped
// module imports left out.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as quorate from 'quorate';
import * as client from 'quorate/client';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe("the package's exports", () => {
  test("'quorate' exports exactly the public surface", () => {
    assert.deepEqual(Object.keys(quorate).sort(), [
      'CommitUnknownError', 'ConfigError', 'ERROR_STATUS', 'QuorateClient', 'QuorateClientError', 'QuorateHttpError',
      'UnavailableError', 'applyEnvOverrides', 'isErrorCode', 'loadConfig', 'parseConfig',
    ]);
    for (const name of ['QuorateClient', 'QuorateClientError', 'QuorateHttpError', 'CommitUnknownError', 'UnavailableError', 'ConfigError', 'loadConfig', 'parseConfig', 'applyEnvOverrides', 'isErrorCode'] as const) {
      assert.equal(typeof quorate[name], 'function', name);
    }
    for (const E of [quorate.QuorateHttpError, quorate.CommitUnknownError, quorate.UnavailableError]) {
      assert.ok(E.prototype instanceof quorate.QuorateClientError, E.name);
    }
    assert.ok(quorate.ConfigError.prototype instanceof Error);
  });

  test("'quorate/client' resolves to the same client library", () => {
    assert.equal(client.QuorateClient, quorate.QuorateClient);
    assert.equal(client.QuorateHttpError, quorate.QuorateHttpError);
    assert.equal(client.CommitUnknownError, quorate.CommitUnknownError);
    assert.equal(client.UnavailableError, quorate.UnavailableError);
    const c = new client.QuorateClient({ urls: ['http://127.0.0.1:1'] });
    assert.ok(c instanceof quorate.QuorateClient);
  });

  test('the config loader works through the package entry point', () => {
    const cfg = quorate.parseConfig({ node: { nodeName: 'n1' } }, {}, { baseDir: '/srv' });
    assert.equal(cfg.node.nodeName, 'n1');
    assert.throws(() => quorate.parseConfig({ node: { nodeName: 7 } }, {}), (err: unknown) => {
      assert.ok(err instanceof quorate.ConfigError);
      assert.equal(err.code, 'invalid_config');
      assert.ok(err.issues.some((i) => i.path === 'node.nodeName'), JSON.stringify(err.issues));
      return true;
    });
  });

  test('error codes: the table the API answers with', () => {
    assert.equal(quorate.ERROR_STATUS.not_leader, 503);
    assert.equal(quorate.ERROR_STATUS.commit_unknown, 504);
    assert.equal(quorate.isErrorCode('revision_mismatch'), true);
    assert.equal(quorate.isErrorCode('toString'), false);
  });

  test('internal modules cannot be imported by path', async () => {
    await assert.rejects(import('quorate/dist/src/node/node.js' as string), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
  });
});

describe('npm pack', () => {
  test('ships the compiled sources, their types, the built dashboard and the docs; no tests, test support or benchmarks', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', shell: process.platform === 'win32' });
    assert.equal(r.status, 0, r.stderr);
    const [pack] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
    const files = pack.files.map((f) => f.path).sort();

    const stray = files.filter((f) => !(
      ['package.json', 'README.md', 'LICENSE'].includes(f)
      || /^docs\/[^/]+\.md$/.test(f)
      || (/^dist\/src\/.+\.(js|d\.ts)$/.test(f) && !/\.test\.(js|d\.ts)$/.test(f))
      || /^dist\/web\/(index\.html|app\.js|app\.css)$/.test(f)
    ));
    assert.deepEqual(stray, [], 'files npm would publish that are no part of the package');

    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; exports: Record<string, { types: string; default: string }> };
    for (const target of [...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => [e.types, e.default])]) {
      assert.ok(files.includes(normalize(target)), `${target} (named in package.json) is packed`);
    }

    for (const asset of ['dist/web/index.html', 'dist/web/app.js', 'dist/web/app.css']) assert.ok(files.includes(asset), `the dashboard's ${asset} is packed`);

    // Every relative import of a shipped module is shipped too (nothing reaches into test/).
    const shipped = new Set(files);
    for (const f of files.filter((p) => (p.endsWith('.js') || p.endsWith('.d.ts')) && !p.startsWith('dist/web/'))) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
        const target = normalize(join(dirname(f), m[1]!));
        const candidates = target.endsWith('.js') && f.endsWith('.d.ts') ? [target, target.replace(/\.js$/, '.d.ts')] : [target];
        assert.ok(candidates.some((c) => shipped.has(c)), `${f} imports ${m[1]}, which is not packed`);
      }
    }
  });
});
