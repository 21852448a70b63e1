import { z } from 'zod'
import { isValidTopicFilter } from '../../src/topic.js'

const kafkaTopic = z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'not a valid Kafka topic name')

export const kafkaConfigSchema = z.strictObject({
  brokers: z.array(z.string().min(1)).min(1),
  clientId: z.string().min(1).default('mqtt-gateway'),
  /** MQTT → Kafka: the first route whose filter matches a PUBLISH takes it (it is then not published to MQTT subscribers directly). */
  routes: z.array(z.strictObject({
    mqtt: z.string().refine(isValidTopicFilter, 'not a valid MQTT topic filter'),
    kafkaTopic,
    /** Record key: one client's (or user's, or topic's) messages stay ordered in one partition. */
    key: z.enum(['clientid', 'username', 'topic']).default('clientid')
  })).default([]),
  /** Kafka → MQTT: records are published to the MQTT topic in their `mqtt-topic` header. */
  consume: z.array(z.strictObject({
    kafkaTopic,
    /** QoS when the record has no `mqtt-qos` header. */
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0)
  })).default([]),
  /**
   * One consumer group for all nodes: each record is consumed by one node and reaches
   * the subscribers of every node through the cluster bus (see README).
   */
  groupId: z.string().min(1).default('mqtt-gateway-bridge'),
  /** Routed QoS 0 messages waiting for Kafka; beyond this they are dropped (counted). */
  maxBufferedQos0: z.number().int().min(0).default(10000),
  /**
   * How long a routed QoS 1/2 PUBLISH may wait for Kafka (queueing, connect, retries)
   * before it is refused without PUBACK. Must stay below hooks.timeoutMs (default 5000):
   * the plugin answers first, with its own reason.
   */
  produceTimeoutMs: z.number().int().min(100).default(4000),
  connectionTimeoutMs: z.number().int().min(100).default(3000),
  /**
   * A produce request waits until its oldest record is this old (Kafka's own producer: linger.ms,
   * 5 ms by default since Kafka 4.0): fewer, larger requests cost the gateway and Kafka less CPU
   * per message, and add up to this much to a routed message's latency. 0 (default): the records
   * handed over in one turn leave together, after that turn. bench/kafka, pattern 2 paced at
   * 4,000 msgs/s, 6 alternating pairs: 2 ms cut the gateway's CPU per message by ~19 % and Kafka's
   * by ~28 %, but p50 went from 3.8 to 5.4 ms and p99 from 21 to 29 ms (medians): off by default,
   * as the bridge's goal is latency; a deployment short of CPU turns it on. Composes with
   * fetchPauseMs (README, Kafka bridge).
   */
  produceLingerMs: z.number().int().min(0).max(50).default(0),
  /**
   * After a fetch that brought records, the bridge's consumer starts its next fetch this much later,
   * so that one fetch carries the records produced meanwhile instead of one fetch per produce
   * request; adds up to this much to a consumed record's latency. An idle topic is still long-polled
   * without a pause. 0 (default): the next fetch at once. It was 2 while a publisher's reads were
   * handled one TCP segment per produce round trip (Aedes patch, lib/read-turns.js, fixed): then
   * every produce request carried a few records and woke a fetch of its own, and the pause doubled
   * pattern 2's capacity. Since the fix, 6 alternating pairs of bench/kafka (README, Kafka bridge):
   * without the pause the closed loop is faster (ratio medians 0.48-0.65 vs 0.42-0.54) at less CPU
   * per message (gateway 58-69 vs 67-84 µs), and paced at 2,000 msgs/s p50 is ~1 ms lower for ~5 %
   * more gateway CPU per message. A deployment short of CPU at low rates may still set 1-2.
   */
  fetchPauseMs: z.number().int().min(0).max(50).default(0),
  /**
   * Consumed offsets are committed after delivery, at most this often (0: after every
   * delivered batch). Fewer commits spare Kafka an append each; a node that dies redelivers
   * the records of up to this long (at least once).
   */
  commitIntervalMs: z.number().int().min(0).max(60000).default(100)
})
export type KafkaConfig = z.infer<typeof kafkaConfigSchema>
