import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type Socket, type AddressInfo } from 'node:net'
import { PassThrough, Writable } from 'node:stream'
import { afterEach, describe, it } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { batchWritesPerTurn } from '../../src/aedes/write-batching.js'

/** A real TCP pair on 127.0.0.1: `server` is the accepted socket (the one the gateway writes to). */
async function socketPair (): Promise<{ server: Socket, client: Socket, close: () => void }> {
  const listener = createServer()
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1')
  const [server] = await once(listener, 'connection') as [Socket]
  await once(client, 'connect')
  return { server, client, close: () => { client.destroy(); server.destroy(); listener.close() } }
}

/** Counts the calls that hand buffered chunks to the OS (writev when corked, write otherwise). */
function countFlushes (socket: Socket): { flushes: number } {
  const counter = { flushes: 0 }
  const internals = socket as unknown as { _writev: (...a: unknown[]) => unknown, _write: (...a: unknown[]) => unknown }
  const writev = internals._writev.bind(socket)
  const write = internals._write.bind(socket)
  internals._writev = (...a) => { counter.flushes++; return writev(...a) }
  internals._write = (...a) => { counter.flushes++; return write(...a) }
  return counter
}

function readExactly (socket: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= bytes) {
        socket.off('data', onData)
        resolve(Buffer.concat(chunks))
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`connection closed after ${got} of ${bytes} bytes`)))
  })
}

describe('batchWritesPerTurn', () => {
  const cleanups: Array<() => void> = []
  afterEach(() => { for (const c of cleanups.splice(0)) c() })

  /** A socket pair whose server side batches its writes, with its flushes counted; closed after the test. */
  async function batchedPair (): Promise<{ server: Socket, client: Socket, counter: { flushes: number } }> {
    const { server, client, close } = await socketPair()
    cleanups.push(close)
    batchWritesPerTurn(server)
    return { server, client, counter: countFlushes(server) }
  }

  it('sends the writes of one turn in one flush, in order, after the turn', async () => {
    const { server, client, counter } = await batchedPair()
    const expected: Buffer[] = []
    for (let i = 0; i < 200; i++) {
      const chunk = Buffer.from(`message ${i};`)
      expected.push(chunk)
      assert.equal(server.write(chunk), true)
    }
    assert.equal(counter.flushes, 0, 'nothing leaves before the end of the turn')
    const all = Buffer.concat(expected)
    const received = readExactly(client, all.length)
    await nextTurn()
    assert.equal(counter.flushes, 1, 'one writev for the 200 writes')
    assert.deepEqual(await received, all)
  })

  it('keeps back-pressure: past the high-water mark the buffer leaves at once and drain follows', async () => {
    const { server, client, counter } = await batchedPair()
    const chunk = Buffer.alloc(1024, 7)
    let writes = 0
    let ok = true
    while (ok && writes < 10_000) {
      ok = server.write(chunk)
      writes++
    }
    assert.equal(ok, false, 'write() reports a full buffer')
    assert.equal(writes, Math.ceil(server.writableHighWaterMark / chunk.length))
    assert.equal(counter.flushes, 1, 'the full buffer was handed to the socket without waiting for the turn to end')
    assert.equal(server.writableNeedDrain || server.writableLength === 0, true)
    const received = readExactly(client, writes * chunk.length)
    if (server.writableNeedDrain) await once(server, 'drain')
    assert.equal((await received).length, writes * chunk.length)
  })

  it('batches again on the next turn and delivers everything across turns in order', async () => {
    const { server, client, counter } = await batchedPair()
    const parts: Buffer[] = []
    for (let turn = 0; turn < 20; turn++) {
      for (let i = 0; i < 10; i++) {
        const part = Buffer.from(`${turn}.${i},`)
        parts.push(part)
        server.write(part)
      }
      await nextTurn()
    }
    const all = Buffer.concat(parts)
    assert.deepEqual(await readExactly(client, all.length), all)
    assert.equal(counter.flushes, 20, 'one flush per turn')
  })

  it('destroy() right after a write still sends what was written (a refusal before closing)', async () => {
    const { server, client, close } = await socketPair()
    cleanups.push(close)
    batchWritesPerTurn(server)
    const connack = Buffer.from([0x20, 0x02, 0x00, 0x01])
    const received = readExactly(client, connack.length)
    server.write(connack)
    server.destroy()
    assert.deepEqual(await received, connack)
  })

  it('a write after end() or destroy() does not throw or cork a dead stream', async () => {
    const { server, close } = await socketPair()
    cleanups.push(close)
    batchWritesPerTurn(server)
    server.write('a')
    server.destroy()
    server.on('error', () => {})
    server.write('b')
    await nextTurn()
    assert.equal(server.destroyed, true)
  })

  it('leaves a stream with its own write() alone', () => {
    const ownWrite = (): boolean => true
    const stream = new PassThrough()
    stream.write = ownWrite
    batchWritesPerTurn(stream)
    assert.equal(stream.write, ownWrite)
    const plain = new Writable({ write: (_c, _e, cb) => cb() })
    batchWritesPerTurn(plain)
    assert.notEqual(plain.write, Writable.prototype.write)
  })
})
