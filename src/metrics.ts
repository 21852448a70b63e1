import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ReadinessReport } from './readiness.js'

/** The event-loop delay histogram's sampling interval (see collectDefaultMetrics below). */
export const EVENT_LOOP_SAMPLE_MS = 100

/**
 * The gateway's Prometheus metrics. One registry per gateway instance (tests run
 * several in one process). Plugins create their own metrics on `registry` and use
 * the shared counters (`messagesDropped`, `connectionsRefused`) for the dimensions
 * every operator dashboards across plugins.
 */
export class GatewayMetrics {
  readonly registry = new Registry()
  readonly connectionsTotal: Counter<'listener'>
  readonly connectionsRefused: Counter<'reason'>
  readonly wsWritesDropped: Counter
  readonly disconnects: Counter<'reason'>
  readonly messagesIn: Counter<'qos'>
  readonly messagesOut: Counter<'qos'>
  /**
   * What messagesIn / messagesOut count, by QoS (index): incremented on the message path
   * (`messagesInByQos[qos]++`), moved into the counters when they are collected (a scrape,
   * $SYS). prom-client's labelled inc() hashes and validates the labels on every call, which
   * was a measurable share of a QoS 1 message's CPU (two per message).
   */
  readonly messagesInByQos: number[] = [0, 0, 0]
  readonly messagesOutByQos: number[] = [0, 0, 0]
  readonly bytesIn: Counter
  readonly bytesOut: Counter
  readonly messagesDropped: Counter<'reason'>
  readonly subscriptionsRefused: Counter<'reason'>
  readonly retainedRefused: Counter<'reason'>
  readonly hookDuration: Histogram<'hook'>
  readonly connectionsCurrent: Gauge
  readonly socketsCurrent: Gauge<'listener'>
  readonly subscriptionsCurrent: Gauge
  readonly retainedMessages: Gauge

