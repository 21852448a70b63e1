/**
 * Load generator, run as its own process so that it never shares an event loop with
 * the broker it measures. Every loop is bounded in count and in time.
 *
 *   node dist/bench/loadgen.js '{"mode":"connect","url":"mqtt://127.0.0.1:1883","count":2000,"concurrency":50,"clientPrefix":"c","username":"u","password":"pw"}'
 *   node dist/bench/loadgen.js '{"mode":"publish","url":"mqtt://127.0.0.1:1883","count":20000,"inflight":100,"topic":"t/x","qos":1,"username":"u","password":"pw"}'
 *
 * Prints one JSON line with the measurement.
 */
import type { Socket } from 'node:net'
import mqtt, { type IClientOptions } from 'mqtt'

interface Common { url: string, username?: string, password?: string, timeLimitMs?: number }
/**
 * `subscribe`: after CONNACK each client subscribes (QoS 1) to this topic with `%i` replaced by its
 * index, a filter of its own as `user/${username}/inbox` gives each user; the latency then runs to
 * the SUBACK, and `subackP50ms`/`subackP99ms` time the SUBSCRIBE alone.
 */
interface ConnectJob extends Common { mode: 'connect', count: number, concurrency: number, clientPrefix: string, uniqueUsers?: boolean, subscribe?: string }
interface PublishJob extends Common { mode: 'publish', count: number, inflight: number, topic: string, qos: 0 | 1, payloadBytes?: number, clientId?: string }
/**
 * One subscriber (on `url`) and one publisher (on `publishUrl`): throughput and end-to-end latency.
 * Closed loop by default (`inflight` messages not yet received). `rate`: paced (open loop) at that
 * many msgs/s, `inflight` then only caps a stalled path; each message carries its DUE time, so a
 * send held back (window full, busy generator) counts in its latency (no coordinated omission).
 * `noDelay`: TCP_NODELAY on the generator's two sockets (mqtt.js leaves Nagle on; Go, Mosquitto's
 * and Paho's clients turn it off).
 */
interface PubSubJob extends Common { mode: 'pubsub', publishUrl: string, count: number, inflight: number, topic: string, qos: 0 | 1, payloadBytes?: number, persistentSubscriber?: boolean, rate?: number, noDelay?: boolean }
type Job = ConnectJob | PublishJob | PubSubJob

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]!
}

async function connectOnce (job: ConnectJob, i: number): Promise<{ ms: number, client: mqtt.MqttClient | undefined, code: number, subackMs?: number }> {
  const started = performance.now()
  const opts: IClientOptions = {
    clientId: `${job.clientPrefix}-${i}`, reconnectPeriod: 0, connectTimeout: 10000, clean: true,
    ...(job.username ? { username: job.uniqueUsers ? `${job.username}-${i}` : job.username, password: job.password ?? '' } : {})
  }
  return new Promise((resolve) => {
    const client = mqtt.connect(job.url, opts)
    client.once('connect', () => {
      if (job.subscribe === undefined) { resolve({ ms: performance.now() - started, client, code: 0 }); return }
      const sent = performance.now()
      client.subscribe(job.subscribe.replaceAll('%i', String(i)), { qos: 1 }, (err, granted) => {
        const now = performance.now()
        const ok = err === null && granted?.[0]?.qos === 1
        if (!ok) client.end(true)
        resolve({ ms: now - started, client: ok ? client : undefined, code: ok ? 0 : -2, subackMs: now - sent })
      })
    })
    client.once('error', (err) => {
      client.end(true)
      resolve({ ms: performance.now() - started, client: undefined, code: (err as { code?: number }).code ?? -1 })
    })
  })
}

async function runConnect (job: ConnectJob): Promise<object> {
  const deadline = Date.now() + (job.timeLimitMs ?? 60000)
  const latencies: number[] = []
  const subacks: number[] = []
  const clients: mqtt.MqttClient[] = []
  let next = 0
  let refused = 0
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < job.count && Date.now() < deadline) {
      const r = await connectOnce(job, next++)
      if (r.client) clients.push(r.client)
      else refused++
      latencies.push(r.ms)
      if (r.subackMs !== undefined) subacks.push(r.subackMs)
    }
  }
  await Promise.all(Array.from({ length: job.concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  await Promise.all(clients.map((c) => c.endAsync(true)))
  latencies.sort((a, b) => a - b)
  subacks.sort((a, b) => a - b)
  return { connected: clients.length, refused, seconds, connectsPerSecond: clients.length / seconds, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), ...(subacks.length > 0 ? { subackP50ms: percentile(subacks, 50), subackP99ms: percentile(subacks, 99) } : {}) }
}

async function runPublish (job: PublishJob): Promise<object> {
  const client = await mqtt.connectAsync(job.url, {
    clientId: job.clientId ?? `pub-${process.pid}`, reconnectPeriod: 0,
    ...(job.username ? { username: job.username, password: job.password ?? '' } : {})
  })
  const payload = Buffer.alloc(job.payloadBytes ?? 100, 120)
  const deadline = Date.now() + (job.timeLimitMs ?? 60000)
  let sent = 0
  let acked = 0
  const started = performance.now()
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (sent < job.count && sent - acked < job.inflight && Date.now() < deadline) {
        sent++
        client.publish(job.topic, payload, { qos: job.qos }, () => {
          acked++
          if (acked === sent && (sent === job.count || Date.now() >= deadline)) resolve()
          else pump()
        })
      }
    }
    pump()
  })
  const seconds = (performance.now() - started) / 1000
  await client.endAsync()
  return { published: acked, seconds, messagesPerSecond: acked / seconds }
}

