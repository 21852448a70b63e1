import type { Registry } from 'prom-client'

/** One label value's observations: counts per bucket (not cumulative; +Inf last), sum and count. */
export interface HistogramSeries {
  readonly counts: Float64Array
  sum: number
  count: number
}

/**
 * A Prometheus histogram with one label whose observe() is a bucket search and three
 * additions. prom-client's Histogram validates and hashes the label object on every
 * observation (a labelled child does too), and the Kafka path observes several stages per
 * record; here the series is looked up once (series()) and kept by the caller. It is
 * registered into prom-client's registry as a metric of its own and exposed exactly as
 * prom-client's Histogram would expose the same observations (`<name>_bucket{le="…",<label>="…"}`,
 * `_sum`, `_count`; also through getMetricsAsJSON for the workers' aggregation).
 */
export class LightHistogram {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #labelName: string
  readonly #bounds: number[]
  readonly #series = new Map<string, HistogramSeries>()

  constructor (opts: { name: string, help: string, labelName: string, buckets: number[], registers: Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.#labelName = opts.labelName
    this.#bounds = [...opts.buckets].sort((a, b) => a - b)
    // The registry only calls get(), reset() and reads name/help/type/aggregator.
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0])
  }

  /** The series of one label value (created at first use, then shown even while empty). */
  series (labelValue: string): HistogramSeries {
    let s = this.#series.get(labelValue)
    if (!s) this.#series.set(labelValue, s = { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 })
    return s
  }

  /** Records `n` observations of `value` (n > 1: the records of one batch that shared a stage). */
  observe (s: HistogramSeries, value: number, n = 1): void {
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    s.counts[i]! += n
    s.sum += value * n
    s.count += n
  }

  get (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> } {
    const values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> = []
    for (const [labelValue, s] of this.#series) {
      let acc = 0
      for (let i = 0; i <= this.#bounds.length; i++) {
        acc += s.counts[i]!
        values.push({ labels: { le: i < this.#bounds.length ? this.#bounds[i]! : '+Inf', [this.#labelName]: labelValue }, value: acc, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: { [this.#labelName]: labelValue }, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { [this.#labelName]: labelValue }, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const s of this.#series.values()) { s.counts.fill(0); s.sum = 0; s.count = 0 }
  }
}
