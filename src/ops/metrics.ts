// A small, dependency-free Prometheus registry: counters, gauges (both with
// labels) and histograms, rendered in the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Why not prom-client: the node needs a handful of series, rendered on demand;
// this keeps the dependency list short and the output fully under our control.

export type Labels = Readonly<Record<string, string | number>>;

/** Content-Type of `MetricsRegistry.text()`. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Default histogram buckets (seconds), as in the Prometheus client libraries. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Sample value as Prometheus writes it (+Inf, -Inf, NaN, or a Go-parsable float). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
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

/** Labels in declared order, as `{a="1",b="2"}` ('' without labels); throws on a missing or unknown label. */
function renderLabels(metric: string, names: readonly string[], labels: Labels | undefined, extra?: string): string {
  const given = labels ?? {};
  for (const k of Object.keys(given)) {
    if (!names.includes(k)) throw new Error(`metric ${metric}: unknown label ${JSON.stringify(k)} (declared: ${names.join(', ') || 'none'})`);
  }
  const parts: string[] = [];
  for (const n of names) {
    const v = given[n];
    if (v === undefined) throw new Error(`metric ${metric}: missing label ${JSON.stringify(n)}`);
    parts.push(`${n}="${escapeLabelValue(String(v))}"`);
  }
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
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

  header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract samples(): string;
}

/** Splits the (labels?, n?) calling forms: inc(), inc(5), inc({a:'x'}), inc({a:'x'}, 5). */
function args(a: Labels | number | undefined, b: number | undefined, dflt: number | undefined): [Labels | undefined, number | undefined] {
  if (typeof a === 'number') return [undefined, a];
  return [a, b ?? dflt];
}

abstract class LabeledValues extends Metric {
  readonly #values = new Map<string, number>();

  protected key(labels: Labels | undefined): string {
    return renderLabels(this.name, this.labelNames, labels);
  }

  protected add(labels: Labels | undefined, n: number): void {
    const k = this.key(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }

  protected put(labels: Labels | undefined, v: number): void {
    this.#values.set(this.key(labels), v);
  }

  /** Current value of one series (0 when never touched). */
  get(labels?: Labels): number {
    return this.#values.get(this.key(labels)) ?? 0;
  }

  /** Removes every series (e.g. gauges describing peers that left). */
  reset(): void {
    this.#values.clear();
  }

  samples(): string {
    let out = '';
    // A metric without labels shows 0 before the first update, as client libraries do.
    if (this.#values.size === 0 && this.labelNames.length === 0) return `${this.name} 0\n`;
    for (const [k, v] of this.#values) out += `${this.name}${k} ${formatValue(v)}\n`;
    return out;
  }
}

export class Counter extends LabeledValues {
  readonly type = 'counter' as const;

  /** inc(), inc(n), inc(labels), inc(labels, n); n must be >= 0. */
  inc(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    const by = v ?? 1;
    if (!(by >= 0) || !Number.isFinite(by)) throw new Error(`counter ${this.name}: increment must be a finite number >= 0, got ${by}`);
    this.add(l, by);
  }
}

export class Gauge extends LabeledValues {
  readonly type = 'gauge' as const;

  /** set(v) or set(labels, v). */
  set(labels: Labels | number, v?: number): void {
    const [l, val] = args(labels, v, undefined);
    if (val === undefined) throw new Error(`gauge ${this.name}: set needs a value`);
    this.put(l, val);
  }

  inc(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    this.add(l, v ?? 1);
  }

  dec(labels?: Labels | number, n?: number): void {
    const [l, v] = args(labels, n, 1);
    this.add(l, -(v ?? 1));
  }
}

interface HistogramSeries {
  readonly labelText: string;
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  readonly #series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[]) {
    super(name, help, labelNames);
    checkLabelNames(name, labelNames, ['le']);
    if (buckets.length === 0) throw new Error(`histogram ${name}: needs at least one bucket`);
    for (let i = 0; i < buckets.length; i++) {
      const b = buckets[i]!;
      if (!Number.isFinite(b)) throw new Error(`histogram ${name}: bucket ${i} must be finite (+Inf is implicit), got ${b}`);
      if (i > 0 && !(b > buckets[i - 1]!)) throw new Error(`histogram ${name}: buckets must increase strictly, got ${buckets[i - 1]} then ${b}`);
    }
    this.buckets = [...buckets];
  }

  #get(labels: Labels | undefined): HistogramSeries {
    const labelText = renderLabels(this.name, this.labelNames, labels);
    let s = this.#series.get(labelText);
    if (s === undefined) {
      s = { labelText, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(labelText, s);
    }
    return s;
  }

  /** Records one observation (labels only when the histogram declares label names). */
  observe(v: number, labels?: Labels): void {
    if (Number.isNaN(v)) throw new Error(`histogram ${this.name}: cannot observe NaN`);
    const s = this.#get(labels);
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]!++;
    s.sum += v;
    s.count++;
  }

  /** Observation count of one series. */
  count(labels?: Labels): number {
    return this.#series.get(renderLabels(this.name, this.labelNames, labels))?.count ?? 0;
  }

  samples(): string {
    if (this.#series.size === 0 && this.labelNames.length === 0) this.#get(undefined);
    let out = '';
    for (const s of this.#series.values()) {
      const inner = s.labelText === '' ? '' : `${s.labelText.slice(1, -1)},`;
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${inner}le="${formatValue(b)}"} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${inner}le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum${s.labelText} ${formatValue(s.sum)}\n`;
      out += `${this.name}_count${s.labelText} ${s.count}\n`;
    }
    return out;
  }
}

export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric>();

  #register<M extends Metric>(name: string, type: M['type'], labelNames: readonly string[], make: () => M): M {
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
    return this.#register(name, 'counter', labelNames, () => new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    checkLabelNames(name, labelNames);
    return this.#register(name, 'gauge', labelNames, () => new Gauge(name, help, labelNames));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DEFAULT_BUCKETS, labelNames: readonly string[] = []): Histogram {
    return this.#register(name, 'histogram', labelNames, () => new Histogram(name, help, buckets, labelNames));
  }

  /** Text exposition format 0.0.4, metrics in registration order. */
  text(): string {
    let out = '';
    for (const m of this.#metrics.values()) out += m.header() + m.samples();
    return out;
  }
}
