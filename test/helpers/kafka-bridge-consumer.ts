/**
 * A gateway node's Kafka consumer alone, as its own OS process, so that a test can SIGKILL it
 * (a node dying) mid-delivery: the bridge's real client (plugins/kafka/kafka-client.ts) consumes
 * `topic` in `groupId` and "delivers" each batch by printing it as a JSON line on stdout:
 *   {"event":"deliver","values":["a","b"],"offsets":["4","5"]}
 * A batch holding a record whose value is `holdValue` is printed with "event":"holding" and its
 * delivery never completes (as a publish stuck on a dead Redis would), so its offsets are never
 * committed by a correct client. Usage: node kafka-bridge-consumer.js BROKER TOPIC GROUP [HOLD]
 */
import { createPlatformaticClient } from '../../plugins/kafka/kafka-client.js'
import { createLogger } from '../../src/log.js'

const [broker, topic, groupId, holdValue] = process.argv.slice(2)
if (broker === undefined || topic === undefined || groupId === undefined) {
  process.stderr.write('usage: kafka-bridge-consumer.js BROKER TOPIC GROUP [HOLD]\n')
  process.exit(2)
}
const log = createLogger('warn', process.stderr)
const client = createPlatformaticClient({ brokers: [broker], clientId: `commit-test-${process.pid}`, connectionTimeoutMs: 3000, produceTimeoutMs: 4000 }, log)
const line = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }
await client.consume([topic], groupId, async (records) => {
  const values = records.map((r) => r.value?.toString() ?? '')
  const offsets = records.map((r) => String(r.offset))
  if (holdValue !== undefined && values.includes(holdValue)) {
    line({ event: 'holding', values, offsets })
    await new Promise<void>(() => {})
  }
  line({ event: 'deliver', values, offsets })
}, () => {})
process.on('SIGTERM', () => { void client.close().then(() => process.exit(0)) })
