import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import { connectedClients, outboundFlowOf } from '../../../src/aedes/internals.js'
import { ALLOW } from '../../../src/hooks/types.js'
import { definePlugin } from '../../../src/plugin.js'
import { InflightWindow } from '../../../plugins/flow/inflight-window.js'
import { flowPlugin } from '../../../plugins/flow/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { connectClient, endClient } from '../../helpers/mqtt.js'

/**
 * The window is installed from an observer event, which every plugin hears, not from a
 * decision chain that stops at the first `allow`: a plugin before flow that allows every
 * CONNECT must not leave clients without a window.
 */
const allowEveryone = definePlugin({
  name: 'allow-everyone',
  configKey: 'allowEveryone',
  schema: z.strictObject({}),
  setup: (ctx) => {
    ctx.hook('preConnect', () => ALLOW)
    ctx.hook('authenticate', () => ALLOW)
  }
})

describe('flow window installed whatever the plugins before it decide (real clients)', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway('allowEveryone: {}\nflow: { inflightWindow: 2 }', { plugins: [allowEveryone, flowPlugin] }) })
  after(async () => { await gw.stop() })

  for (const transport of ['mqtt', 'ws'] as const) {
    it(`a client over ${transport} has its InflightWindow`, async () => {
      const clientId = `windowed-${transport}`
      const c = await connectClient(transport === 'mqtt' ? gw.mqttUrl : gw.wsUrl, { clientId })
      try {
        const client = connectedClients(gw.gateway.broker)[clientId]
        assert.ok(client, 'connected')
        assert.ok(outboundFlowOf(client) instanceof InflightWindow, 'window installed')
      } finally {
        await endClient(c)
      }
    })
  }
})
