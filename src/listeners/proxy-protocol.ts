import { BlockList, isIP, type Socket } from 'node:net'
import pp from 'proxy-protocol-js'

/**
 * PROXY protocol (v1 text and v2 binary, HAProxy's spec) in front of MQTT: the access
 * layer (OpenResty/nginx `proxy_protocol on`) prepends the client's real address.
 * Accepted only from trusted proxies; parsing is proxy-protocol-js's.
 */

export interface Peer { address: string, port: number }

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_MAX = 107

export class ProxyProtocolError extends Error {}

/** IPs and CIDR blocks (IPv4 and IPv6); IPv4-mapped IPv6 addresses are matched as IPv4. */
export class TrustedProxies {
  readonly #list = new BlockList()
  constructor (entries: readonly string[]) {
    for (const entry of entries) {
      const [address, bits] = entry.split('/')
      const family = isIP(address ?? '') === 6 ? 'ipv6' : 'ipv4'
      if (bits === undefined) this.#list.addAddress(address!, family)
      else this.#list.addSubnet(address!, Number(bits), family)
    }
  }

  has (address: string | undefined): boolean {
    if (!address) return false
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
    return this.#list.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4')
  }
}

/** Reads the PROXY header off `socket` and puts back any bytes after it. */
export function readProxyHeader (socket: Socket, timeoutMs: number): Promise<Peer | undefined> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const timer = setTimeout(() => finish(new ProxyProtocolError(`no PROXY header within ${timeoutMs} ms`)), timeoutMs)
    const finish = (err: Error | undefined, peer?: Peer, rest?: Buffer): void => {
      clearTimeout(timer)
      socket.removeListener('readable', onReadable)
      socket.removeListener('close', onClose)
      socket.removeListener('error', onError)
      if (err) { reject(err); return }
      if (rest && rest.length > 0) socket.unshift(rest)
      resolve(peer)
    }
    const onClose = (): void => finish(new ProxyProtocolError('connection closed before the PROXY header'))
    // A reset while the header is incomplete: without a listener the 'error' event would
    // be thrown and stop the process (nothing else owns the socket yet).
    const onError = (err: Error): void => finish(new ProxyProtocolError(`connection failed before the PROXY header: ${err.message}`))
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) buffered = Buffer.concat([buffered, chunk])
      try {
        const parsed = parse(buffered)
        if (parsed) finish(undefined, parsed.peer, buffered.subarray(parsed.length))
      } catch (err) {
        finish(err instanceof ProxyProtocolError ? err : new ProxyProtocolError((err as Error).message))
      }
    }
    socket.on('readable', onReadable)
    socket.once('close', onClose)
    socket.on('error', onError)
  })
}

/** The peer and header length once the buffer holds a whole header; undefined if more bytes are needed. */
function parse (buf: Buffer): { peer: Peer | undefined, length: number } | undefined {
  if (buf.length >= 1 && buf[0] === 0x50 /* P */) {
    if (!Buffer.from('PROXY ').subarray(0, Math.min(6, buf.length)).equals(buf.subarray(0, Math.min(6, buf.length)))) throw new ProxyProtocolError('not a PROXY header')
    const end = buf.indexOf('\r\n')
    if (end === -1) {
      if (buf.length > V1_MAX) throw new ProxyProtocolError('PROXY v1 header too long')
      return undefined
    }
    const header = buf.subarray(0, end + 2)
    if (header.toString('latin1').startsWith('PROXY UNKNOWN')) return { peer: undefined, length: header.length }
    const v1 = pp.V1BinaryProxyProtocol.parse(header)
    return { peer: { address: v1.source.ipAddress, port: v1.source.port }, length: header.length }
  }
  if (buf.length >= 1 && buf[0] === 0x0d) {
    const n = Math.min(buf.length, V2_SIGNATURE.length)
    if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) throw new ProxyProtocolError('not a PROXY header')
    if (buf.length < 16) return undefined
    const length = 16 + buf.readUInt16BE(14)
    if (buf.length < length) return undefined
    const v2 = pp.V2ProxyProtocol.parse(buf.subarray(0, length))
    const address = v2.proxyAddress as unknown as { sourceAddress?: { address: number[] }, sourcePort?: number }
    if (!address.sourceAddress || address.sourcePort === undefined) return { peer: undefined, length } // LOCAL / UNSPEC: the proxy's own connection
    const parts = address.sourceAddress.address
    const ip = parts.length === 4 ? parts.join('.') : ipv6(parts)
    return { peer: { address: ip, port: address.sourcePort }, length }
  }
  if (buf.length > 0) throw new ProxyProtocolError('not a PROXY header')
  return undefined
}

function ipv6 (parts: number[]): string {
  // proxy-protocol-js gives the 16 address bytes.
  const groups: string[] = []
  for (let i = 0; i + 1 < parts.length; i += 2) groups.push(((parts[i]! << 8) | parts[i + 1]!).toString(16))
  return groups.join(':')
}
