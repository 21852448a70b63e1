import type { PublishPacket } from 'aedes'
import type { Metric } from 'prom-client'
import { connectedClients, packetCounters, publishAsBroker } from '../../src/aedes/internals.js'
import { definePlugin } from '../../src/plugin.js'
import { takeoverTopic } from '../../src/persistence/client-registry.js'
import { LoadAverage } from './load-average.js'
import { OfflineSessions } from './offline-sessions.js'
import { prefixProblems, resolvePrefix, sysConfigSchema } from './schema.js'

/** Sum of every series of a counter or gauge (its collect() runs, as for a scrape). */
async function total (metric: Metric | undefined): Promise<number> {
  if (metric === undefined) return 0
  const { values } = await metric.get()
  let n = 0
  for (const v of values) n += v.value
  return n
}

/**
 * Mosquitto's `$SYS/broker/...` statistics (https://mosquitto.org/man/mosquitto-8.html),
 * published by the broker itself (not through a client: the core refuses client PUBLISHes
 * to `$SYS/`, and the ACL lets only superusers subscribe to them), retained, QoS 0, every
 * `sys.intervalS` seconds; like Mosquitto, a topic is published at start and then only when
 * its value changed. The numbers are the gateway's own metrics (the same as /metrics), so
 * `$SYS` and Prometheus never disagree.
 */
export const sysPlugin = definePlugin({
  name: 'sys',
  configKey: 'sys',
  schema: sysConfigSchema,
  check: (section, config) => prefixProblems(section.prefix, config.persistence.type === 'redis'),
  setup: (ctx) => {
    const { broker, metrics, log } = ctx
    const prefix = resolvePrefix(ctx.config.prefix, ctx.gatewayConfig.node.id)
    const packets = packetCounters(broker)
    const persistence = ctx.gatewayConfig.persistence
    const offline = new OfflineSessions(persistence.type === 'redis' ? persistence.sessionExpiryS * 1000 : undefined)
    const started = Date.now()
    let maxConnected = 0

    ctx.hook('clientConnected', ({ client }) => {
      offline.connected(client.id)
      maxConnected = Math.max(maxConnected, broker.connectedClients)
    })
    // Connections closed because their client id connected on another node (a takeover):
    // their sessions are online there, not offline here.
    const takenOver = new WeakSet<object>()
    ctx.hook('clientDisconnected', ({ client }) => {
      if (client.clean || takenOver.has(client)) return
      // A takeover on this node: the id is connected again already (Aedes' clients map).
      if (connectedClients(broker)[client.id] === undefined) offline.disconnected(client.id)
    })
    // In Redis mode a node is told when a client id it held connects on another node
    // (src/persistence/client-registry.ts): a persistent session that comes back elsewhere is
    // no longer offline here. Alone (memory mode), every connect is local: clientConnected.
    const onTakenOver = (packet: { payload: Buffer | string }, cb: () => void): void => {
      const clientId = packet.payload.toString()
      offline.connected(clientId)
      // The core closes the local connection of that id (asynchronously) on this same message.
      const local = connectedClients(broker)[clientId]
      if (local) takenOver.add(local)
      cb()
    }
    if (persistence.type === 'redis') broker.subscribe(takeoverTopic(ctx.gatewayConfig.node.id), onTakenOver, () => {})

    const loads = {
      'messages/received': new LoadAverage(),
      'messages/sent': new LoadAverage(),
      'publish/received': new LoadAverage(),
      'publish/sent': new LoadAverage(),
      'publish/dropped': new LoadAverage(),
      'bytes/received': new LoadAverage(),
      'bytes/sent': new LoadAverage(),
      connections: new LoadAverage()
    }
    let lastUpdate = Date.now()

    const snapshot = async (): Promise<Map<string, string>> => {
      const now = Date.now()
      const dtS = (now - lastUpdate) / 1000
      lastUpdate = now
      const connected = broker.connectedClients
      maxConnected = Math.max(maxConnected, connected)
      const registry = metrics.registry
      const counts = {
        'messages/received': packets.received,
        'messages/sent': packets.sent,
        'publish/received': await total(metrics.messagesIn),
        'publish/sent': await total(metrics.messagesOut),
        // Mosquitto's "dropped": messages a full queue could not take (flow window, offline queue).
        'publish/dropped': await total(registry.getSingleMetric('mqgw_flow_dropped_total')) + await total(registry.getSingleMetric('mqgw_offline_queue_dropped_total')),
        'bytes/received': await total(metrics.bytesIn),
        'bytes/sent': await total(metrics.bytesOut),
        connections: await total(metrics.connectionsTotal)
      }
      const values = new Map<string, string>([
        ['version', `mqtt-gateway version ${ctx.version}`],
        ['uptime', `${Math.floor((now - started) / 1000)} seconds`],
        ['clients/connected', String(connected)],
        ['clients/disconnected', String(offline.count(now))],
        ['clients/total', String(connected + offline.count(now))],
        ['clients/maximum', String(maxConnected)],
        ['messages/received', String(counts['messages/received'])],
        ['messages/sent', String(counts['messages/sent'])],
        ['publish/messages/received', String(counts['publish/received'])],
        ['publish/messages/sent', String(counts['publish/sent'])],
        ['publish/messages/dropped', String(counts['publish/dropped'])],
        ['bytes/received', String(counts['bytes/received'])],
        ['bytes/sent', String(counts['bytes/sent'])],
        ['subscriptions/count', String(await total(metrics.subscriptionsCurrent))],
        ['retained messages/count', String(await total(metrics.retainedMessages))],
        ['heap/current', String(process.memoryUsage().heapUsed)]
      ])
      for (const [name, load] of Object.entries(loads)) {
        load.update(counts[name as keyof typeof counts], dtS)
        for (const [window, value] of load.values()) values.set(`load/${name}/${window}`, value)
      }
      return values
    }

    // What each topic last carried: a topic is published again only when its value changed
    // (a failed publish is retried at the next interval).
    const published = new Map<string, string>()
    let failing = false
    const publishChanged = async (): Promise<void> => {
      const values = await snapshot()
      for (const [name, value] of values) {
        if (published.get(name) === value) continue
        const packet = { cmd: 'publish', topic: `${prefix}/${name}`, payload: Buffer.from(value), qos: 0, retain: true, dup: false } as unknown as PublishPacket
        await publishAsBroker(broker, packet)
        published.set(name, value)
      }
    }

    let running: Promise<void> | undefined
    const tick = (): void => {
      if (running) return // the previous update is still waiting for the store
      // The gateway closes the broker (and its bus) before the plugins: no publish in between.
      if (broker.closed) return
      running = publishChanged().then(() => {
        if (failing) log.info('$SYS statistics published again')
        failing = false
      }, (err: Error) => {
        // One line per outage (Redis down), not one per interval.
        if (!failing) log.warn({ err: err.message }, '$SYS statistics not published; retrying at each interval')
        failing = true
      }).finally(() => { running = undefined })
    }
    tick()
    const timer = setInterval(tick, ctx.config.intervalS * 1000)
    timer.unref()
    log.info({ prefix, intervalS: ctx.config.intervalS }, '$SYS statistics enabled')

    return {
      // No unsubscribe from the takeover topic: plugins close after the broker, whose bus
      // is closed by then (with Redis, an UNSUBSCRIBE on the closed connection would reject).
      close: async () => {
        clearInterval(timer)
        await running
      }
    }
  }
})
