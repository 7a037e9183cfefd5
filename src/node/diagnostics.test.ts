// Redaction of the diagnostic bundle's config, the secret scrub, and the tar writer (read back with tar).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/index.js';
import { tarGz } from '../ops/tar.js';
import { knownSecrets, redactConfig, scrub } from './diagnostics.js';

test('redactConfig: connection strings, URL credentials and queries, secret-looking NAME=value in commands; paths kept', () => {
  const c = parseConfig({
    node: { dataDir: '/var/lib/q' },
    redis: { connectionString: 'redis://:s3cretpw@127.0.0.1:6379' },
    alerts: { webhookUrl: 'https://user:pw@hooks.example:8443/x?token=abc123' },
    hooks: { onRoleChange: 'API_TOKEN=tok-777 /usr/bin/notify --mode=x' },
    health: { checks: [{ name: 'db', command: ['sh', '-c', 'PGPASSWORD="p w" psql -c 1'] }] },
  }, {});
  const text = JSON.stringify(redactConfig(c));
  for (const s of ['s3cretpw', 'abc123', 'user:pw', 'tok-777', 'p w']) assert.ok(!text.includes(s), `${s} redacted in ${text}`);
  assert.match(text, /https:\/\/hooks\.example:8443\/x\?<redacted>/);
  assert.match(text, /--mode=x/, 'a NAME that is not secret-looking is kept');
  assert.match(text, /\/var\/lib\/q\/admin\.token/, 'file paths are kept');
});

test('knownSecrets and scrub: the node\'s token files and secrets, in plain, base64 and hex form', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-diag-'));
  try {
    writeFileSync(join(dir, 'admin.token'), 'adm-token-0123456789\n');
    writeFileSync(join(dir, 'cluster.secret'), 'cluster-secret-abcdef\n');
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: 'reader-tok-98765432', role: 'reader', name: 'r' }]));
    const c = parseConfig({ node: { dataDir: dir } }, {});
    const secrets = knownSecrets(c);
    assert.deepEqual(secrets.sort(), ['adm-token-0123456789', 'cluster-secret-abcdef', 'reader-tok-98765432']);
    const b64 = Buffer.from('cluster-secret-abcdef').toString('base64');
    const out = scrub(`a adm-token-0123456789 b ${b64} c reader-tok-98765432`, secrets);
    assert.equal(out, 'a <redacted> b <redacted> c <redacted>');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tarGz: an archive tar lists and extracts, long paths included', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-tar-'));
  try {
    const long = `${'d'.repeat(80)}/${'e'.repeat(60)}/file.json`;
    writeFileSync(join(dir, 'a.tar.gz'), tarGz([{ path: 'root/x.txt', content: 'hello\n' }, { path: long, content: 'x'.repeat(1000) }, { path: 'root/empty', content: '' }]));
    const list = spawnSync('tar', ['tzf', join(dir, 'a.tar.gz')], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(list.stdout.trim().split('\n'), ['root/x.txt', long, 'root/empty']);
    assert.equal(spawnSync('tar', ['xzf', join(dir, 'a.tar.gz'), '-C', dir]).status, 0);
    assert.equal(readFileSync(join(dir, 'root/x.txt'), 'utf8'), 'hello\n');
    assert.equal(readFileSync(join(dir, long), 'utf8').length, 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
