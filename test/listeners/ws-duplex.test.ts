import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { WebSocketServer, type WebSocket } from 'ws'
import { MAX_FRAME_BYTES, WsDuplex, type WsDuplexOptions } from '../../src/listeners/ws-duplex.js'
import { waitFor } from '../helpers/mqtt.js'
import { clientFrame, connectRawWs, WsFrameReader, type WsFrame } from '../helpers/raw-ws.js'

interface Pair {
  duplex: WsDuplex
  serverWs: WebSocket
  /** The client's TCP socket (raw WebSocket framing). */
  client: Socket
  /** Frames the client received, payloads copied. */
  frames: WsFrame[]
  /** Writes reported dropped by the duplex. */
  dropped: { writes: number }
  errors: Error[]
}

/** A real WebSocket over 127.0.0.1: the server side wrapped in a WsDuplex, the client at the byte level. */
async function open (cleanups: Array<() => void>, options: WsDuplexOptions = {}): Promise<Pair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await once(wss, 'listening')
  const dropped = { writes: 0 }
  const frames: WsFrame[] = []
  const reader = new WsFrameReader((f) => frames.push({ ...f, payload: Buffer.from(f.payload) }))
  const accepted = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>
  const { socket: client } = await connectRawWs((wss.address() as AddressInfo).port, '/', (c) => reader.push(c))
  const [serverWs, req] = await accepted
  const duplex = new WsDuplex(serverWs, req.socket, { ...options, onDropped: (n) => { dropped.writes += n } })
  const errors: Error[] = []
  duplex.on('error', (err) => errors.push(err))
  cleanups.push(() => { client.destroy(); duplex.destroy(); wss.close() })
  return { duplex, serverWs, client, frames, dropped, errors }
}

const binary = (frames: WsFrame[]): WsFrame[] => frames.filter((f) => f.opcode === 2)
const bytesOf = (frames: WsFrame[]): Buffer => Buffer.concat(binary(frames).map((f) => f.payload))

/**
 * Writes `chunk` turn after turn (the client reads nothing) until the duplex holds a write
 * for the socket to drain: `write()` false and still no 'drain' a turn later, with ws'
 * buffered bytes past the high-water mark. Bounded in bytes and time. Returns the bytes written.
 */
async function fillUntilHeld (p: Pair, chunk: Buffer): Promise<number> {
  let written = 0
  const deadline = Date.now() + 20000
  while (written < 1024 * 1024 * 1024 && Date.now() < deadline) {
    let ok = true
    while (ok) { ok = p.duplex.write(chunk); written += chunk.length }
    await nextTurn()
    if (p.duplex.writableNeedDrain) return written
  }
  throw new Error(`the duplex never held a write (${written} bytes written)`)
}

