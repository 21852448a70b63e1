import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Consumer } from 'kafkajs'
import { createPlatformaticClient, type BridgeKafkaClient, type ProduceStage } from '../../../plugins/kafka/kafka-client.js'
import { createLogger } from '../../../src/log.js'
import { LogCapture } from '../../helpers/gateway.js'
import { TEST_CONSUMER, TestKafka } from '../../helpers/kafka.js'
import { sleep, waitFor } from '../../helpers/mqtt.js'

/**
 * produceLingerMs (plugins/kafka/kafka-client.ts): records handed over in different turns within
 * the linger go out in one produce request; a record's promise (the client's PUBACK) resolves only
 * after Kafka acknowledged it, so no earlier than the linger; order is kept. Real Kafka.
 */
describe('Kafka bridge producer linger (real Kafka)', () => {
  const kafka = new TestKafka()
  const clients: BridgeKafkaClient[] = []
  const consumers: Consumer[] = []

  /** A client whose produce requests are counted (the 'request' stage is observed once per request, with its record count). */
  const counted = (lingerMs: number, id: string): { client: BridgeKafkaClient, requests: number[] } => {
    const requests: number[] = []
    const client = createPlatformaticClient({
      brokers: kafka.brokers, clientId: id, connectionTimeoutMs: 3000, produceTimeoutMs: 4000, produceLingerMs: lingerMs,
      observe: (stage: ProduceStage, _seconds: number, n: number) => { if (stage === 'request') requests.push(n) }
    }, createLogger('warn', new LogCapture()))
    clients.push(client)
    return { client, requests }
  }
  /** Hands over `count` records, one per timer turn `gapMs` apart; resolves with each record's ack time (ms after its hand-over). */
  const handOver = async (client: BridgeKafkaClient, topic: string, prefix: string, count: number, gapMs: number): Promise<number[]> => {
    const acks: Array<Promise<number>> = []
    for (let i = 0; i < count; i++) {
      const at = performance.now()
      acks.push(client.produce(topic, { key: 'same-client', value: Buffer.from(`${prefix}${i}`), headers: { seq: String(i) } }).then(() => performance.now() - at))
      await sleep(gapMs)
    }
    return Promise.all(acks)
  }
  /** The topic's values from the beginning, until `count` arrived (bounded). */
  const readBack = async (topic: string, count: number): Promise<string[]> => {
    const values: string[] = []
    const consumer = kafka.client('linger-reader').consumer({ groupId: `linger-read-${topic}`, ...TEST_CONSUMER })
    consumers.push(consumer)
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({ eachMessage: async ({ message }) => { values.push(message.value?.toString() ?? '') } })
    await waitFor(() => values.length >= count, `${count} records read back from ${topic}`, 30000)
    return values
  }

  before(async () => {
    await kafka.start()
    await kafka.createTopics(['linger-on', 'linger-off'], 1)
  })
  after(async () => {
    for (const c of consumers) await c.disconnect().catch(() => {})
    for (const c of clients) await c.close().catch(() => {})
    await kafka.destroy()
  })

  it('with a 40 ms linger, 8 records handed over 2 ms apart go in one request, each acknowledged no sooner than the linger after the first, in order', async () => {
    const { client, requests } = counted(40, 'linger-on')
    // The producer's first request also connects: one record first, so that the measured ones find it connected.
    await client.produce('linger-on', { key: 'same-client', value: Buffer.from('warm'), headers: {} })
    requests.length = 0
    const started = performance.now()
    const took = await handOver(client, 'linger-on', 'on-', 8, 2)
    assert.deepEqual(requests, [8], 'one produce request carried all 8 records')
    // The first record waited the whole linger before its request left: its ack (the PUBACK) came after it.
    assert.ok(took[0]! >= 39, `the first record acknowledged ${took[0]!.toFixed(1)} ms after its hand-over, not before the 40 ms linger`)
    assert.ok(performance.now() - started < 2000, 'and well within the produce timeout')
    assert.deepEqual(await readBack('linger-on', 9), ['warm', ...Array.from({ length: 8 }, (_, i) => `on-${i}`)], 'in Kafka once each, in hand-over order')
  })

  it('without a linger, the same hand-over goes in several requests (what the linger saves)', async () => {
    const { client, requests } = counted(0, 'linger-off')
    await client.produce('linger-off', { key: 'same-client', value: Buffer.from('warm'), headers: {} })
    requests.length = 0
    await handOver(client, 'linger-off', 'off-', 8, 2)
    assert.ok(requests.length >= 2, `several produce requests without a linger (got ${JSON.stringify(requests)})`)
    assert.equal(requests.reduce((a, b) => a + b, 0), 8, 'all 8 records produced')
    assert.deepEqual(await readBack('linger-off', 9), ['warm', ...Array.from({ length: 8 }, (_, i) => `off-${i}`)], 'in Kafka once each, in hand-over order')
  })
})
