/**
 * Persistent sessions (clean session 0) that disconnected from this node and have not
 * come back (to any node), for `$SYS/broker/clients/disconnected`. The Map keeps insertion
 * order, and an id is re-inserted on each disconnect, so the oldest entries are first and
 * expiry (Redis mode: sessions expire after persistence.sessionExpiryS) trims the front.
 */
export class OfflineSessions {
  readonly #since = new Map<string, number>()
  readonly #expiryMs: number | undefined

  /** `expiryMs`: sessions offline longer are gone; undefined: they never expire (memory mode). */
  constructor (expiryMs: number | undefined) {
    this.#expiryMs = expiryMs
  }

  disconnected (clientId: string, now = Date.now()): void {
    this.#since.delete(clientId)
    this.#since.set(clientId, now)
  }

  connected (clientId: string): void {
    this.#since.delete(clientId)
  }

  count (now = Date.now()): number {
    if (this.#expiryMs !== undefined) {
      for (const [id, since] of this.#since) {
        if (now - since <= this.#expiryMs) break
        this.#since.delete(id)
      }
    }
    return this.#since.size
  }
}
