import type { Client } from 'aedes'
import { Counter, Gauge } from 'prom-client'
import { asOutboundClient, connectedClients, installOutboundFlow, outboundFlowOf } from '../../src/aedes/internals.js'
import { definePlugin } from '../../src/plugin.js'
import { InflightWindow, type WindowEvents } from './inflight-window.js'
import { flowConfigSchema } from './schema.js'

/**
 * Per-client outbound flow control. Aedes 1.2.0 has none: a client that never
 * acknowledges receives every QoS 1 message at once, and a socket that stops draining
 * holds a broker-wide delivery slot, stalling everyone (see the README). The window is
 * installed on each client when it is created (the clientCreated observer event), before
 * Aedes restores a persistent session's subscriptions; patches/aedes+1.2.0.patch routes
 * deliveries through it (src/aedes/internals.ts OutboundFlow).
 */
export const flowPlugin = definePlugin({
  name: 'flow',
  configKey: 'flow',
  schema: flowConfigSchema,
  setup: (ctx) => {
    const registers = [ctx.metrics.registry]
    const dropped = new Counter({ name: 'mqgw_flow_dropped_total', help: 'Messages dropped by a full client queue, by reason and QoS', labelNames: ['reason', 'qos'], registers })
    const overflows = new Counter({ name: 'mqgw_flow_overflow_disconnects_total', help: 'Clients disconnected because their queue overflowed (overflow: disconnect)', registers })
    const windowsOf = (): InflightWindow[] => {
      const windows: InflightWindow[] = []
      const clients = connectedClients(ctx.broker)
      for (const id in clients) {
        const window = outboundFlowOf(clients[id]!)
        if (window instanceof InflightWindow) windows.push(window)
      }
      return windows
    }
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_flow_queued_messages', help: 'Messages waiting in client queues', registers,
      collect () { let n = 0; for (const w of windowsOf()) n += w.queued; this.set(n) }
    })
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_flow_inflight_messages', help: 'QoS 1/2 messages sent and not yet acknowledged', registers,
      collect () { let n = 0; for (const w of windowsOf()) n += w.inflight; this.set(n) }
    })

    // One events object for every window; a window's first drop is logged, once per connection.
    const warned = new WeakSet<InflightWindow>()
    const events: WindowEvents = {
      dropped: (window, reason, qos) => {
        dropped.inc({ reason, qos: String(qos) })
        if (warned.has(window)) return
        warned.add(window)
        ctx.log.warn({ clientId: window.client.id, reason, policy: ctx.config.overflow }, 'client queue full; dropping messages (logged once per connection)')
      },
      overflow: (window, reason) => {
        overflows.inc()
        ctx.log.warn({ clientId: window.client.id, reason }, 'client queue full; disconnecting (overflow: disconnect)')
        ;(window.client as unknown as Client).close()
      }
    }

    ctx.hook('clientCreated', ({ client }) => {
      installOutboundFlow(client, new InflightWindow(ctx.config, asOutboundClient(client), events))
    })
  }
})
