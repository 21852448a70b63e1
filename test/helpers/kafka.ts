import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Kafka, logLevel, type LogEntry, type Producer } from 'kafkajs'
import { collect, connectClient, endClient, pollUntil } from './mqtt.js'

/** scripts/kafka/kafka.sh, found upwards from this file (test/helpers/ in the sources, dist/test/helpers/ once built). */
function findScript (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'scripts/kafka/kafka.sh')
    if (existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  return join(process.cwd(), 'scripts/kafka/kafka.sh')
}
export const KAFKA_SCRIPT = findScript()

/** Runs kafka.sh with a time bound; rejects with its stderr on a non-zero exit or a timeout. */
function kafkaSh (args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', [KAFKA_SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.once('error', (err) => { clearTimeout(timer); reject(new Error(`kafka.sh could not run: ${err.message}`)) })
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(stdout.trim())
      else reject(new Error(`kafka.sh ${args.join(' ')} ${timedOut ? `timed out after ${timeoutMs / 1000} s` : `exited ${code}`}:\n${stderr}`))
    })
  })
}

/** The jar download (Maven, first run on a machine only) happens once per test process, with its own bound. */
let fetched: Promise<string> | undefined
export function fetchKafka (timeoutMs = 600000): Promise<string> {
  fetched ??= kafkaSh(['fetch'], timeoutMs).catch((err: unknown) => { fetched = undefined; throw err })
  return fetched
}

export interface TestKafkaOptions {
  /** Extra server.properties lines (e.g. `{ 'num.partitions': '3' }`), written to DIR/extra.properties. */
  serverProperties?: Record<string, string>
  /** Bound for one start (the broker must answer within it); default 90 s. */
  startTimeoutMs?: number
}

/**
 * A real single-node Apache Kafka (KRaft) of our own on 127.0.0.1, run by scripts/kafka/kafka.sh in
 * a temporary directory: free ports, data in the directory. stop() keeps the data and the ports, so
 * start() after stop() (or restart()) brings the same broker back on the same address with the same
 * topics, records and committed offsets. The broker is stopped by pid (SIGTERM, then SIGKILL), and
 * also by kafka.sh's watcher if this test process dies before stop().
 */
export class TestKafka {
  readonly dir = mkdtempSync(join(tmpdir(), 'mqgw-kafka-'))
  brokers: string[] = []
  readonly #startTimeoutMs: number

  constructor (options: TestKafkaOptions = {}) {
    this.#startTimeoutMs = options.startTimeoutMs ?? 90000
    const props = options.serverProperties ?? {}
    if (Object.keys(props).length > 0) {
      writeFileSync(join(this.dir, 'extra.properties'), Object.entries(props).map(([k, v]) => `${k}=${v}\n`).join(''))
    }
  }

  /** The broker's log (DIR/kafka.log), for failure messages. */
  get logFile (): string { return join(this.dir, 'kafka.log') }

  async start (): Promise<void> {
    await fetchKafka()
    const s = Math.ceil(this.#startTimeoutMs / 1000)
    const bootstrap = await kafkaSh(['start', this.dir], this.#startTimeoutMs + 30000,
      { KAFKA_START_TIMEOUT: String(s), KAFKA_WATCH_PID: String(process.pid) })
    this.brokers = [bootstrap.split('\n').pop()!.trim()]
  }

  /** Stops the broker (SIGTERM; SIGKILL after 30 s); its data and ports stay for a later start(). */
  async stop (): Promise<void> {
    await kafkaSh(['stop', this.dir], 60000)
  }

  async restart (): Promise<void> {
    await this.stop()
    await this.start()
  }

  /** Stops the broker and removes its directory. */
  async destroy (): Promise<void> {
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** A kafkajs client for this broker (see kafkaClient). */
  client (clientId = 'test', options: KafkaClientOptions = {}): Kafka {
    return kafkaClient(this.brokers, clientId, options)
  }

  /** Creates topics (idempotent) and waits until each partition has a leader. */
  createTopics (names: string[], partitions = 1): Promise<void> {
    return createTopics(this.brokers, names, partitions)
  }
}

/**
 * Consumer settings for tests (kafkajs defaults in brackets): a fetch long-poll of 1 s [5 s], which
 * is also how long consumer.disconnect() waits; a 6 s session [30 s], the broker's minimum. After a
 * broker restart the group keeps the member that was there before the stop until its session
 * expires, and a consumer that crashed and restarted rejoins only then: about 29 s with the
 * defaults, about 5 s with these.
 */
export const TEST_CONSUMER = { maxWaitTimeInMs: 1000, sessionTimeout: 6000, heartbeatInterval: 1000 } as const

export interface KafkaClientOptions {
  /** kafkajs log level; default WARN. Entries at or above it go to `logs` and, with MQGW_KAFKA_LOG=1, to stderr. */
  level?: logLevel
  /** Where to collect the client's log entries (for assertions or failure messages). */
  logs?: LogEntry[]
}

/**
 * A kafkajs client with short, bounded connection and retry settings for tests. Its log goes to
 * `options.logs` (not to the console, which would mix with the test runner's output) unless
 * MQGW_KAFKA_LOG=1.
 */
export function kafkaClient (brokers: string[], clientId = 'test', options: KafkaClientOptions = {}): Kafka {
  const logs = options.logs
  const echo = process.env.MQGW_KAFKA_LOG === '1'
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 10 },
    logLevel: options.level ?? logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      logs?.push(entry)
      if (echo) process.stderr.write(`[kafkajs ${entry.namespace} ${logLevel[entry.level]}] ${JSON.stringify(entry.log)}\n`)
    }
  })
}

/** Creates topics with replication factor 1 (an existing topic is left as it is) and waits for their leaders. */
export async function createTopics (brokers: string[], names: string[], partitions = 1): Promise<void> {
  const admin = kafkaClient(brokers, 'test-admin').admin()
  await admin.connect()
  try {
    await admin.createTopics({
      topics: names.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1 })),
      waitForLeaders: true,
      timeout: 15000
    })
    // createTopics' waitForLeaders reads the metadata once; make sure every partition is led.
    const led = await pollUntil(async () => {
      const { topics } = await admin.fetchTopicMetadata({ topics: names })
      return topics.every((t) => t.partitions.length >= partitions && t.partitions.every((p) => p.leader >= 0))
    }, (ok) => ok, 15000, 100)
    if (!led) throw new Error(`topics ${names.join(', ')} have no leaders after 15 s`)
  } finally {
    await admin.disconnect()
  }
}

/**
 * Returns once the gateway at `mqttUrl` delivers what is produced to `kafkaTopic` (its bridge's
 * consumer group starts at the end of each topic once it joined): a probe record, addressed to
 * MQTT `mqttTopic` by its mqtt-topic header, is produced every 500 ms until an MQTT subscriber
 * gets one (60 s at most); fails the calling test if none arrived.
 */
export async function awaitBridgeConsuming (mqttUrl: string, producer: Producer, kafkaTopic: string, mqttTopic: string): Promise<void> {
  const probe = await connectClient(mqttUrl)
  try {
    const got = collect(probe)
    await probe.subscribeAsync(mqttTopic, { qos: 0 })
    const probed = await pollUntil(async () => {
      await producer.send({ topic: kafkaTopic, messages: [{ value: 'probe', headers: { 'mqtt-topic': mqttTopic } }] })
      return got.length
    }, (n) => n > 0, 60000, 500)
    assert.ok(probed > 0, `the gateway consumes Kafka (topic ${kafkaTopic}, within 60 s)`)
  } finally {
    await endClient(probe)
  }
}
