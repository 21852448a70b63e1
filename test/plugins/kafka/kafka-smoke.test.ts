import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Partitioners, type Consumer, type IHeaders, type LogEntry, type Producer } from 'kafkajs'
import { TEST_CONSUMER, TestKafka } from '../../helpers/kafka.js'
import { waitFor } from '../../helpers/mqtt.js'

interface Got { partition: number, offset: bigint, key: string, value: string, headers: Record<string, string> }

function headerText (headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers ?? {})) out[k] = Buffer.isBuffer(v) ? v.toString() : String(v)
  return out
}

/** Produces records first..first+count-1 in batches of 10 with acks = all: key k<i % 7>, value v<i>, headers. */
async function produce (producer: Producer, topic: string, first: number, count: number): Promise<void> {
  for (let i = first; i < first + count; i += 10) {
    const messages = []
    for (let j = i; j < Math.min(i + 10, first + count); j++) {
      messages.push({ key: `k${j % 7}`, value: `v${j}`, headers: { seq: String(j), 'mqtt-topic': `device/${j % 7}/telemetry`, empty: '' } })
    }
    const meta = await producer.send({ topic, acks: -1, messages })
    assert.ok(meta.every((m) => m.errorCode === 0), `produce errors: ${JSON.stringify(meta)}`)
  }
}

/**
 * Writes one end marker (header `marker: <round>`) into each of the topic's `partitions`,
 * after the records of that round: a consumer that got a partition's marker has got every
 * record written to that partition before it (Kafka delivers a partition in offset order).
 */
async function produceMarkers (producer: Producer, topic: string, round: string, partitions: number): Promise<void> {
  const messages = Array.from({ length: partitions }, (_, partition) => ({ partition, key: 'marker', value: `marker-${round}-${partition}`, headers: { marker: round } }))
  const meta = await producer.send({ topic, acks: -1, messages })
  assert.ok(meta.every((m) => m.errorCode === 0), `produce errors: ${JSON.stringify(meta)}`)
}

/**
 * Consumes with group `groupId` until the end marker of `round` arrived from each of the
 * topic's `partitions` (bounded), then disconnects (committing offsets); returns the records
 * that are not markers. A duplicate or a stranger written before a marker has arrived by then.
 */
async function consume (consumer: Consumer, topic: string, round: string, partitions: number, timeoutMs = 30000): Promise<Got[]> {
  const got: Got[] = []
  const markersSeen = new Set<number>()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const headers = headerText(message.headers)
      if (headers.marker !== undefined) {
        if (headers.marker === round) markersSeen.add(partition)
        return
      }
      got.push({
        partition,
        offset: BigInt(message.offset),
        key: message.key?.toString() ?? '',
        value: message.value?.toString() ?? '',
        headers
      })
    }
  })
  try {
    await waitFor(() => markersSeen.size === partitions, `the end markers of round ${round} from ${topic}`, timeoutMs)
  } finally {
    await consumer.disconnect()
  }
  return got
}

/** Every record first..first+count-1 exactly once, intact, in production order within each partition. */
function assertRecords (got: Got[], first: number, count: number): void {
  assert.equal(got.length, count, `expected ${count} records, got ${got.length}`)
  const seqs = got.map((g) => Number(g.headers.seq)).sort((a, b) => a - b)
  assert.deepEqual(seqs, Array.from({ length: count }, (_v, i) => first + i))
  const partitionOfKey = new Map<string, number>()
  const lastInPartition = new Map<number, { seq: number, offset: bigint }>()
  for (const g of got) {
    const seq = Number(g.headers.seq)
    assert.equal(g.value, `v${seq}`)
    assert.equal(g.key, `k${seq % 7}`)
    assert.deepEqual(g.headers, { seq: String(seq), 'mqtt-topic': `device/${seq % 7}/telemetry`, empty: '' })
    // The default partitioner keeps one key in one partition...
    const p = partitionOfKey.get(g.key)
    if (p === undefined) partitionOfKey.set(g.key, g.partition)
    else assert.equal(g.partition, p, `key ${g.key} in partitions ${p} and ${g.partition}`)
    // ...and a partition is delivered in the order it was written.
    const last = lastInPartition.get(g.partition)
    if (last) {
      assert.ok(seq > last.seq, `partition ${g.partition}: seq ${seq} after ${last.seq}`)
      assert.ok(g.offset > last.offset, `partition ${g.partition}: offset ${g.offset} after ${last.offset}`)
    }
    lastInPartition.set(g.partition, { seq, offset: g.offset })
  }
  assert.ok(lastInPartition.size > 1, 'records spread over more than one partition')
}

