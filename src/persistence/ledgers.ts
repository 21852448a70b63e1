/**
 * Bookkeeping the gateway keeps beside the Aedes session store, with one in-memory
 * implementation here (memory mode: one process) and one in Redis (src/persistence/redis.ts,
 * shared by every node of a cluster).
 */

/** Which retained-store limit refused a message, or `ok`. */
export type RetainedAdmission = 'ok' | 'count' | 'bytes' | 'client'

export interface RetainedLimits {
  /** 0 = no limit, for each. */
  maxMessages: number
  maxBytes: number
  maxPerClient: number
}

/**
 * What the retained store holds, by topic: payload bytes and the client id that set it
 * (the last setter owns a topic). Bounded stores need it: Aedes' stores keep no totals.
 */
export interface RetainedLedger {
  /** Records `topic` as retained by `owner` with `bytes`, unless that would exceed a limit. */
  admit: (topic: string, bytes: number, owner: string, limits: RetainedLimits) => RetainedAdmission | Promise<RetainedAdmission>
  /** The retained message of `topic` is gone (a retained PUBLISH with an empty payload). */
  release: (topic: string) => void | Promise<void>
  /** Retained messages recorded (for mqgw_retained_messages and $SYS). */
  count: () => number | Promise<number>
}

/**
 * The identity (user name) that owns each persistent session: a session is resumed or
 * discarded only by its owner, so a client id alone cannot take over another user's
 * session or make the gateway delete its queued messages.
 */
export interface SessionOwners {
  /** The owner of the persistent session of `clientId`, or undefined when there is none. */
  get: (clientId: string) => string | undefined | Promise<string | undefined>
  set: (clientId: string, owner: string) => void | Promise<unknown>
  delete: (clientId: string) => void | Promise<unknown>
}

/** The owner key of an identity: user names and anonymous never collide. */
export function ownerKey (username: string | undefined): string {
  return username === undefined ? '-' : `u:${username}`
}

export class MemoryRetainedLedger implements RetainedLedger {
  readonly #topics = new Map<string, { bytes: number, owner: string }>()
  readonly #perOwner = new Map<string, number>()
  #bytes = 0

  admit (topic: string, bytes: number, owner: string, limits: RetainedLimits): RetainedAdmission {
    const prev = this.#topics.get(topic)
    if (!prev && limits.maxMessages > 0 && this.#topics.size + 1 > limits.maxMessages) return 'count'
    if (limits.maxBytes > 0 && this.#bytes - (prev?.bytes ?? 0) + bytes > limits.maxBytes) return 'bytes'
    if (prev?.owner !== owner && limits.maxPerClient > 0 && (this.#perOwner.get(owner) ?? 0) + 1 > limits.maxPerClient) return 'client'
    if (prev && prev.owner !== owner) this.#decrement(prev.owner)
    if (!prev || prev.owner !== owner) this.#perOwner.set(owner, (this.#perOwner.get(owner) ?? 0) + 1)
    this.#bytes += bytes - (prev?.bytes ?? 0)
    this.#topics.set(topic, { bytes, owner })
    return 'ok'
  }

  release (topic: string): void {
    const prev = this.#topics.get(topic)
    if (!prev) return
    this.#topics.delete(topic)
    this.#bytes -= prev.bytes
    this.#decrement(prev.owner)
  }

  count (): number {
    return this.#topics.size
  }

  #decrement (owner: string): void {
    const n = (this.#perOwner.get(owner) ?? 0) - 1
    if (n <= 0) this.#perOwner.delete(owner)
    else this.#perOwner.set(owner, n)
  }
}

export class MemorySessionOwners implements SessionOwners {
  readonly #owners = new Map<string, string>()
  get (clientId: string): string | undefined { return this.#owners.get(clientId) }
  set (clientId: string, owner: string): void { this.#owners.set(clientId, owner) }
  delete (clientId: string): void { this.#owners.delete(clientId) }
}
