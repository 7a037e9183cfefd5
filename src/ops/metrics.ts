// The node's Prometheus registry on prom-client: counters, gauges (both with
// labels) and histograms, rendered in the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// A thin port over prom-client keeps the calling forms the rest of the code uses
// (`metrics.counter(name, help, labels).inc({..})`, `gauge.set(v)`,
// `histogram.observe(v, labels)`) and adds what prom-client leaves to callers:
// a missing or unknown label throws (naming it), labels render in declared order,
// registering a name twice returns the same metric. With `processMetrics`, the
// registry also renders prom-client's default process metrics (CPU, file
// descriptors, event-loop lag, GC, heap spaces, ...) under their standard names,
// except the few the node already exports under the same name (ours are kept).
import type { Counter as PromCounter, Gauge as PromGauge, Histogram as PromHistogram, Registry } from 'prom-client';
import { promClasses, promDefaultMetrics } from '../lib/lazy-modules.js';

// prom-client's classes without its index (../lib/lazy-modules.ts); the default process metrics at the first text().
const { Registry: PromRegistry, Counter: PromCounterClass, Gauge: PromGaugeClass, Histogram: PromHistogramClass } = promClasses();

export type Labels = Readonly<Record<string, string | number>>;

/** Content-Type of `MetricsRegistry.text()`. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Default histogram buckets (seconds), as in the Prometheus client libraries. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * prom-client default metrics the node exports itself under the same name (with
 * its own help text, see src/node/node-metrics.ts), and the ones only set by the
 * collector of a dropped one (prom-client's process_resident_memory_bytes gauge
 * also sets the virtual memory and heap gauges): left out of the default set.
 */
const DEFAULTS_OWNED_BY_NODE = ['process_resident_memory_bytes', 'process_virtual_memory_bytes', 'process_heap_bytes', 'nodejs_external_memory_bytes'];
/** Gauges named like counters (`promtool check metrics` flags them); their per-type gauges (nodejs_active_handles{type}, ...) stay. */
const DEFAULTS_LINT = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

let processDefaults: Registry | undefined;

/** One registry of prom-client's default metrics per process (they describe the process, and their observers are process-wide). */
function processRegistry(): Registry {
  if (processDefaults === undefined) {
    processDefaults = new PromRegistry();
    promDefaultMetrics()({ register: processDefaults });
    for (const name of [...DEFAULTS_OWNED_BY_NODE, ...DEFAULTS_LINT]) processDefaults.removeSingleMetric(name);
  }
  return processDefaults;
}

function checkLabelNames(metric: string, names: readonly string[], reserved: readonly string[] = []): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (!LABEL_NAME_RE.test(n) || n.startsWith('__')) throw new Error(`metric ${metric}: invalid label name ${JSON.stringify(n)}`);
    if (reserved.includes(n)) throw new Error(`metric ${metric}: label name ${JSON.stringify(n)} is reserved`);
    if (seen.has(n)) throw new Error(`metric ${metric}: duplicate label name ${JSON.stringify(n)}`);
    seen.add(n);
  }
}

/** The labels in declared order with string values; throws on a missing or unknown label. */
function normalize(metric: string, names: readonly string[], labels: Labels | undefined): Record<string, string> {
  const given = labels ?? {};
  for (const k of Object.keys(given)) {
    if (!names.includes(k)) throw new Error(`metric ${metric}: unknown label ${JSON.stringify(k)} (declared: ${names.join(', ') || 'none'})`);
  }
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = given[n];
    if (v === undefined) throw new Error(`metric ${metric}: missing label ${JSON.stringify(n)}`);
    out[n] = String(v);
  }
  return out;
}

function sameLabels(a: Readonly<Record<string, unknown>>, b: Record<string, string>, ignore?: string): boolean {
  const ka = Object.keys(a).filter((k) => k !== ignore);
  return ka.length === Object.keys(b).length && ka.every((k) => String(a[k]) === b[k]);
}

/** Splits the (labels?, n?) calling forms: inc(), inc(5), inc({a:'x'}), inc({a:'x'}, 5). */
function args(a: Labels | number | undefined, b: number | undefined, dflt: number | undefined): [Labels | undefined, number | undefined] {
  if (typeof a === 'number') return [undefined, a];
  return [a, b ?? dflt];
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: 'counter' | 'gauge' | 'histogram';

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = [...labelNames];
  }

  protected labels(labels: Labels | undefined): Record<string, string> {
    return normalize(this.name, this.labelNames, labels);
  }
}

abstract class LabeledValues extends Metric {
  protected abstract readonly prom: PromCounter | PromGauge;

  /** Current value of one series (0 when never touched). */
  async get(labels?: Labels): Promise<number> {
    const want = this.labels(labels);
    const { values } = await this.prom.get();
    return values.find((v) => sameLabels(v.labels, want))?.value ?? 0;
  }

  /** Removes every series (e.g. gauges describing peers that left). */
  reset(): void {
    this.prom.reset();
  }
}

