import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startBroker, type RunningBroker } from '../../bench/brokers.js'

// CONNECT, MQTT 3.1.1, clean session, keepalive 60, client id "floor".
const CONNECT = Buffer.from([0x10, 17, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 5, 0x66, 0x6c, 0x6f, 0x6f, 0x72])

/** Collects what the server sends; `next(n)` resolves with the next n bytes. */
function reader (socket: net.Socket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0)
  let wake: (() => void) | undefined
  socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); wake?.() })
  return async (n) => {
    while (buf.length < n) await new Promise<void>((resolve) => { wake = resolve })
    const out = buf.subarray(0, n)
    buf = buf.subarray(n)
    return out
  }
}

/** bench/node-floor.ts, started as bench/compare starts it: the floor peer must answer like a broker's connection layer. */
describe('bench node-floor peer', () => {
  let floor: RunningBroker
  before(async () => { floor = await startBroker('node-floor') })
  after(async () => { await floor.stop() })

  it('answers a CONNECT split across writes with CONNACK 0, PINGREQs with PINGRESP, and closes on DISCONNECT', { timeout: 10000 }, async () => {
    const socket = net.connect({ port: floor.port, host: '127.0.0.1' })
    const failed: Error[] = []
    socket.on('error', (err) => { failed.push(err) })
    await once(socket, 'connect')
    const next = reader(socket)
    socket.write(CONNECT.subarray(0, 1))
    await new Promise((resolve) => setTimeout(resolve, 20))
    socket.write(CONNECT.subarray(1, 9))
    await new Promise((resolve) => setTimeout(resolve, 20))
    socket.write(CONNECT.subarray(9))
    assert.deepEqual([...await next(4)], [0x20, 2, 0, 0])
    // Two PINGREQs in one write: two answers.
    socket.write(Buffer.from([0xc0, 0, 0xc0, 0]))
    assert.deepEqual([...await next(4)], [0xd0, 0, 0xd0, 0])
    const ended = once(socket, 'end')
    socket.write(Buffer.from([0xe0, 0]))
    await ended
    socket.destroy()
    assert.deepEqual(failed, [], 'no socket error')
  })
})
