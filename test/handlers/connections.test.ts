import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ClientInfo } from '../../src/client-info.js'
import { newConnection } from '../../src/handlers/connections.js'

describe('Connection and ClientInfo', () => {
  it('plugins see a ClientInfo: the core\'s per-connection state is not part of its type', () => {
    const info: ClientInfo = newConnection({ listener: 'mqtt', remoteAddress: '127.0.0.1', remotePort: 1 })
    // Compile-time checks (tsc fails the build if these become visible to plugins).
    // @ts-expect-error the publish queue belongs to the core
    assert.equal(info.publishQueue, undefined)
    // @ts-expect-error so does the pending refusal
    assert.equal(info.pendingRefusal, undefined)
    // @ts-expect-error and the close reason
    assert.equal(info.closeReason, undefined)
    // @ts-expect-error granted filters are read only for plugins
    info.granted?.set('x', 0)
    assert.equal(info.listener, 'mqtt')
  })
})
