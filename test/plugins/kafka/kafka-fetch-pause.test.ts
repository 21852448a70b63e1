import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createPlatformaticClient, type BridgeKafkaClient } from '../../../plugins/kafka/kafka-client.js'
import { createLogger } from '../../../src/log.js'
import { LogCapture } from '../../helpers/gateway.js'
import { TestKafka } from '../../helpers/kafka.js'
import { sleep, waitFor } from '../../helpers/mqtt.js'

/**
 * fetchPauseMs (plugins/kafka/kafka-client.ts): after a fetch that brought records, the bridge's
 * consumer starts its next fetch that much later, so records produced meanwhile come in one fetch
 * (one delivered batch) instead of one fetch each; every record still delivered once, in order.
 * Real Kafka; the bridge client's own producer writes the records (its promise resolves on Kafka's ack).
 */
describe('Kafka bridge consumer fetch pause (real Kafka)', () => {
  const kafka = new TestKafka()
  const clients: BridgeKafkaClient[] = []

  /** A bridge client consuming `topic`; each delivered batch is recorded with its time. */
  const consuming = async (topic: string, fetchPauseMs: number): Promise<{ client: BridgeKafkaClient, batches: Array<{ at: number, values: string[] }>, values: () => string[] }> => {
    const client = createPlatformaticClient({ brokers: kafka.brokers, clientId: `pause-${topic}`, connectionTimeoutMs: 3000, produceTimeoutMs: 4000, fetchPauseMs }, createLogger('warn', new LogCapture()))
    clients.push(client)
    const batches: Array<{ at: number, values: string[] }> = []
    await client.consume([topic], `pause-group-${topic}`, async (records) => {
      batches.push({ at: performance.now(), values: records.map((r) => r.value?.toString() ?? '') })
    }, () => {})
    const values = (): string[] => batches.flatMap((b) => b.values)
    // The group starts at the end of the topic: records until one is delivered (the consumer is then fetching).
    for (let i = 0; i < 40 && values().length === 0; i++) {
      await client.produce(topic, { key: 'k', value: Buffer.from(`warm-${i}`), headers: {} })
      await pollFor(() => values().length > 0, 500)
    }
    assert.ok(values().length > 0, `the consumer of ${topic} delivered a warm-up record`)
    return { client, batches, values }
  }
  /** Waits until `done()` or `ms` passed (no failure: the caller asserts). */
  const pollFor = async (done: () => boolean, ms: number): Promise<void> => {
    const end = performance.now() + ms
    while (!done() && performance.now() < end) await sleep(10)
  }
  /** After a delivery, 8 records produced 5 ms apart (each acknowledged by Kafka), then a marker once the pause is over. */
  const scenario = async (topic: string, pauseMs: number): Promise<{ eight: Array<{ at: number, values: string[] }>, firstAt: number, values: string[] }> => {
    const { client, batches, values } = await consuming(topic, pauseMs)
    // Idle for longer than the pause: the consumer is in a long poll again.
    await sleep(pauseMs + 300)
    const before = batches.length
    await client.produce(topic, { key: 'k', value: Buffer.from('first'), headers: {} })
    await waitFor(() => batches.length > before, 'the first record delivered', 10000)
    const firstAt = batches[before]!.at
    for (let i = 0; i < 8; i++) {
      await client.produce(topic, { key: 'k', value: Buffer.from(`r${i}`), headers: {} })
      await sleep(5)
    }
    await waitFor(() => values().includes('r7'), 'the 8 records delivered', 10000)
    // The marker: every record up to it is delivered, so a duplicate would show below.
    await sleep(pauseMs + 50)
    await client.produce(topic, { key: 'k', value: Buffer.from('marker'), headers: {} })
    await waitFor(() => values().includes('marker'), 'the marker delivered', 10000)
    const eight = batches.slice(before + 1).filter((b) => b.values.some((v) => /^r\d$/.test(v)))
    return { eight, firstAt, values: values().filter((v) => !v.startsWith('warm-')) }
  }

  before(async () => {
    await kafka.start()
    await kafka.createTopics(['pause-on', 'pause-off'], 1)
  })
  after(async () => {
    for (const c of clients) await c.close().catch(() => {})
    await kafka.destroy()
  })

  // 1 s: producing the 8 records (each waits for Kafka's ack) must fit in the pause, also on a loaded machine.
  it('with a 1 s pause, records produced after a delivery come in one later fetch, no sooner than the pause; once each, in order', async () => {
    const { eight, firstAt, values } = await scenario('pause-on', 1000)
    assert.deepEqual(values, ['first', ...Array.from({ length: 8 }, (_, i) => `r${i}`), 'marker'], 'each record delivered once, in order')
    assert.equal(eight.length, 1, `the 8 records came in one batch (got ${JSON.stringify(eight.map((b) => b.values))})`)
    const waited = eight[0]!.at - firstAt
    assert.ok(waited >= 990, `the next fetch waited out the pause: delivered ${waited.toFixed(0)} ms after the first record`)
  })

  it('without a pause, the same records come in several fetches (what the pause saves)', async () => {
    const { eight, values } = await scenario('pause-off', 0)
    assert.deepEqual(values, ['first', ...Array.from({ length: 8 }, (_, i) => `r${i}`), 'marker'], 'each record delivered once, in order')
    assert.ok(eight.length >= 2, `several batches without a pause (got ${JSON.stringify(eight.map((b) => b.values))})`)
  })
})