describe('real Apache Kafka (scripts/kafka/kafka.sh): produce and consume, stop and restart', () => {
  const kafka = new TestKafka()
  const logs: LogEntry[] = []

  before(async () => { await kafka.start() }, { timeout: 720000 })
  after(async () => {
    await kafka.destroy()
    const notable = logs.filter((l) => !/Connection error|ECONNREFUSED|disconnected|Failed to connect/i.test(JSON.stringify(l.log)))
    if (notable.length > 0) console.log(`kafkajs warnings/errors (${logs.length} in all, connection errors during the restart left out):\n${notable.map((l) => `  ${l.namespace}: ${JSON.stringify(l.log)}`).join('\n')}`)
  }, { timeout: 90000 })

  it('100 records with keys and headers (acks = all) come back through a consumer group, then again after a broker restart', { timeout: 240000 }, async () => {
    const topic = 'smoke'
    const groupId = 'smoke-group'
    await kafka.createTopics([topic], 3)
    const client = kafka.client('smoke', { logs })
    const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false })
    await producer.connect()
    try {
      await produce(producer, topic, 0, 100)
      await produceMarkers(producer, topic, 'first', 3)
      assertRecords(await consume(client.consumer({ groupId, ...TEST_CONSUMER }), topic, 'first', 3), 0, 100)

      const before = kafka.brokers
      await kafka.restart()
      assert.deepEqual(kafka.brokers, before, 'same address after a restart')

      // The producer connected before the restart reconnects by itself; the group's committed
      // offsets survived, so the same group gets only the new records.
      await produce(producer, topic, 100, 100)
      await produceMarkers(producer, topic, 'second', 3)
      assertRecords(await consume(client.consumer({ groupId, ...TEST_CONSUMER }), topic, 'second', 3), 100, 100)

      // A new group reads the whole topic: nothing written before the restart was lost.
      await produceMarkers(producer, topic, 'whole', 3)
      assertRecords(await consume(client.consumer({ groupId: 'smoke-group-2', ...TEST_CONSUMER }), topic, 'whole', 3), 0, 200)
    } finally {
      await producer.disconnect()
    }
  })

  it('a consumer that runs through a broker stop and restart gets the records produced after it', { timeout: 120000 }, async () => {
    const topic = 'smoke-running'
    await kafka.createTopics([topic], 1)
    const client = kafka.client('smoke-running', { logs })
    const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    const consumer = client.consumer({ groupId: 'smoke-running-group', ...TEST_CONSUMER })
    const values: string[] = []
    await producer.connect()
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({ eachMessage: async ({ message }) => { values.push(message.value?.toString() ?? '') } })
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'before' }] })
      await waitFor(() => values.length === 1, 'the record produced before the stop', 30000)

      await kafka.restart()
      // kafkajs' consumer crashes on the lost connection and restarts itself (restartOnFailure);
      // it rejoins once the pre-restart member's session (TEST_CONSUMER: 6 s) has expired.
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'after' }] })
      await waitFor(() => values.includes('after'), 'the record produced after the restart', 60000)
      assert.deepEqual(values.filter((v) => v !== 'before'), ['after'])
    } finally {
      await consumer.disconnect()
      await producer.disconnect()
    }
  })
})
