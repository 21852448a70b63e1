import { Counter, Histogram, type Registry } from 'prom-client'

/**
 * A JSON-over-HTTP decision callback to a business service (login, per-topic ACL),
 * with what a gateway in front of millions of clients needs: a time bound, a TTL cache
 * (allow and deny cached for different times), and request coalescing, so that a
 * reconnect storm of one user costs the business service one request, not thousands.
 */

export class CallbackError extends Error {}

export interface CallbackOptions {
  /** Label for metrics and logs (e.g. "auth", "acl:live"). */
  name: string
  url: string
  timeoutMs: number
}

/** Bound on cached entries per callback; the oldest go first. */
const MAX_CACHE_ENTRIES = 100_000

export interface CallbackMetrics {
  duration: Histogram<'callback' | 'outcome'>
  cache: Counter<'callback' | 'result'>
}

const metricsByRegistry = new WeakMap<Registry, CallbackMetrics>()

/** The callback metrics of one gateway's registry (created once, shared by every callback). */
export function callbackMetrics (registry: Registry): CallbackMetrics {
  let metrics = metricsByRegistry.get(registry)
  if (!metrics) {
    metrics = {
      duration: new Histogram({
        name: 'mqgw_callback_duration_seconds',
        help: 'HTTP callback latency, by callback and outcome (ok, http_error, invalid, timeout, unreachable)',
        labelNames: ['callback', 'outcome'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers: [registry]
      }),
      cache: new Counter({
        name: 'mqgw_callback_cache_total',
        help: 'Callback cache lookups, by callback and result (hit, miss, coalesced)',
        labelNames: ['callback', 'result'],
        registers: [registry]
      })
    }
    metricsByRegistry.set(registry, metrics)
  }
  return metrics
}

interface Entry<T> { value: T, expires: number }

export class HttpCallback<T> {
  readonly #opts: CallbackOptions
  readonly #metrics: CallbackMetrics
  readonly #cache = new Map<string, Entry<T>>()
  readonly #inflight = new Map<string, Promise<T>>()
  readonly #parse: (body: unknown) => T
  readonly #ttl: (value: T) => number

  /**
   * @param parse turns the response JSON into a decision; throws CallbackError if invalid
   * @param ttl how long (ms) to cache a decision; 0 = do not cache
   */
  constructor (opts: CallbackOptions, metrics: CallbackMetrics, parse: (body: unknown) => T, ttl: (value: T) => number) {
    this.#opts = opts
    this.#metrics = metrics
    this.#parse = parse
    this.#ttl = ttl
  }

  /** A cached decision, without calling out (for synchronous paths). */
  peek (key: string): T | undefined {
    const entry = this.#cache.get(key)
    if (!entry) return undefined
    if (entry.expires <= Date.now()) {
      this.#cache.delete(key)
      return undefined
    }
    return entry.value
  }

  /** The decision for `key`: from the cache, from a request already under way, or by calling. */
  decide (key: string, body: () => object): Promise<T> {
    const cached = this.peek(key)
    if (cached !== undefined) {
      this.#metrics.cache.inc({ callback: this.#opts.name, result: 'hit' })
      return Promise.resolve(cached)
    }
    const pending = this.#inflight.get(key)
    if (pending) {
      this.#metrics.cache.inc({ callback: this.#opts.name, result: 'coalesced' })
      return pending
    }
    this.#metrics.cache.inc({ callback: this.#opts.name, result: 'miss' })
    const request = this.#call(body()).then((value) => {
      const ttl = this.#ttl(value)
      if (ttl > 0) this.#store(key, value, ttl)
      return value
    }).finally(() => {
      this.#inflight.delete(key)
    })
    this.#inflight.set(key, request)
    return request
  }

  #store (key: string, value: T, ttl: number): void {
    if (this.#cache.size >= MAX_CACHE_ENTRIES) {
      const oldest = this.#cache.keys().next()
      if (!oldest.done) this.#cache.delete(oldest.value)
    }
    this.#cache.set(key, { value, expires: Date.now() + ttl })
  }

  async #call (body: object): Promise<T> {
    const started = process.hrtime.bigint()
    let outcome = 'ok'
    try {
      let res: Response
      try {
        res = await fetch(this.#opts.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.#opts.timeoutMs)
        })
      } catch (err) {
        const name = (err as Error).name
        outcome = name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'unreachable'
        throw new CallbackError(outcome === 'timeout'
          ? `${this.#opts.name} callback timed out after ${this.#opts.timeoutMs} ms`
          : `${this.#opts.name} callback unreachable: ${causeOf(err)}`)
      }
      let text: string
      try {
        text = await res.text()
      } catch (err) {
        outcome = (err as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable'
        throw new CallbackError(`${this.#opts.name} callback response failed: ${(err as Error).message}`)
      }
      if (res.status !== 200) {
        outcome = 'http_error'
        throw new CallbackError(`${this.#opts.name} callback answered HTTP ${res.status}`)
      }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        outcome = 'invalid'
        throw new CallbackError(`${this.#opts.name} callback answered invalid JSON`)
      }
      try {
        return this.#parse(json)
      } catch (err) {
        outcome = 'invalid'
        throw err instanceof CallbackError ? err : new CallbackError(`${this.#opts.name} callback answer invalid: ${(err as Error).message}`)
      }
    } finally {
      this.#metrics.duration.observe({ callback: this.#opts.name, outcome }, Number(process.hrtime.bigint() - started) / 1e9)
    }
  }
}

function causeOf (err: unknown): string {
  const cause = (err as { cause?: { code?: string, message?: string } }).cause
  return cause?.code ?? cause?.message ?? (err as Error).message
}
