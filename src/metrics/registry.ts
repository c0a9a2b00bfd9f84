// The Prometheus primitives the daemon needs, and no more: counters, gauges
// and histograms whose labelled children are created once, ahead of the
// traffic, so counting a request is a field increment (no label hashing, no
// string building, no allocation). prom-client was measured and not used:
// its children hash their labels into a string on every inc/observe (about
// 0.5 us per request against 0.01 us here; see docs/metrics.md).
//
// A registry's state is taken as a Snapshot, plain JSON, so that with
// --workers the primary can gather the workers' snapshots over IPC and merge
// them (merge()) before rendering the text format (render()).

export type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * How one family's series combine across processes (--workers): summed
 * (requests, connections, memory), or the largest or smallest of them (a
 * replicated cache's size; a server is up only if every process sees it up).
 */
export type Aggregation = 'sum' | 'max' | 'min';

/** One series: its rendered label pairs ('mech="ldap",result="ok"', '' for none) and value. */
export interface ScalarSeries {
  labels: string;
  value: number;
}

/** A histogram series: per-bucket counts (not cumulative; the last is +Inf), sum and count. */
export interface HistogramSeries {
  labels: string;
  counts: number[];
  sum: number;
  count: number;
}

export interface FamilySnapshot {
  name: string;
  help: string;
  type: MetricType;
  agg: Aggregation;
  /** Histograms: the upper bounds of the buckets (without +Inf). */
  bounds?: number[];
  series: Array<ScalarSeries | HistogramSeries>;
}

export type Snapshot = FamilySnapshot[];

/** Prometheus label value escaping: backslash, double quote and newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** 'a="x",b="y"', in the order given (the family's label order). */
export function renderLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
    .join(',');
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

export class CounterChild {
  value = 0;
  constructor(readonly labels: string) {}
  inc(n = 1): void {
    this.value += n;
  }
}

export class GaugeChild {
  value = 0;
  constructor(readonly labels: string) {}
  set(v: number): void {
    this.value = v;
  }
}

export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: string,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    (this.counts[i] as number)++;
    this.sum += v;
    this.count++;
  }

  /** Take over a histogram kept elsewhere with the same buckets (per-bucket counts, the last above them all). */
  load(counts: readonly number[], sum: number, count: number): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] = counts[i] ?? 0;
    this.sum = sum;
    this.count = count;
  }
}

abstract class Family<C extends { labels: string }> {
  protected readonly children = new Map<string, C>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly agg: Aggregation,
  ) {
    if (!NAME_RE.test(name)) throw new Error(`metric name ${name} is not valid`);
  }

  protected abstract make(labels: string): C;

  /** The child for these labels, created on first use: resolve it once, outside the hot path. */
  child(labels: Readonly<Record<string, string>> = {}): C {
    const key = renderLabels(labels);
    let c = this.children.get(key);
    if (c === undefined) {
      c = this.make(key);
      this.children.set(key, c);
    }
    return c;
  }

  /** Forget every child (a gauge whose label set changes, such as the configured servers after SIGHUP). */
  clear(): void {
    this.children.clear();
  }

  abstract snapshot(): FamilySnapshot;
}

export class Counter extends Family<CounterChild> {
  protected make(labels: string): CounterChild {
    return new CounterChild(labels);
  }

  snapshot(): FamilySnapshot {
    const series = [...this.children.values()].map((c) => ({ labels: c.labels, value: c.value }));
    return { name: this.name, help: this.help, type: 'counter', agg: this.agg, series };
  }
}

export class Gauge extends Family<GaugeChild> {
  protected make(labels: string): GaugeChild {
    return new GaugeChild(labels);
  }

  snapshot(): FamilySnapshot {
    const series = [...this.children.values()].map((c) => ({ labels: c.labels, value: c.value }));
    return { name: this.name, help: this.help, type: 'gauge', agg: this.agg, series };
  }
}

export class Histogram extends Family<HistogramChild> {
  private readonly bounds: Float64Array;

  constructor(name: string, help: string, bounds: readonly number[]) {
    super(name, help, 'sum');
    this.bounds = Float64Array.from(bounds);
  }

  protected make(labels: string): HistogramChild {
    return new HistogramChild(labels, this.bounds);
  }

  snapshot(): FamilySnapshot {
    const series = [...this.children.values()].map((c) => ({
      labels: c.labels,
      counts: [...c.counts],
      sum: c.sum,
      count: c.count,
    }));
    return { name: this.name, help: this.help, type: 'histogram', agg: 'sum', bounds: [...this.bounds], series };
  }
}

