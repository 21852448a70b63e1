import type { Socket } from 'node:net'

/**
 * Open transport sockets per listener, the connection cap, and byte totals. A closed
 * socket's counters are folded into the totals when it closes, so scraping costs one
 * pass over the open sockets and the data path costs nothing.
 */
export class SocketTracker {
  readonly #open = new Map<string, Set<Socket>>()
  #closedRead = 0
  #closedWritten = 0
  #count = 0
  /** One 'close' listener shared by every socket (`this` is the socket): no closure per connection. */
  readonly #onClose: (this: Socket) => void

  constructor (private readonly maxConnections: number) {
    const forget = (socket: Socket): void => {
      for (const set of this.#open.values()) {
        if (!set.delete(socket)) continue
        this.#count--
        this.#closedRead += socket.bytesRead
        this.#closedWritten += socket.bytesWritten
        return
      }
    }
    this.#onClose = function (this: Socket) { forget(this) }
  }


  /** Returns false (and tracks nothing) when the gateway is at its connection cap. */
  admit (listener: string, socket: Socket): boolean {
    if (this.#count >= this.maxConnections) return false
    let set = this.#open.get(listener)
    if (!set) {
      set = new Set()
      this.#open.set(listener, set)
    }
    set.add(socket)
    this.#count++
    socket.on('close', this.#onClose)
    return true
  }

  perListener (): Map<string, number> {
    const counts = new Map<string, number>()
    for (const [listener, set] of this.#open) counts.set(listener, set.size)
    return counts
  }

  bytes (): { read: number, written: number } {
    let read = this.#closedRead
    let written = this.#closedWritten
    for (const set of this.#open.values()) {
      for (const socket of set) {
        read += socket.bytesRead
        written += socket.bytesWritten
      }
    }
    return { read, written }
  }

  destroyAll (): void {
    for (const set of this.#open.values()) {
      for (const socket of set) socket.destroy()
    }
  }
}
