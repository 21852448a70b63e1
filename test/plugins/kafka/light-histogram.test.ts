import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AggregatorRegistry, Histogram, Registry } from 'prom-client'
import { LightHistogram } from '../../../plugins/kafka/light-histogram.js'
import { seededInt } from '../../helpers/seeded-random.js'

/**
 * plugins/kafka/light-histogram.ts stands in for prom-client's Histogram on the Kafka path
 * (mqgw_kafka_stage_seconds, mqgw_kafka_produce_duration_seconds): its exposition must be the one
 * prom-client gives for the same observations, alone and aggregated across workers.
 */
const buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5]

function pair (): { light: LightHistogram, reference: Histogram<'stage'>, lightRegistry: Registry, referenceRegistry: Registry } {
  const lightRegistry = new Registry()
  const referenceRegistry = new Registry()
  const light = new LightHistogram({ name: 'h_seconds', help: 'help', labelName: 'stage', buckets, registers: [lightRegistry] })
  const reference = new Histogram({ name: 'h_seconds', help: 'help', labelNames: ['stage'], buckets, registers: [referenceRegistry] })
  return { light, reference, lightRegistry, referenceRegistry }
}

/** The text with each _sum to 12 significant digits: n observations of v add v * n at once, not v n times. */
const sums = (text: string): string => text.replace(/^(\S+_sum\{[^}]*\}) (\S+)$/gm, (_, name: string, v: string) => `${name} ${Number(v).toPrecision(12)}`)

/** Seeded observations, on and between bucket bounds, some repeated (a batch's shared stage). */
function observeBoth (seed: number, light: LightHistogram, reference: Histogram<'stage'>): void {
  const int = seededInt(seed)
  const stages = ['queued', 'request', 'to_consumer']
  for (let i = 0; i < 2000; i++) {
    const stage = stages[int(stages.length)]!
    const value = int(4) === 0 ? buckets[int(buckets.length)]! : int(7000) / 1000
    const n = int(5) === 0 ? 1 + int(40) : 1
    light.observe(light.series(stage), value, n)
    for (let k = 0; k < n; k++) reference.observe({ stage }, value)
  }
}

describe('LightHistogram (plugins/kafka)', () => {
  it('exposes what prom-client\'s Histogram exposes for the same observations (seeded)', async () => {
    const { light, reference, lightRegistry, referenceRegistry } = pair()
    observeBoth(0x1157, light, reference)
    const text = await lightRegistry.metrics()
    assert.match(text, /h_seconds_count\{stage="queued"\} [1-9]/)
    assert.equal(sums(text), sums(await referenceRegistry.metrics()))
  })

  it('aggregates across workers as prom-client\'s Histogram does, and reset() empties it', async () => {
    const a = pair()
    const b = pair()
    observeBoth(1, a.light, a.reference)
    observeBoth(2, b.light, b.reference)
    const lightAggregate = AggregatorRegistry.aggregate([await a.lightRegistry.getMetricsAsJSON(), await b.lightRegistry.getMetricsAsJSON()])
    const referenceAggregate = AggregatorRegistry.aggregate([await a.referenceRegistry.getMetricsAsJSON(), await b.referenceRegistry.getMetricsAsJSON()])
    assert.equal(sums(await lightAggregate.metrics()), sums(await referenceAggregate.metrics()))
    a.lightRegistry.resetMetrics()
    assert.match(await a.lightRegistry.metrics(), /h_seconds_count\{stage="queued"\} 0\n/)
  })
})
