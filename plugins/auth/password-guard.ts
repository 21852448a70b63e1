import { createHmac, randomBytes } from 'node:crypto'

/**
 * Bounds the cost of static-user password checks. A scrypt hash costs ~40 ms of CPU and
 * runs on libuv's thread pool (4 threads by default), which file I/O and DNS share; with
 * no bound, a flood of wrong passwords queued minutes of work ahead of the real user's
 * login and of log writes. Four defences, cheapest first:
 *
 * 1. per address: an address with `maxFailuresPerAddress` failures (or checks in flight)
 *    in the window is refused without hashing until the window ends;
 * 2. per user: once a user name has `maxFailuresPerUser` failures in the window, attempts
 *    for it are refused without hashing from addresses that already failed for it. Addresses
 *    that have not failed are still checked: a plain per-user lockout would let anyone lock
 *    the real user out (a denial of service Mosquitto and EMQX avoid by not locking
 *    accounts at all), as "smart lockout" schemes keep familiar places apart;
 * 3. known failures: the same wrong password for the same user within `failureCacheTtlMs`
 *    is refused without hashing (a client retrying a bad password in a loop costs nothing);
 * 4. a semaphore: at most `concurrency` hashes at once, at most `queue` waiting; beyond that
 *    CONNACK 3 "server unavailable", as an overloaded broker answers (EMQX's overload
 *    protection refuses new connections the same way): the credentials were not judged.
 */

export interface PasswordGuardOptions {
  concurrency: number
  queue: number
  failureWindowMs: number
  /** 0 = no per-address limit. */
  maxFailuresPerAddress: number
  /** 0 = no per-user limit. */
  maxFailuresPerUser: number
  /** 0 = no cache of known wrong passwords. */
  failureCacheTtlMs: number
}

export type GuardVerdict =
  | { ok: true }
  | { ok: false, returnCode: 3 | 4 | 5, reason: string, throttled?: 'address' | 'user' | 'known_failure' | 'overload' }

export interface GuardEvents {
  /** A scrypt hash was started. */
  hashed: () => void
  /** A check was answered without hashing (or refused before it). */
  throttled: (why: 'address' | 'user' | 'known_failure' | 'overload') => void
  /** A warning worth one log line (already rate-limited here). */
  warn: (fields: Record<string, unknown>, msg: string) => void
}

/** Bound on tracked keys per map (addresses, users, failures); the oldest go first. */
const MAX_ENTRIES = 100_000
/** At most one "overloaded" warning per this many ms. */
const OVERLOAD_LOG_INTERVAL_MS = 10_000

interface Window { count: number, resetAt: number, pending: number, warned: boolean }

