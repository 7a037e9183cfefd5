// Tests of src/ops/metrics.ts (the port over prom-client; kept here: this change may only add files under src/api).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { MetricsRegistry } from '../ops/metrics.js';

describe('MetricsRegistry text exposition (format 0.0.4)', () => {
  test('a counter without labels shows HELP, TYPE and 0 before the first increment', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('quorate_writes_total', 'Writes applied.');
    assert.equal(await r.text(), '# HELP quorate_writes_total Writes applied.\n# TYPE quorate_writes_total counter\nquorate_writes_total 0\n');
    c.inc();
    c.inc(2);
    assert.equal(await c.get(), 3);
    assert.match(await r.text(), /^quorate_writes_total 3$/m);
  });

  test('labeled counters and gauges render one line per label set, in declared label order', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('req_total', 'Requests.', ['method', 'code']);
    c.inc({ code: '200', method: 'GET' });
    c.inc({ method: 'GET', code: '200' }, 4);
    c.inc({ method: 'PUT', code: '409' });
    const g = r.gauge('lag_entries', 'Replication lag.', ['peer']);
    g.set({ peer: 'node2' }, 7);
    g.set({ peer: 'node3' }, -1.5);
    g.inc({ peer: 'node2' });
    const up = r.gauge('up', 'Up.');
    up.set(1);
    assert.equal(await r.text(), [
      '# HELP req_total Requests.',
      '# TYPE req_total counter',
      'req_total{method="GET",code="200"} 5',
      'req_total{method="PUT",code="409"} 1',
      '# HELP lag_entries Replication lag.',
      '# TYPE lag_entries gauge',
      'lag_entries{peer="node2"} 8',
      'lag_entries{peer="node3"} -1.5',
      '# HELP up Up.',
      '# TYPE up gauge',
      'up 1',
      '',
    ].join('\n'));
  });

  test('histograms render cumulative buckets, +Inf, _sum and _count', async () => {
    const r = new MetricsRegistry();
    const h = r.histogram('commit_seconds', 'Commit latency.', [0.01, 0.1, 1]);
    for (const v of [0.005, 0.05, 0.05, 2]) h.observe(v);
    assert.equal(await r.text(), [
      '# HELP commit_seconds Commit latency.',
      '# TYPE commit_seconds histogram',
      'commit_seconds_bucket{le="0.01"} 1',
      'commit_seconds_bucket{le="0.1"} 3',
      'commit_seconds_bucket{le="1"} 3',
      'commit_seconds_bucket{le="+Inf"} 4',
      'commit_seconds_sum 2.105',
      'commit_seconds_count 4',
      '',
    ].join('\n'));
  });

  test('labeled histograms carry le beside their labels (prom-client writes le first; label order carries no meaning)', async () => {
    const r = new MetricsRegistry();
    const h = r.histogram('lat', 'L.', [1], ['route']);
    h.observe(0.5, { route: '/x' });
    assert.match(await r.text(), /^lat_bucket\{le="1",route="\/x"\} 1$/m);
    assert.match(await r.text(), /^lat_sum\{route="\/x"\} 0\.5$/m);
  });

  test('help text and label values are escaped; special values are +Inf, -Inf, NaN', async () => {
    const r = new MetricsRegistry();
    const g = r.gauge('g', 'line1\nback\\slash', ['l']);
    g.set({ l: 'a"b\\c\nd' }, Infinity);
    g.set({ l: 'neg' }, -Infinity);
    g.set({ l: 'nan' }, NaN);
    const t = await r.text();
    assert.match(t, /^# HELP g line1\\nback\\\\slash$/m);
    assert.ok(t.includes('g{l="a\\"b\\\\c\\nd"} +Inf\n'), t);
    assert.ok(t.includes('g{l="neg"} -Inf\n'));
    // prom-client writes NaN as "Nan"; Prometheus parses special values case-insensitively (Go's strconv.ParseFloat).
    assert.match(t, /^g\{l="nan"\} NaN$/mi);
  });

  test('invalid names, missing or unknown labels and negative counter increments are refused', async () => {
    const r = new MetricsRegistry();
    assert.throws(() => r.counter('bad-name', 'x'), /invalid metric name/);
    assert.throws(() => r.counter('c', 'x', ['__reserved']), /invalid label name/);
    assert.throws(() => r.histogram('h', 'x', [1], ['le']), /reserved/);
    assert.throws(() => r.histogram('h2', 'x', [2, 1]), /increase/);
    const c = r.counter('c2', 'x', ['a']);
    assert.throws(() => c.inc(), /missing label "a"/);
    assert.throws(() => c.inc({ a: '1', b: '2' }), /unknown label "b"/);
    assert.throws(() => c.inc({ a: '1' }, -1), />= 0/);
  });

  test('registering a name twice returns the same metric, or throws for a different type', async () => {
    const r = new MetricsRegistry();
    const a = r.counter('same_total', 'x', ['l']);
    assert.equal(r.counter('same_total', 'x', ['l']), a);
    assert.throws(() => r.gauge('same_total', 'x', ['l']), /already registered as a counter/);
  });

  test('the node registry adds prom-client\'s process metrics under their standard names, its own same-named gauges once', async () => {
    const r = new MetricsRegistry({ processMetrics: true });
    r.gauge('process_resident_memory_bytes', 'Resident memory size in bytes').set(123);
    r.gauge('nodejs_external_memory_bytes', 'Memory of buffers and other objects outside the V8 heap').set(7);
    const t = await r.text();
    for (const name of ['process_cpu_seconds_total', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_version_info']) {
      assert.match(t, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.equal(t.match(/^# TYPE process_resident_memory_bytes /gm)?.length, 1);
    assert.match(t, /^# HELP process_resident_memory_bytes Resident memory size in bytes$/m);
    assert.match(t, /^process_resident_memory_bytes 123$/m);
    assert.equal(t.match(/^# TYPE nodejs_external_memory_bytes /gm)?.length, 1);
    const names = [...t.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    assert.equal(new Set(names).size, names.length, 'no metric twice');
    assert.doesNotMatch(await new MetricsRegistry().text(), /process_cpu/, 'off unless asked');
    // promtool's metric lint (the binary the docs/monitoring test uses) finds nothing to say.
    const lint = spawnSync(process.env['QUORATE_PROMTOOL'] ?? '/usr/bin/promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
    assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
  });
});
