import { Counter, Gauge } from 'prom-client'
import { PASS } from '../../src/hooks/types.js'
import { definePlugin } from '../../src/plugin.js'
import { InflightWindow, type OutboundClient } from './inflight-window.js'
import { flowConfigSchema } from './schema.js'

/**
 * Per-client outbound flow control. Aedes 1.2.0 has none: a client that never
 * acknowledges receives every QoS 1 message at once, and a socket that stops draining
 * holds a broker-wide delivery slot, stalling everyone (see the README). The window is
 * installed on each client in preConnect, before Aedes restores a persistent
 * session's subscriptions; patches/aedes+1.2.0.patch routes deliveries through it.
 */
export const flowPlugin = definePlugin({
  name: 'flow',
  configKey: 'flow',
  schema: flowConfigSchema,
  setup: (ctx) => {
    const registers = [ctx.metrics.registry]
    const dropped = new Counter({ name: 'mqgw_flow_dropped_total', help: 'Messages dropped by a full client queue, by reason and QoS', labelNames: ['reason', 'qos'], registers })
    const overflows = new Counter({ name: 'mqgw_flow_overflow_disconnects_total', help: 'Clients disconnected because their queue overflowed (overflow: disconnect)', registers })
    const windows = new Set<InflightWindow>()
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_flow_queued_messages', help: 'Messages waiting in client queues', registers,
      collect () { let n = 0; for (const w of windows) n += w.queued; this.set(n) }
    })
    new Gauge({ // eslint-disable-line no-new
      name: 'mqgw_flow_inflight_messages', help: 'QoS 1/2 messages sent and not yet acknowledged', registers,
      collect () { let n = 0; for (const w of windows) n += w.inflight; this.set(n) }
    })

    ctx.hook('preConnect', ({ client, packet }) => {
      let warned = false
      const outbound = client as unknown as OutboundClient
      const conn = outbound.conn
      const window = new InflightWindow(ctx.config, outbound, {
        dropped: (reason, qos) => {
          dropped.inc({ reason, qos: String(qos) })
          if (!warned) {
            warned = true
            ctx.log.warn({ clientId: packet.clientId, reason, policy: ctx.config.overflow }, 'client queue full; dropping messages (logged once per connection)')
          }
        },
        overflow: (reason) => {
          overflows.inc()
          ctx.log.warn({ clientId: packet.clientId, reason }, 'client queue full; disconnecting (overflow: disconnect)')
          client.close()
        }
      })
      ;(client as unknown as { outboundFlow: InflightWindow }).outboundFlow = window
      windows.add(window)
      conn.once('close', () => windows.delete(window))
      return PASS
    })
  }
})
