/**
 * Kafka bridge (issue: Kafka bridge): end-to-end QoS 1 msgs/s and latency for pattern 2
 * (client → Kafka → subscriber) against a direct topic on the same gateway process, side by
 * side. Starts its own Kafka (scripts/kafka/kafka.sh); load generator in its own process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestKafka } from '../test/helpers/kafka.js'
import { loadgen, report, spawnGateway, stopGateway } from './lib.js'

interface PubSubResult { messagesPerSecond: number, p50ms: number, p99ms: number, received: number }

const kafka = new TestKafka()
await kafka.start()
try {
  await kafka.createTopics(['chat'], 1)
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-bench-kafka-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `log: { level: warn }
flow: {}
kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: bench-bridge
  routes: [ { mqtt: "chat/#", kafkaTopic: chat } ]
  consume: [ { kafkaTopic: chat } ]
`)
  const gw = await spawnGateway(['--config', file], {}, 'readyz', 120000)
  try {
    const url = `mqtt://127.0.0.1:${gw.ports.mqtt}`
    // The bridge's consumer starts at the end of the topic: warm up until messages come back.
    for (let i = 0; i < 30; i++) {
      const warm = await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic: 'chat/warm', qos: 1, count: 200, inflight: 20, timeLimitMs: 3000 })
      if (warm.received >= 200) break
    }
    const rows: Array<Record<string, string | number>> = []
    const raw: Record<string, unknown> = {}
    for (const [name, topic] of [['direct topic (no Kafka)', 'direct/room'], ['pattern 2: client → Kafka → subscriber', 'chat/room']] as const) {
      const r = await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic, qos: 1, count: 10000, inflight: 100, payloadBytes: 100, timeLimitMs: 60000 })
      raw[name] = r
      rows.push({ path: name, 'msgs/s': r.messagesPerSecond, 'p50 ms': r.p50ms, 'p99 ms': r.p99ms, received: r.received })
    }
    const base = rows[0]!['msgs/s'] as number
    for (const row of rows) row['ratio to direct'] = (row['msgs/s'] as number) / base
    report('Kafka bridge: QoS 1 end to end, 10,000 messages, 100 in flight, same gateway', rows, raw)
  } finally {
    await stopGateway(gw)
  }
} finally {
  await kafka.destroy()
}
process.exit(0)
