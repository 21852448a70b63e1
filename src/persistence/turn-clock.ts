import { performance } from 'node:perf_hooks'

/**
 * performance.now() read at most once per `every` calls within one event-loop turn: the route
 * table asks "is my lease still valid?" for every published message (route-table.ts
 * wantsRemote), and the clock read was ~1 % of a Redis-mode node's CPU under QoS 1 load
 * (bench/redis aggregate, profiled; ~50 ns a read here). A reading is reused only within the
 * turn it was taken in (a setImmediate forgets it) and for at most `every` calls, so it is
 * stale by at most the time those calls take (a few ms even on a loaded machine), far inside
 * the lease's margin (ACK_WAIT_MS - LEASE_MS = 200 ms). A check with a fresh reading each time
 * is no stronger: the process may be descheduled between the reading and the publish anyway.
 */
export class TurnClock {
  #reading = 0
  #left = 0
  readonly #forget = (): void => { this.#left = 0 }

  constructor (private readonly every = 256) {}

  now (): number {
    if (this.#left === 0) {
      this.#reading = performance.now()
      this.#left = this.every
      setImmediate(this.#forget)
    }
    this.#left--
    return this.#reading
  }
}