describe('WsDuplex: MQTT bytes over a ws WebSocket', () => {
  const cleanups: Array<() => void> = []
  afterEach(() => { for (const c of cleanups.splice(0)) c() })

  it('sends the writes of one turn as one binary frame, in order; a write alone is one frame', async () => {
    const p = await open(cleanups)
    const parts: Buffer[] = []
    for (let i = 0; i < 50; i++) {
      const part = Buffer.from(`packet ${i};`)
      parts.push(part)
      assert.equal(p.duplex.write(part), true)
    }
    await waitFor(() => p.frames.length >= 1, 'the first frame')
    // Another turn, another frame; then a lone write.
    p.duplex.write('second turn')
    await waitFor(() => p.frames.length >= 2, 'the second frame')
    p.duplex.write(Buffer.from([0x30, 0x03, 0x00, 0x01, 0x74]))
    await waitFor(() => p.frames.length >= 3, 'the third frame')
    assert.deepEqual(p.frames.map((f) => [f.opcode, f.fin]), [[2, true], [2, true], [2, true]])
    assert.deepEqual(p.frames[0]!.payload, Buffer.concat(parts))
    assert.equal(p.frames[1]!.payload.toString(), 'second turn')
    assert.deepEqual(p.frames[2]!.payload, Buffer.from([0x30, 0x03, 0x00, 0x01, 0x74]))
    assert.equal(p.dropped.writes, 0)
  })

  it('caps frames at 64 KiB: a larger write, or a larger turn, leaves in 64 KiB frames cut anywhere', async () => {
    // One write of 150 KiB.
    const p = await open(cleanups)
    const big = Buffer.alloc(150 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = i % 251
    p.duplex.write(big)
    await waitFor(() => bytesOf(p.frames).length >= big.length, 'the 150 KiB write')
    assert.deepEqual(p.frames.map((f) => f.payload.length), [MAX_FRAME_BYTES, MAX_FRAME_BYTES, big.length - 2 * MAX_FRAME_BYTES])
    assert.deepEqual(bytesOf(p.frames), big)
    // Fifteen 10 KiB writes in one turn, with a high-water mark that lets the turn gather them all.
    const q = await open(cleanups, { highWaterMark: 1024 * 1024 })
    const parts = Array.from({ length: 15 }, (_, i) => Buffer.alloc(10 * 1024, i))
    for (const part of parts) q.duplex.write(part)
    await waitFor(() => bytesOf(q.frames).length >= 150 * 1024, 'the turn of 150 KiB')
    assert.deepEqual(q.frames.map((f) => f.payload.length), [MAX_FRAME_BYTES, MAX_FRAME_BYTES, 150 * 1024 - 2 * MAX_FRAME_BYTES])
    assert.deepEqual(bytesOf(q.frames), Buffer.concat(parts))
  })

  it('back-pressure: past the high-water mark writes wait for the socket to drain, then everything arrives in order', async () => {
    const p = await open(cleanups)
    p.client.pause()
    const chunk = Buffer.alloc(4096, 0x61)
    const written = await fillUntilHeld(p, chunk)
    assert.equal(p.duplex.writableNeedDrain, true)
    assert.ok(p.serverWs.bufferedAmount > p.duplex.writableHighWaterMark, `ws buffers ${p.serverWs.bufferedAmount} bytes`)
    // Held: a turn later a write is queued in the duplex (write() answers false), not sent.
    const frames = p.frames.length
    await nextTurn()
    assert.equal(p.duplex.write(chunk), false)
    assert.ok(p.duplex.writableLength >= chunk.length)
    const drained = once(p.duplex, 'drain')
    p.client.resume()
    await drained
    await waitFor(() => bytesOf(p.frames).length >= written + chunk.length, 'every byte written', 20000)
    assert.equal(bytesOf(p.frames).length, written + chunk.length)
    assert.ok(p.frames.length > frames)
    assert.ok(bytesOf(p.frames).every((b) => b === 0x61))
    assert.equal(p.dropped.writes, 0)
  })

  it('after the connection closes, queued and later writes are dropped at once, counted, without an Error each', async () => {
    const p = await open(cleanups)
    p.client.pause()
    const chunk = Buffer.alloc(4096, 0x62)
    await fillUntilHeld(p, chunk)
    const results: Array<Error | null | undefined> = []
    for (let i = 0; i < 100; i++) p.duplex.write(chunk, (err?: Error | null) => results.push(err))
    assert.equal(results.length, 0, 'queued behind the held write')
    const ended = once(p.duplex, 'end')
    p.duplex.resume()
    const closed = once(p.serverWs, 'close')
    p.client.destroy()
    await closed
    await nextTurn()
    assert.equal(results.length, 100)
    assert.equal(results.filter((err) => err instanceof Error).length, 0, 'no Error per dropped write')
    assert.equal(p.dropped.writes, 100)
    await ended
    // Later writes (Aedes may still write before it learns of the close) are dropped too.
    for (let i = 0; i < 10; i++) p.duplex.write(chunk, (err?: Error | null) => results.push(err))
    await waitFor(() => results.length === 110, 'the later writes to complete')
    assert.equal(results.filter((err) => err instanceof Error).length, 0)
    assert.equal(p.dropped.writes, 110)
    assert.deepEqual(p.errors, [])
  })

  it('destroy() with writes queued drops them (counted, no Error each) and cuts the connection', async () => {
    const p = await open(cleanups)
    p.client.pause()
    await fillUntilHeld(p, Buffer.alloc(4096, 0x63))
    const results: Array<Error | null | undefined> = []
    for (let i = 0; i < 50; i++) p.duplex.write(Buffer.alloc(100), (err?: Error | null) => results.push(err))
    const clientClosed = once(p.client, 'close')
    p.duplex.destroy()
    await nextTurn()
    assert.equal(results.length, 50)
    assert.equal(results.filter((err) => err instanceof Error).length, 0)
    assert.equal(p.dropped.writes, 50)
    p.client.resume()
    await clientClosed
  })

  it('reads binary frames as one byte stream; a text frame closes with 1003 and is not read', async () => {
    const p = await open(cleanups)
    const read: Buffer[] = []
    p.duplex.on('data', (c: Buffer) => read.push(c))
    const ended = once(p.duplex, 'end')
    p.client.write(clientFrame(Buffer.from([0x10, 0x0c, 0x00])))
    p.client.write(clientFrame(Buffer.from([0x04, 0x4d])))
    await waitFor(() => Buffer.concat(read).length === 5, 'the binary bytes')
    assert.deepEqual(Buffer.concat(read), Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d]))
    p.client.write(clientFrame(Buffer.from('text'), 1))
    await waitFor(() => p.frames.some((f) => f.opcode === 8), 'a close frame')
    const close = p.frames.find((f) => f.opcode === 8)!
    assert.equal(close.payload.readUInt16BE(0), 1003)
    await ended
    assert.equal(Buffer.concat(read).length, 5, 'nothing of the text frame was read')
  })
})