async function runPubSub (job: PubSubJob): Promise<object> {
  const auth = job.username ? { username: job.username, password: job.password ?? '' } : {}
  // persistentSubscriber: a clean:false session, so every message also goes through the
  // session store's offline-queue writes (queued, then cleared by the PUBACK).
  const subId = `bench-sub-${process.pid}`
  const sub = await mqtt.connectAsync(job.url, { clientId: subId, reconnectPeriod: 0, clean: job.persistentSubscriber !== true, ...auth })
  const pub = await mqtt.connectAsync(job.publishUrl, { clientId: `bench-pub-${process.pid}`, reconnectPeriod: 0, ...auth })
  await sub.subscribeAsync(job.topic, { qos: job.qos })
  if (job.noDelay === true) for (const c of [sub, pub]) (c.stream as Socket).setNoDelay(true)
  const latencies: number[] = []
  const deadline = Date.now() + (job.timeLimitMs ?? 60000)
  const padding = Buffer.alloc(Math.max(0, (job.payloadBytes ?? 100) - 8), 120)
  let received = 0
  let sent = 0
  let acked = 0
  let late = 0
  const started = performance.now()
  const cpu0 = process.cpuUsage()
  const perMs = job.rate !== undefined && job.rate > 0 ? job.rate / 1000 : 0
  let ticker: NodeJS.Timeout | undefined
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
    sub.on('message', (_topic, payload) => {
      latencies.push(performance.now() - payload.readDoubleLE(0))
      if (++received >= job.count) { clearTimeout(timer); resolve() }
      else if (perMs === 0) pump()
    })
    const send = (stamp: number): void => {
      const payload = Buffer.alloc(8 + padding.length)
      payload.writeDoubleLE(stamp, 0)
      padding.copy(payload, 8)
      sent++
      pub.publish(job.topic, payload, { qos: job.qos }, () => { acked++ })
    }
    const pump = (): void => {
      // The window counts messages not yet received, so latency is not queueing in the generator.
      while (sent < job.count && sent - received < job.inflight && Date.now() < deadline) send(performance.now())
    }
    // Paced: every ms, what fell due since (message k is due at started + k / rate), stamped
    // with its due time. A full window holds sends back; that wait is in their latency.
    const tick = (): void => {
      const now = performance.now()
      while (sent < job.count && started + sent / perMs <= now && sent - received < job.inflight) {
        if (now - (started + sent / perMs) > 1) late++
        send(started + sent / perMs)
      }
    }
    if (perMs > 0) ticker = setInterval(tick, 1)
    else pump()
  })
  if (ticker) clearInterval(ticker)
  const seconds = (performance.now() - started) / 1000
  // The generator's own CPU over the run: near 100 % of `seconds`, it (not the broker) was the limit.
  const cpu = process.cpuUsage(cpu0)
  const generatorBusy = (cpu.user + cpu.system) / 1e6 / seconds
  await Promise.all([sub.endAsync(true), pub.endAsync(true)])
  // A session left behind would keep queueing the next run's messages: a clean connect drops it.
  if (job.persistentSubscriber === true) await (await mqtt.connectAsync(job.url, { clientId: subId, reconnectPeriod: 0, clean: true, ...auth })).endAsync()
  latencies.sort((a, b) => a - b)
  return { sent, acked, received, seconds, messagesPerSecond: received / seconds, p50ms: percentile(latencies, 50), p90ms: percentile(latencies, 90), p99ms: percentile(latencies, 99), maxms: latencies.at(-1) ?? 0, lateSends: late, generatorBusy }
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job
const result = job.mode === 'connect' ? await runConnect(job) : job.mode === 'publish' ? await runPublish(job) : await runPubSub(job)
process.stdout.write(JSON.stringify(result) + '\n')
process.exit(0)
