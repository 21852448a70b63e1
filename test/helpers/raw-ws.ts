import { randomBytes } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'

/**
 * A WebSocket client at the byte level (RFC 6455), for tests and the bench load generator that
 * count what is on the wire: every frame the server sends (opcode, FIN, header and payload
 * bytes) is reported as it was framed, which a WebSocket library hides (it joins fragments and
 * reports messages). No extensions; server frames are unmasked, client frames masked.
 */

export interface WsFrame {
  opcode: number
  fin: boolean
  /** Payload bytes; a view into the read buffer, valid only during the callback. */
  payload: Buffer
  /** Bytes of the frame header (2 to 14). */
  headerBytes: number
}

/** Splits the server's byte stream into frames. */
export class WsFrameReader {
  #pending: Buffer | undefined
  constructor (private readonly onFrame: (frame: WsFrame) => void) {}

  push (chunk: Buffer): void {
    const b = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk])
    this.#pending = undefined
    const n = b.length
    let off = 0
    for (;;) {
      if (n - off < 2) break
      const b0 = b[off]!
      const b1 = b[off + 1]!
      let len = b1 & 0x7f
      let head = 2
      if (len === 126) {
        if (n - off < 4) break
        len = b.readUInt16BE(off + 2)
        head = 4
      } else if (len === 127) {
        if (n - off < 10) break
        len = Number(b.readBigUInt64BE(off + 2))
        head = 10
      }
      const masked = (b1 & 0x80) !== 0
      if (masked) head += 4
      if (n - off < head + len) break
      const payload = b.subarray(off + head, off + head + len)
      if (masked) {
        const key = b.subarray(off + head - 4, off + head)
        for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!
      }
      this.onFrame({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload, headerBytes: head })
      off += head + len
    }
    if (off < n) this.#pending = Buffer.from(b.subarray(off))
  }
}

/**
 * One client frame (FIN set, masked with `mask`, random by default). A zero key sends the payload
 * as is, and ws then skips unmasking: cheaper for both ends than what real clients cost.
 */
export function clientFrame (payload: Buffer, opcode = 2, mask: Buffer = randomBytes(4)): Buffer {
  const len = payload.length
  const head = len < 126 ? 2 : len < 0x10000 ? 4 : 10
  const out = Buffer.allocUnsafe(head + 4 + len)
  out[0] = 0x80 | opcode
  if (head === 2) {
    out[1] = 0x80 | len
  } else if (head === 4) {
    out[1] = 0x80 | 126
    out.writeUInt16BE(len, 2)
  } else {
    out[1] = 0x80 | 127
    out.writeBigUInt64BE(BigInt(len), 2)
  }
  mask.copy(out, head, 0, 4)
  const allZero = mask[0] === 0 && mask[1] === 0 && mask[2] === 0 && mask[3] === 0
  if (allZero) {
    payload.copy(out, head + 4)
  } else {
    // Four bytes at a time where the payload allows it (the load generator masks every batch).
    const key = mask.readUInt32BE(0)
    const words = len >>> 2
    for (let w = 0; w < words; w++) out.writeUInt32BE((payload.readUInt32BE(w * 4) ^ key) >>> 0, head + 4 + w * 4)
    for (let i = words * 4; i < len; i++) out[head + 4 + i] = payload[i]! ^ mask[i & 3]!
  }
  return out
}

export interface RawWsConnection {
  socket: Socket
  /** The subprotocol the server selected. */
  protocol: string | undefined
}

/**
 * Opens a TCP connection, sends the upgrade request and resolves once the server answers 101;
 * bytes after the response headers go to `onData` (as do all later reads). Rejects on another
 * status, a close or after timeoutMs.
 */
export function connectRawWs (port: number, path: string, onData: (chunk: Buffer) => void, opts: { protocol?: string, timeoutMs?: number, host?: string } = {}): Promise<RawWsConnection> {
  const host = opts.host ?? '127.0.0.1'
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host })
    socket.setNoDelay(true)
    let head: Buffer = Buffer.alloc(0)
    let upgraded = false
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no WebSocket upgrade within ${opts.timeoutMs ?? 10000} ms`)) }, opts.timeoutMs ?? 10000)
    socket.on('data', (chunk: Buffer) => {
      if (upgraded) { onData(chunk); return }
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      clearTimeout(timer)
      const response = head.subarray(0, end).toString('latin1')
      if (!response.startsWith('HTTP/1.1 101')) {
        socket.destroy()
        reject(new Error(`upgrade refused: ${response.split('\r\n')[0]}`))
        return
      }
      upgraded = true
      const protocol = /^sec-websocket-protocol:\s*(.*)$/im.exec(response)?.[1]?.trim()
      resolve({ socket, protocol })
      const rest = head.subarray(end + 4)
      if (rest.length > 0) onData(rest)
    })
    socket.on('error', (err) => { if (!upgraded) { clearTimeout(timer); reject(err) } })
    socket.on('close', () => { if (!upgraded) { clearTimeout(timer); reject(new Error('closed before the upgrade')) } })
    socket.on('connect', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        (opts.protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${opts.protocol}\r\n`) + '\r\n')
    })
  })
}
