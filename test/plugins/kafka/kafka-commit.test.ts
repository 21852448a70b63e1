import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Partitioners, type Admin, type Producer } from 'kafkajs'
import { createPlatformaticClient } from '../../../plugins/kafka/kafka-client.js'
import { createLogger } from '../../../src/log.js'
import { LogCapture } from '../../helpers/gateway.js'
import { TestKafka } from '../../helpers/kafka.js'
import { pollUntil, sleep, waitFor } from '../../helpers/mqtt.js'

const CHILD = join(process.cwd(), 'dist/test/helpers/kafka-bridge-consumer.js')

interface Line { event: 'deliver' | 'holding', values: string[], offsets: string[] }

/** The bridge's consumer in its own process (test/helpers/kafka-bridge-consumer.ts), killable like a node. */
function consumerProcess (broker: string, topic: string, groupId: string, hold?: string): { child: ChildProcess, lines: Line[], delivered: () => string[], exited: Promise<void>, stderr: () => string } {
  const child = spawn(process.execPath, [CHILD, broker, topic, groupId, ...(hold !== undefined ? [hold] : [])], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Line[] = []
  let rest = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => {
    const parts = (rest + c.toString()).split('\n')
    rest = parts.pop() ?? ''
    for (const p of parts) if (p !== '') lines.push(JSON.parse(p) as Line)
  })
  child.stderr!.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, lines, delivered: () => lines.filter((l) => l.event === 'deliver').flatMap((l) => l.values), exited, stderr: () => err }
}

describe('Kafka bridge consumer: offsets are committed after delivery, close() commits the last batch (real Kafka)', () => {
  const kafka = new TestKafka()
  let producer: Producer
  let admin: Admin
  const children: ChildProcess[] = []

  const send = async (topic: string, values: string[]): Promise<void> => {
    await producer.send({ topic, acks: -1, messages: values.map((value) => ({ value })) })
  }
  /** The group's committed offset of partition 0 (-1 when none). */
  const committed = async (groupId: string, topic: string): Promise<bigint> => {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
    return BigInt(t?.partitions.find((p) => p.partition === 0)?.offset ?? '-1')
  }

  before(async () => {
    await kafka.start()
    await kafka.createTopics(['commit-crash', 'commit-close'], 1)
    producer = kafka.client('commit-test').producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    admin = kafka.client('commit-admin').admin()
    await admin.connect()
  })
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await admin?.disconnect().catch(() => {})
    await producer?.disconnect().catch(() => {})
    await kafka.destroy()
  })

  it('a delivered batch is committed; a record whose delivery had not completed when its node died is redelivered to the next consumer of the group, the delivered ones are not', async () => {
    const topic = 'commit-crash'
    const group = 'commit-crash-group'
    const first = consumerProcess(kafka.brokers[0]!, topic, group, 'held')
    children.push(first.child)
    // A new group starts at the end of the topic once it joined: probe until a record comes through.
    const probed = await pollUntil(async () => {
      await send(topic, ['probe'])
      return first.delivered().includes('probe')
    }, (ok) => ok, 60000, 300)
    assert.ok(probed, `the consumer delivers (stderr: ${first.stderr()})`)
    await send(topic, ['a1', 'a2', 'a3', 'a4', 'a5'])
    await waitFor(() => first.delivered().includes('a5'), 'a1..a5 delivered', 15000)
    const a5 = first.lines.flatMap((l) => l.values.map((v, i) => [v, l.offsets[i]!] as const)).find(([v]) => v === 'a5')!
    const afterA = BigInt(a5[1]) + 1n
    // Positive: the delivered batch's offset is committed (in the background, after delivery).
    assert.equal(await pollUntil(() => committed(group, topic), (o) => o === afterA, 15000, 50), afterA, 'the delivered batch is committed')

    await send(topic, ['held'])
    await waitFor(() => first.lines.some((l) => l.event === 'holding'), 'the held batch reached delivery', 15000)
    // Not committed while its delivery runs (a commit on receipt would show here within milliseconds);
    // the redelivery below is the check that does not depend on this bound.
    assert.equal(await pollUntil(() => committed(group, topic), (o) => o !== afterA, 1000, 50), afterA, 'a record being delivered is not committed')
    first.child.kill('SIGKILL')
    await first.exited

    await send(topic, ['marker'])
    // The next consumer of the group starts at the committed offset, once the dead member's session expired.
    const next = consumerProcess(kafka.brokers[0]!, topic, group)
    children.push(next.child)
    await waitFor(() => next.delivered().includes('marker'), `the marker through the restarted consumer (stderr: ${next.stderr()})`, 60000)
    assert.deepEqual(next.delivered(), ['held', 'marker'], 'exactly the undelivered record and the marker: nothing delivered before the crash comes again')
    next.child.kill('SIGTERM')
    await next.exited
  })

  it('close() while a batch is being delivered waits for it and commits it: the next consumer of the group does not get it again', async () => {
    const topic = 'commit-close'
    const group = 'commit-close-group'
    const client = createPlatformaticClient({ brokers: kafka.brokers, clientId: 'commit-close-1', connectionTimeoutMs: 3000, produceTimeoutMs: 4000 }, createLogger('warn', new LogCapture()))
    const got: string[] = []
    let closing: Promise<void> | undefined
    await client.consume([topic], group, async (records) => {
      const values = records.map((r) => r.value?.toString() ?? '')
      if (values.includes('last')) {
        // The node shuts down while this batch is still being published to MQTT.
        closing = client.close()
        await sleep(300)
      }
      got.push(...values)
    }, () => {})
    const probed = await pollUntil(async () => {
      await send(topic, ['probe'])
      return got.includes('probe')
    }, (ok) => ok, 60000, 300)
    assert.ok(probed, 'the consumer delivers')
    await send(topic, ['b1', 'b2', 'last'])
    await waitFor(() => closing !== undefined, 'close() called during the last delivery', 15000)
    await closing
    assert.ok(got.includes('last'), 'the batch was delivered')
    const [end] = await admin.fetchTopicOffsets(topic)
    assert.equal(await committed(group, topic), BigInt(end!.offset), 'close() committed the batch it let finish')

    await send(topic, ['marker'])
    const again = createPlatformaticClient({ brokers: kafka.brokers, clientId: 'commit-close-2', connectionTimeoutMs: 3000, produceTimeoutMs: 4000 }, createLogger('warn', new LogCapture()))
    const got2: string[] = []
    try {
      await again.consume([topic], group, async (records) => { got2.push(...records.map((r) => r.value?.toString() ?? '')) }, () => {})
      await waitFor(() => got2.includes('marker'), 'the marker through the restarted consumer', 30000)
      assert.deepEqual(got2, ['marker'], 'nothing delivered before close() comes again')
    } finally {
      await again.close()
    }
  })
})
