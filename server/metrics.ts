/**
 * A small Prometheus text-format registry. Each front end registers its own counters and gauges
 * and the HTTP server renders them at /metrics. No global registry: the daemon builds one and
 * passes it down, so tests can create their own.
 */

export type Labels = Record<string, string | number>;

interface Series {
  labels: Labels;
  value: number;
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  protected series = new Map<string, Series>();
  abstract readonly type: 'counter' | 'gauge';

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  protected key(labels: Labels): string {
    // Called per packet by the DHCP and TFTP front ends: no array work for the usual 0 or 1 label.
    let only: string | undefined;
    let n = 0;
    for (const k in labels) {
      only = k;
      if (++n > 1) break;
    }
    if (n === 0) return '';
    if (n === 1) return `${only}=${String(labels[only!])}`;
    const keys = Object.keys(labels).sort();
    return keys.map((k) => `${k}=${String(labels[k])}`).join(',');
  }

  /** Current value for these labels (0 when never touched). */
  get(labels: Labels = {}): number {
    return this.series.get(this.key(labels))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const s of this.series.values()) {
      lines.push(`${this.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    }
    return lines.join('\n');
  }
}

export class Counter extends Metric {
  readonly type = 'counter' as const;
  inc(labels: Labels = {}, by = 1): void {
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value += by;
    else this.series.set(k, { labels: { ...labels }, value: by });
  }
}

export class Gauge extends Metric {
  readonly type = 'gauge' as const;
  private collector: (() => Array<{ labels: Labels; value: number }>) | undefined;

  set(labels: Labels, value: number): void {
    this.series.set(this.key(labels), { labels: { ...labels }, value });
  }

  inc(labels: Labels = {}, by = 1): void {
    this.set(labels, this.get(labels) + by);
  }

  dec(labels: Labels = {}, by = 1): void {
    this.set(labels, this.get(labels) - by);
  }

  /** Values computed at scrape time (e.g. machines by state from the database). */
  collect(fn: () => Array<{ labels: Labels; value: number }>): void {
    this.collector = fn;
  }

  override render(): string {
    if (this.collector) {
      this.series.clear();
      for (const { labels, value } of this.collector()) this.set(labels, value);
    }
    return super.render();
  }
}

export class Registry {
  private metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.register(name, () => new Counter(name, help), Counter);
  }

  gauge(name: string, help: string): Gauge {
    return this.register(name, () => new Gauge(name, help), Gauge);
  }

  private register<T extends Metric>(name: string, make: () => T, kind: abstract new (...a: never[]) => T): T {
    const existing = this.metrics.get(name);
    if (existing) {
      if (!(existing instanceof kind)) throw new Error(`metric ${name} already registered with another type`);
      return existing;
    }
    const m = make();
    this.metrics.set(name, m);
    return m;
  }

  render(): string {
    return [...this.metrics.values()].map((m) => m.render()).join('\n') + '\n';
  }
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  const parts = keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  return `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
