import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { READS_PER_TURN, readOncePerTurn } from '../../src/aedes/read-fairness.js'
import { waitFor } from '../helpers/mqtt.js'

const SOCKETS = 4
const BURST = 1024 * 1024

interface Reads {
  /** Socket index of every read, in order. */
  order: number[]
  /**
   * The most reads one socket got in one event-loop turn. Counted per turn, not as a lead over
   * the other sockets: how fast each burst moves from the sender's kernel buffer to the
   * receiver's depends on TCP windows, so a socket with bytes still to come may have none
   * readable at a given moment (a lead measure failed 1 run in 5 on that, with the fix working).
   */
  maxPerTurn: number
  /** Bytes each server socket got. */
  got: number[]
}

/**
 * SOCKETS real TCP connections on 127.0.0.1, each with BURST bytes already handed to the
 * kernel before the server reads any of them; then every server socket is read the way
 * Aedes reads (lib/client.js: on 'readable', one read() of everything buffered, consumed at
 * once). Records the order of the reads.
 */
async function burstReads (fair: boolean, cleanups: Array<() => void>): Promise<Reads> {
  const server: Server = createServer({ pauseOnConnect: true })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted: Socket[] = []
  server.on('connection', (s: Socket) => accepted.push(s))
  const clients: Socket[] = []
  cleanups.push(() => { for (const s of [...clients, ...accepted]) s.destroy(); server.close() })
  for (let i = 0; i < SOCKETS; i++) {
    const c = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await once(c, 'connect')
    clients.push(c)
  }
  await waitFor(() => accepted.length === SOCKETS, 'every connection accepted')
  for (const c of clients) c.write(Buffer.alloc(BURST, 0x30))
  // The server reads nothing yet (paused on connect): each burst ends up in the kernel's buffers.
  await waitFor(() => clients.every((c) => c.writableLength === 0), 'every burst handed to the kernel')

  const reads: Reads = { order: [], maxPerTurn: 0, got: new Array<number>(SOCKETS).fill(0) }
  // One tick per loop iteration (check phase): every read of one poll phase sees the same turn.
  let turn = 0
  let ticking = true
  const tick = (): void => { turn++; if (ticking) setImmediate(tick) }
  setImmediate(tick)
  cleanups.push(() => { ticking = false })
  const inTurn = new Array<number>(SOCKETS).fill(0)
  const turnOf = new Array<number>(SOCKETS).fill(-1)
  accepted.forEach((s, i) => {
    if (fair) readOncePerTurn(s)
    s.on('readable', () => {
      const chunk = s.read() as Buffer | null
      if (chunk === null) return
      reads.got[i]! += chunk.length
      reads.order.push(i)
      if (turnOf[i] !== turn) { turnOf[i] = turn; inTurn[i] = 0 }
      inTurn[i]!++
      reads.maxPerTurn = Math.max(reads.maxPerTurn, inTurn[i]!)
    })
  })
  await waitFor(() => reads.got.every((g) => g === BURST), 'every burst read', 10000)
  ticking = false
  return reads
}

describe('readOncePerTurn', () => {
  const cleanups: Array<() => void> = []
  afterEach(() => { for (const c of cleanups.splice(0)) c() })

  it('without it, one socket is read many times in a row while the others wait (the case the fix is for)', async () => {
    // libuv reads a socket up to 32 times per readiness event while each read fills its 64 KiB
    // buffer and Aedes' consumer restarts the handle in between; if this did not happen here,
    // the test below could not fail.
    const reads = await burstReads(false, cleanups)
    assert.ok(reads.maxPerTurn > READS_PER_TURN + 1, `expected back-to-back reads of one socket in one turn, got at most ${reads.maxPerTurn}; order ${reads.order.join('')}`)
  })

  it(`with it, a socket is read at most ${READS_PER_TURN} times in one turn, then the other ready sockets go first`, async () => {
    const reads = await burstReads(true, cleanups)
    // READS_PER_TURN full reads, plus the read that found the buffer full and stopped the handle.
    assert.ok(reads.maxPerTurn <= READS_PER_TURN + 1, `a socket was read ${reads.maxPerTurn} times in one turn; order ${reads.order.join('')}`)
    // Round-robin: the sockets take turns (each of the four is read before any is read a second batch).
    assert.deepEqual(reads.order.slice(0, SOCKETS * READS_PER_TURN).filter((v, k, a) => a.indexOf(v) === k).sort(), [0, 1, 2, 3])
    assert.deepEqual(reads.got, new Array<number>(SOCKETS).fill(BURST))
  })

  it('leaves a socket with its own _read alone, and installs once', () => {
    const s = connect({ port: 1, host: '127.0.0.1' })
    s.on('error', () => {})
    cleanups.push(() => s.destroy())
    readOncePerTurn(s)
    const installed = (s as unknown as { _read: unknown })._read
    assert.ok(Object.hasOwn(s, '_read'))
    readOncePerTurn(s)
    assert.equal((s as unknown as { _read: unknown })._read, installed)
    const own = connect({ port: 1, host: '127.0.0.1' })
    own.on('error', () => {})
    cleanups.push(() => own.destroy())
    const mine = (): void => {}
    ;(own as unknown as { _read: unknown })._read = mine
    readOncePerTurn(own)
    assert.equal((own as unknown as { _read: unknown })._read, mine)
  })
})
