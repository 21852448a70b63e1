import type { Socket } from 'node:net'

/**
 * Connections accepted but not yet past CONNACK, counted per client address (the PROXY
 * protocol or X-Forwarded-For peer where a trusted proxy gave one, else the socket's).
 * Until CONNACK a socket costs the gateway memory (a CONNECT up to
 * limits.maxConnectPacketSize, parser state, the connect timeout) without having proved
 * anything; one address holding thousands of them is a flood, not a client. Like
 * nginx's limit_conn per $binary_remote_addr, but only for the unauthenticated phase:
 * authenticated clients behind one NAT are not limited here.
 *
 * A counted socket leaves the count exactly once: at CONNACK (`connacked`) or when it
 * closes, whichever comes first. The close listener is one function shared by every
 * socket (`this` is the socket), so counting costs no closure per connection.
 */
export class UnauthenticatedConnections {
  readonly #perAddress = new Map<string, number>()
  /** Counted sockets and the address each is counted under. */
  readonly #pending = new Map<Socket, string>()
  readonly #onClose: (this: Socket) => void

  /** `maxPerAddress` 0 turns the cap off (nothing is counted). */
  constructor (private readonly maxPerAddress: number) {
    const release = (socket: Socket): void => this.release(socket)
    this.#onClose = function (this: Socket) { release(this) }
  }

  /** Sockets currently counted (all addresses). */
  get size (): number { return this.#pending.size }

  /** Counts `socket` under `address`; false (nothing counted) when that address is at the cap. */
  admit (socket: Socket, address: string): boolean {
    if (this.maxPerAddress === 0) return true
    const key = normalize(address)
    const n = this.#perAddress.get(key) ?? 0
    if (n >= this.maxPerAddress) return false
    this.#perAddress.set(key, n + 1)
    this.#pending.set(socket, key)
    socket.on('close', this.#onClose)
    return true
  }

  /** The socket got its CONNACK, or closed: it no longer counts. Idempotent. */
  release (socket: Socket): void {
    const key = this.#pending.get(socket)
    if (key === undefined) return
    this.#pending.delete(socket)
    socket.removeListener('close', this.#onClose)
    const n = (this.#perAddress.get(key) ?? 1) - 1
    if (n <= 0) this.#perAddress.delete(key)
    else this.#perAddress.set(key, n)
  }
}

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`, a dual-stack socket) counts as the IPv4 address. */
function normalize (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