  constructor (sources: {
    connectedClients: () => number
    sockets: () => Map<string, number>
    subscriptions: () => number
    bytes: () => { read: number, written: number }
    readiness: () => ReadinessReport
    /** Retained messages (the retained ledger; cluster-wide in Redis mode); undefined before the store exists. */
    retained: () => number | Promise<number> | undefined
  }) {
    const registers = [this.registry]
    // The event-loop delay histogram samples with a libuv timer every `precision` ms, which
    // wakes an idle process that often: prom-client's 10 ms default was 100 wakeups/s, about
    // 0.5 % of a core per idle process here (issue #14: 56 processes on 2 cores). 100 ms keeps
    // the lag metrics (a stall delays the next sample by its length) at a tenth of the wakeups.
    collectDefaultMetrics({ register: this.registry, prefix: 'mqgw_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })
    this.connectionsTotal = new Counter({ name: 'mqgw_connections_total', help: 'MQTT sessions accepted (CONNACK 0)', labelNames: ['listener'], registers })
    this.connectionsRefused = new Counter({ name: 'mqgw_connections_refused_total', help: 'Connections refused, by reason', labelNames: ['reason'], registers })
    this.wsWritesDropped = new Counter({ name: 'mqgw_ws_writes_dropped_total', help: 'Writes to a WebSocket connection dropped because it had closed', registers })
    this.disconnects = new Counter({ name: 'mqgw_disconnects_total', help: 'Connections closed, by reason', labelNames: ['reason'], registers })
    this.messagesIn = perQosCounter('mqgw_messages_in_total', 'PUBLISH packets received from clients, by QoS', this.messagesInByQos, registers)
    this.messagesOut = perQosCounter('mqgw_messages_out_total', 'PUBLISH packets forwarded to clients, by QoS of the message', this.messagesOutByQos, registers)
    this.messagesDropped = new Counter({ name: 'mqgw_messages_dropped_total', help: 'Messages dropped, by reason', labelNames: ['reason'], registers })
    this.subscriptionsRefused = new Counter({ name: 'mqgw_subscriptions_refused_total', help: 'Topic filters answered with SUBACK 0x80 by a gateway limit, by reason', labelNames: ['reason'], registers })
    this.retainedRefused = new Counter({ name: 'mqgw_retained_refused_total', help: 'Retained PUBLISHes delivered but not retained because a retained-store limit was reached, by limit', labelNames: ['reason'], registers })
    this.hookDuration = new Histogram({
      name: 'mqgw_hook_duration_seconds',
      help: 'Time to run a plugin hook chain',
      labelNames: ['hook'],
      buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers
    })
    this.connectionsCurrent = new Gauge({
      name: 'mqgw_connections_current', help: 'Connected MQTT clients', registers,
      collect () { this.set(sources.connectedClients()) }
    })
    this.socketsCurrent = new Gauge({
      name: 'mqgw_sockets_current', help: 'Open transport connections, by listener', labelNames: ['listener'], registers,
      collect () {
        this.reset()
        for (const [listener, count] of sources.sockets()) this.set({ listener }, count)
      }
    })
    this.subscriptionsCurrent = new Gauge({
      name: 'mqgw_subscriptions_current', help: 'Subscriptions of connected clients', registers,
      collect () { this.set(sources.subscriptions()) }
    })
    // Readiness as metrics, so that alerts and dashboards see what /readyz says: the
    // whole node, and each check (listeners, redis, kafka...) on its own.
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_ready', help: '1 when every readiness check passes (/readyz 200), else 0', registers,
      collect () { this.set(sources.readiness().ready ? 1 : 0) }
    })
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_ready_check', help: 'Readiness of one dependency (listeners, redis, kafka...): 1 ready, 0 not', labelNames: ['check'], registers,
      collect () {
        this.reset()
        for (const [check, r] of Object.entries(sources.readiness().checks)) this.set({ check }, r.ready ? 1 : 0)
      }
    })
    this.retainedMessages = new Gauge({
      name: 'mqgw_retained_messages', help: 'Retained messages in the store (cluster-wide in Redis mode; those retained through the gateway since it kept the ledger)', registers,
      async collect () {
        // Bounded: a scrape must not hang while Redis is unreachable; the last value stays.
        let timer: ReturnType<typeof setTimeout> | undefined
        const n = await Promise.race([
          Promise.resolve(sources.retained()).catch(() => undefined),
          new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), 1000) })
        ])
        clearTimeout(timer)
        if (n !== undefined) this.set(n)
      }
    })
    // Byte counters are read from the sockets at scrape time rather than counted per
    // chunk: counting on the data path would cost a listener per socket.
    let lastRead = 0
    let lastWritten = 0
    // Both counters of one scrape (or $SYS tick) share one pass over the open sockets: it is
    // O(connections), ~15-20k sockets per process at scale (issue #14).
    let bytesNow: { read: number, written: number } | undefined
    const bytes = (): { read: number, written: number } => {
      if (bytesNow === undefined) {
        bytesNow = sources.bytes()
        setImmediate(() => { bytesNow = undefined })
      }
      return bytesNow
    }
    this.bytesIn = new Counter({
      name: 'mqgw_bytes_in_total', help: 'Bytes received on all listeners (transport level)', registers,
      collect () {
        const { read } = bytes()
        if (read > lastRead) this.inc(read - lastRead)
        lastRead = Math.max(lastRead, read)
      }
    })
    this.bytesOut = new Counter({
      name: 'mqgw_bytes_out_total', help: 'Bytes sent on all listeners (transport level)', registers,
      collect () {
        const { written } = bytes()
        if (written > lastWritten) this.inc(written - lastWritten)
        lastWritten = Math.max(lastWritten, written)
      }
    })
  }
}

/** A counter by QoS whose counts live in `counts` (plain numbers) until it is collected. */
function perQosCounter (name: string, help: string, counts: number[], registers: Registry[]): Counter<'qos'> {
  const collected = [0, 0, 0]
  return new Counter({
    name, help, labelNames: ['qos'], registers,
    collect () {
      for (let qos = 0; qos < counts.length; qos++) {
        const delta = counts[qos]! - collected[qos]!
        if (delta > 0) this.inc({ qos: String(qos) }, delta)
        collected[qos] = counts[qos]!
      }
    }
  })
}
