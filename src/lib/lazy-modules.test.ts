import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { promClasses, promDefaultMetrics } from './lazy-modules.js';

const require = createRequire(import.meta.url);

test('prom-client classes loaded from their own files are the ones its index exports', () => {
  const index = require('prom-client') as typeof import('prom-client');
  const c = promClasses();
  assert.equal(c.Registry, index.Registry);
  assert.equal(c.Counter, index.Counter);
  assert.equal(c.Gauge, index.Gauge);
  assert.equal(c.Histogram, index.Histogram);
  assert.equal(promDefaultMetrics(), index.collectDefaultMetrics);
});
