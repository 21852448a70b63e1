/**
 * The Node floor, a peer for bench/compare `idle` (and bench/keepalive-style pings): the least an
 * MQTT broker built on Node's `net` can do per connection. A bare `net.Server` (default options,
 * as the gateway's listener) whose sockets answer CONNECT with CONNACK 0, PINGREQ with PINGRESP,
 * close on DISCONNECT, and do nothing else: no parser library, no client object, no session,
 * no authentication, no keepalive timer, no metrics. Packets are framed by the fixed header's
 * remaining length so a CONNECT split across reads still works. Not a broker: PUBLISH,
 * SUBSCRIBE and the rest are ignored, so only connection scenarios may use it.
 *
 *   node dist/bench/node-floor.js PORT
 *
 * Why: the gateway's CPU per CONNECT (and per PINGREQ) is compared with Mosquitto's; what part of
 * the gap any Node server pays (net.Socket and its streams, libuv, V8) and what part is ours is
 * only known by measuring this floor side by side in the same run.
 */
import net from 'node:net'

const port = Number(process.argv[2] ?? 1883)
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00])
const PINGRESP = Buffer.from([0xd0, 0x00])

/** Length of the complete packet at `buf[0]`, or -1 if it has not all arrived. */
function packetLength (buf: Buffer): number {
  let remaining = 0
  let multiplier = 1
  for (let i = 1; i < 5; i++) {
    const byte = buf[i]
    if (byte === undefined) return -1
    remaining += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) return buf.length >= i + 1 + remaining ? i + 1 + remaining : -1
    multiplier *= 128
  }
  return Number.NaN // more than four length bytes: malformed
}

const server = net.createServer((socket) => {
  let pending: Buffer | undefined
  socket.on('error', () => socket.destroy())
  socket.on('data', (chunk: Buffer) => {
    let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk])
    pending = undefined
    while (buf.length > 0) {
      const len = packetLength(buf)
      if (Number.isNaN(len)) { socket.destroy(); return }
      if (len < 0) { pending = buf; return }
      const type = buf[0]! >> 4
      if (type === 1) socket.write(CONNACK)
      else if (type === 12) socket.write(PINGRESP)
      else if (type === 14) { socket.end(); return }
      buf = buf.subarray(len)
    }
  })
})
server.listen(port, '127.0.0.1')

const stop = (): void => { server.close(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