/** Failure counts in fixed windows, per key, in a bounded Map (insertion order = age). */
class FailureWindows {
  readonly #map = new Map<string, Window>()
  readonly #windowMs: number
  constructor (windowMs: number) { this.#windowMs = windowMs }

  get (key: string, now: number): Window {
    let w = this.#map.get(key)
    if (w && w.resetAt <= now) {
      // Window over: failures forgotten; checks still in flight stay counted.
      w.count = 0
      w.warned = false
      w.resetAt = now + this.#windowMs
    }
    if (!w) {
      if (this.#map.size >= MAX_ENTRIES) {
        const oldest = this.#map.keys().next()
        if (!oldest.done) this.#map.delete(oldest.value)
      }
      w = { count: 0, resetAt: now + this.#windowMs, pending: 0, warned: false }
      this.#map.set(key, w)
    }
    return w
  }

  peek (key: string, now: number): Window | undefined {
    const w = this.#map.get(key)
    return w && (w.resetAt > now || w.pending > 0) ? this.get(key, now) : undefined
  }

  release (key: string, w: Window): void {
    // Only if `w` is still the entry (an eviction may have replaced it).
    if (w.pending === 0 && w.count === 0 && this.#map.get(key) === w) this.#map.delete(key)
  }
}

export class PasswordGuard {
  readonly #opts: PasswordGuardOptions
  readonly #verify: (password: Buffer, encoded: string) => Promise<boolean>
  readonly #events: GuardEvents
  readonly #byAddress: FailureWindows
  readonly #byUser: FailureWindows
  readonly #byUserAddress: FailureWindows
  /** HMAC(password attempt) → expiry, for known wrong passwords. */
  readonly #knownFailures = new Map<string, number>()
  /** Identical attempts in flight share one hash. */
  readonly #inflight = new Map<string, Promise<boolean>>()
  /** Keys the failure cache's HMAC: the cache holds no password nor a plain hash of one. */
  readonly #secret = randomBytes(32)
  #running = 0
  readonly #waiting: Array<() => void> = []
  #lastOverloadLog = 0
  #overloadRefusedSinceLog = 0

  constructor (opts: PasswordGuardOptions, verify: (password: Buffer, encoded: string) => Promise<boolean>, events: GuardEvents) {
    this.#opts = opts
    this.#verify = verify
    this.#events = events
    this.#byAddress = new FailureWindows(opts.failureWindowMs)
    this.#byUser = new FailureWindows(opts.failureWindowMs)
    this.#byUserAddress = new FailureWindows(opts.failureWindowMs)
  }

  async check (username: string, encoded: string, password: Buffer | undefined, address: string): Promise<GuardVerdict> {
    const o = this.#opts
    const now = Date.now()
    const addr = this.#byAddress.get(address, now)
    if (o.maxFailuresPerAddress > 0 && addr.count + addr.pending >= o.maxFailuresPerAddress) {
      this.#events.throttled('address')
      this.#warnOnce(addr, { remoteAddress: address, failures: addr.count, windowMs: o.failureWindowMs }, 'auth: too many failed static-user logins from this address; refusing it without checking until the window ends')
      return { ok: false, returnCode: 5, reason: 'too many failed logins from this address', throttled: 'address' }
    }
    const uaKey = `${username}\u0000${address}`
    if (o.maxFailuresPerUser > 0) {
      const user = this.#byUser.peek(username, now)
      const ua = this.#byUserAddress.peek(uaKey, now)
      if (user && ua && user.count >= o.maxFailuresPerUser && ua.count > 0) {
        this.#events.throttled('user')
        this.#warnOnce(user, { username, failures: user.count, windowMs: o.failureWindowMs }, 'auth: too many failed logins for this static user; refusing addresses that failed for it until the window ends')
        return { ok: false, returnCode: 5, reason: 'too many failed logins for this user from this address', throttled: 'user' }
      }
    }
    if (password === undefined) {
      this.#fail(username, address, now)
      return { ok: false, returnCode: 4, reason: 'no password for static user' }
    }

    const attempt = createHmac('sha256', this.#secret).update(username).update('\u0000').update(encoded).update('\u0000').update(password).digest('base64')
    const knownUntil = this.#knownFailures.get(attempt)
    if (knownUntil !== undefined) {
      if (knownUntil > now) {
        this.#events.throttled('known_failure')
        this.#fail(username, address, now)
        return { ok: false, returnCode: 4, reason: 'wrong password for static user (same wrong password seen just before)', throttled: 'known_failure' }
      }
      this.#knownFailures.delete(attempt)
    }

    // Counted in flight from here: a burst from one address cannot queue more checks than its limit.
    const ua = this.#byUserAddress.get(uaKey, now)
    addr.pending++
    ua.pending++
    try {
      let verdict = this.#inflight.get(attempt)
      if (!verdict) {
        if (this.#running >= o.concurrency && this.#waiting.length >= o.queue) {
          this.#overloaded()
          return { ok: false, returnCode: 3, reason: 'password checks overloaded; try again later', throttled: 'overload' }
        }
        verdict = this.#hash(password, encoded).finally(() => this.#inflight.delete(attempt))
        this.#inflight.set(attempt, verdict)
      }
      const ok = await verdict
      const done = Date.now()
      if (ok) return { ok: true }
      this.#fail(username, address, done)
      if (o.failureCacheTtlMs > 0) this.#rememberFailure(attempt, done + o.failureCacheTtlMs)
      return { ok: false, returnCode: 4, reason: 'wrong password for static user' }
    } finally {
      addr.pending--
      ua.pending--
      this.#byAddress.release(address, addr)
      this.#byUserAddress.release(uaKey, ua)
    }
  }

  async #hash (password: Buffer, encoded: string): Promise<boolean> {
    if (this.#running >= this.#opts.concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    else this.#running++
    try {
      this.#events.hashed()
      return await this.#verify(password, encoded)
    } finally {
      // Hand the slot straight to the next waiter (the count stays), or free it.
      const next = this.#waiting.shift()
      if (next) next()
      else this.#running--
    }
  }

  #fail (username: string, address: string, now: number): void {
    this.#byAddress.get(address, now).count++
    this.#byUser.get(username, now).count++
    this.#byUserAddress.get(`${username}\u0000${address}`, now).count++
  }

  #rememberFailure (attempt: string, until: number): void {
    if (this.#knownFailures.size >= MAX_ENTRIES) {
      const oldest = this.#knownFailures.keys().next()
      if (!oldest.done) this.#knownFailures.delete(oldest.value)
    }
    this.#knownFailures.set(attempt, until)
  }

  /** One warning per key per window: a flood of refusals does not become a flood of log lines. */
  #warnOnce (w: Window, fields: Record<string, unknown>, msg: string): void {
    if (w.warned) return
    w.warned = true
    this.#events.warn(fields, msg)
  }

  #overloaded (): void {
    this.#events.throttled('overload')
    this.#overloadRefusedSinceLog++
    const now = Date.now()
    if (now - this.#lastOverloadLog >= OVERLOAD_LOG_INTERVAL_MS) {
      this.#events.warn({ refused: this.#overloadRefusedSinceLog, concurrency: this.#opts.concurrency, queue: this.#opts.queue }, 'auth: static-user password checks overloaded; refusing with CONNACK 3 (server unavailable)')
      this.#lastOverloadLog = now
      this.#overloadRefusedSinceLog = 0
    }
  }
}