/** Brings gauges up to date just before a scrape (reads the listener, the pools, /proc). */
export type Collector = () => void | Promise<void>;

/**
 * service: cheap reads of the daemon's own state (also run once a second
 * for the status line); process: /proc and the event loop delay, whose
 * "since the previous scrape" figures only scrapes may reset.
 */
export type CollectorKind = 'service' | 'process';

export class Registry {
  private readonly families: Array<Family<{ labels: string }>> = [];
  private readonly collectors: Array<{ c: Collector; kind: CollectorKind }> = [];

  counter(name: string, help: string, agg: Aggregation = 'sum'): Counter {
    return this.add(new Counter(name, help, agg));
  }

  gauge(name: string, help: string, agg: Aggregation = 'sum'): Gauge {
    return this.add(new Gauge(name, help, agg));
  }

  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, bounds));
  }

  onCollect(c: Collector, kind: CollectorKind = 'service'): void {
    this.collectors.push({ c, kind });
  }

  private add<F extends Family<{ labels: string }>>(f: F): F {
    if (this.families.some((x) => x.name === f.name)) throw new Error(`metric ${f.name} registered twice`);
    this.families.push(f);
    return f;
  }

  /** Run the collectors (the process ones only for a scrape), then copy every family's state. */
  async snapshot(scrape = true): Promise<Snapshot> {
    for (const { c, kind } of this.collectors) if (scrape || kind === 'service') await c();
    return this.families.map((f) => f.snapshot());
  }
}

function isHistogram(s: ScalarSeries | HistogramSeries): s is HistogramSeries {
  return (s as HistogramSeries).counts !== undefined;
}

/** One label's value out of a series' rendered labels (escapes undone); undefined if absent. */
export function labelValue(labels: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|,)${name}="((?:[^"\\\\]|\\\\.)*)"`).exec(labels);
  return m?.[1]?.replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c));
}

/** Counters and histograms only: what a process that has gone on counted, kept so totals never go back. */
export function countersOf(snapshot: Snapshot): Snapshot {
  return snapshot.filter((f) => f.type !== 'gauge');
}

/** Combine the snapshots of several processes, family by family, each by its aggregation. */
export function merge(snapshots: readonly Snapshot[]): Snapshot {
  const out = new Map<string, FamilySnapshot>();
  for (const snap of snapshots) {
    for (const fam of snap) {
      let into = out.get(fam.name);
      if (into === undefined) {
        into = { ...fam, series: [] };
        out.set(fam.name, into);
      }
      for (const s of fam.series) {
        const same = into.series.find((x) => x.labels === s.labels);
        if (same === undefined) {
          into.series.push(isHistogram(s) ? { ...s, counts: [...s.counts] } : { ...s });
        } else if (isHistogram(same) && isHistogram(s)) {
          s.counts.forEach((n, i) => (same.counts[i] = (same.counts[i] ?? 0) + n));
          same.sum += s.sum;
          same.count += s.count;
        } else if (!isHistogram(same) && !isHistogram(s)) {
          same.value =
            fam.agg === 'max'
              ? Math.max(same.value, s.value)
              : fam.agg === 'min'
                ? Math.min(same.value, s.value)
                : same.value + s.value;
        }
      }
    }
  }
  return [...out.values()];
}

/** Prometheus's number format: integers as they are, +Inf/-Inf/NaN spelled out. */
function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

const withLe = (labels: string, le: string): string => `{${labels === '' ? '' : `${labels},`}le="${le}"}`;
const braces = (labels: string): string => (labels === '' ? '' : `{${labels}}`);

/** The text exposition format (version 0.0.4). Families without series are left out. */
export function render(snapshot: Snapshot): string {
  const out: string[] = [];
  for (const f of snapshot) {
    if (f.series.length === 0) continue;
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.series) {
      if (isHistogram(s)) {
        let cumulative = 0;
        const bounds = f.bounds ?? [];
        for (let i = 0; i <= bounds.length; i++) {
          cumulative += s.counts[i] ?? 0;
          out.push(`${f.name}_bucket${withLe(s.labels, i < bounds.length ? num(bounds[i] as number) : '+Inf')} ${cumulative}`);
        }
        out.push(`${f.name}_sum${braces(s.labels)} ${num(s.sum)}`, `${f.name}_count${braces(s.labels)} ${s.count}`);
      } else {
        out.push(`${f.name}${braces(s.labels)} ${num(s.value)}`);
      }
    }
  }
  return `${out.join('\n')}\n`;
}