export class Counter extends LabeledValues {
  readonly type = 'counter' as const;
  protected readonly prom: PromCounter;

  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    super(name, help, labelNames);
    this.prom = new PromCounterClass({ name, help, labelNames: [...labelNames], registers: [registry] });
  }

  /** inc(), inc(n), inc(labels), inc(labels, n); n must be >= 0. */
  inc(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    const by = v ?? 1;
    if (!(by >= 0) || !Number.isFinite(by)) throw new Error(`counter ${this.name}: increment must be a finite number >= 0, got ${by}`);
    this.prom.inc(this.labels(l), by);
  }
}

export class Gauge extends LabeledValues {
  readonly type = 'gauge' as const;
  protected readonly prom: PromGauge;

  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    super(name, help, labelNames);
    this.prom = new PromGaugeClass({ name, help, labelNames: [...labelNames], registers: [registry] });
  }

  /** set(v) or set(labels, v). */
  set(labels: Labels | number, v?: number): void {
    const [l, val] = args(labels, v, undefined);
    if (val === undefined) throw new Error(`gauge ${this.name}: set needs a value`);
    this.prom.set(this.labels(l), val);
  }

  inc(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    this.prom.inc(this.labels(l), v ?? 1);
  }

  dec(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    this.prom.dec(this.labels(l), v ?? 1);
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  readonly #prom: PromHistogram;

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[], registry: Registry) {
    super(name, help, labelNames);
    checkLabelNames(name, labelNames, ['le']);
    if (buckets.length === 0) throw new Error(`histogram ${name}: needs at least one bucket`);
    for (let i = 0; i < buckets.length; i++) {
      const b = buckets[i]!;
      if (!Number.isFinite(b)) throw new Error(`histogram ${name}: bucket ${i} must be finite (+Inf is implicit), got ${b}`);
      if (i > 0 && !(b > buckets[i - 1]!)) throw new Error(`histogram ${name}: buckets must increase strictly, got ${buckets[i - 1]} then ${b}`);
    }
    this.buckets = [...buckets];
    this.#prom = new PromHistogramClass({ name, help, buckets: [...buckets], labelNames: [...labelNames], registers: [registry] });
  }

  /** Records one observation (labels only when the histogram declares label names). */
  observe(v: number, labels?: Labels): void {
    if (Number.isNaN(v)) throw new Error(`histogram ${this.name}: cannot observe NaN`);
    const l = this.labels(labels);
    if (this.labelNames.length === 0) this.#prom.observe(v);
    else this.#prom.observe(l, v);
  }

  /** Observation count of one series. */
  async count(labels?: Labels): Promise<number> {
    const want = this.labels(labels);
    const { values } = await this.#prom.get();
    return values.find((s) => s.metricName === `${this.name}_count` && sameLabels(s.labels, want))?.value ?? 0;
  }
}

type AnyMetric = Counter | Gauge | Histogram;

export interface MetricsRegistryOptions {
  /** Also render prom-client's default process metrics (the node's registry; off for the API server's and in tests). */
  readonly processMetrics?: boolean;
}

export class MetricsRegistry {
  readonly #metrics = new Map<string, AnyMetric>();
  readonly #registry = new PromRegistry();
  readonly #processMetrics: boolean;

  constructor(opts: MetricsRegistryOptions = {}) {
    this.#processMetrics = opts.processMetrics === true;
  }

  #register<M extends AnyMetric>(name: string, type: M['type'], labelNames: readonly string[], make: () => M): M {
    if (!METRIC_NAME_RE.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    const existing = this.#metrics.get(name);
    if (existing !== undefined) {
      // Registering the same metric twice returns it (modules may share a registry).
      if (existing.type === type && existing.labelNames.join(',') === labelNames.join(',')) return existing as M;
      throw new Error(`metric ${name} is already registered as a ${existing.type} with labels [${existing.labelNames.join(', ')}]`);
    }
    const m = make();
    this.#metrics.set(name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    checkLabelNames(name, labelNames);
    return this.#register(name, 'counter', labelNames, () => new Counter(name, help, labelNames, this.#registry));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    checkLabelNames(name, labelNames);
    return this.#register(name, 'gauge', labelNames, () => new Gauge(name, help, labelNames, this.#registry));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DEFAULT_BUCKETS, labelNames: readonly string[] = []): Histogram {
    return this.#register(name, 'histogram', labelNames, () => new Histogram(name, help, buckets, labelNames, this.#registry));
  }

  /** One registered metric in the text exposition format ('' when none has that name): no status refresh, no process metrics. */
  async metricText(name: string): Promise<string> {
    return this.#metrics.has(name) ? this.#registry.getSingleMetricAsString(name) : '';
  }

  /** Text exposition format 0.0.4: the registered metrics in registration order, then the process metrics (when asked for). */
  async text(): Promise<string> {
    let out = await this.#registry.metrics();
    if (out !== '' && !out.endsWith('\n')) out += '\n';
    if (this.#processMetrics) {
      // A default the node registers itself under the same name is the node's (never twice in one exposition).
      for (const m of processRegistry().getMetricsAsArray()) {
        if (this.#metrics.has(m.name)) continue;
        out += `${await processRegistry().getSingleMetricAsString(m.name)}\n`;
      }
    }
    // prom-client separates some metrics with an empty line; one metric per block, no blank lines, keeps the output compact.
    return out.replace(/\n{2,}/g, '\n');
  }
}
