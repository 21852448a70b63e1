import { performance } from 'node:perf_hooks'

/** A route change's reply: the members hash and every node's tick count (flat HGETALL lists). */
export type ChangeReply = [string[], string[]]

interface Wait {
  acked: Set<string>
  expected?: Set<string>
  finish?: () => void
  recheck?: () => void
}

/**
 * The acknowledgements a route change waits for (route-table.ts): each other route-aware
 * member applies the change and answers on this node's reply channel. The wait ends when all
 * have answered, or for each member that does not, once its lease has surely run out.
 *
 * A member may skip Redis only until `waitMs` (its lease plus a margin) after sending a tick
 * that came back to it; a tick Redis runs after the change reaches it after the change. Redis
 * counts each node's ticks, and every tick reply (every 500 ms) and change reply carries all
 * counts: `since` is when this node first saw a member's current count, so that member sent no
 * tick Redis ran between then and now, and the wait for it ends at `since + waitMs`: `waitMs`
 * for a member that ticks (it answers long before), nothing for one silent for longer. So a dead
 * node does not hold every SUBACK in the cluster until the sweep removes it. Only this process's
 * monotonic clock is read; Redis' wall clock is not.
 */
export class RouteAcks {
  readonly #waits = new Map<string, Wait>()
  /** Each other node's tick count and when this node first saw it (performance.now()). */
  readonly #seen = new Map<string, { count: string, since: number }>()

  constructor (private readonly self: string, private readonly waitMs: number, private readonly onTimeout: (silent: string[]) => void) {}

  /** Tick counts as a flat HGETALL list, just received. */
  observe (counts: string[]): void {
    const now = performance.now()
    for (let i = 0; i + 1 < counts.length; i += 2) {
      const node = counts[i]!
      const count = counts[i + 1]!
      if (this.#seen.get(node)?.count !== count) this.#seen.set(node, { count, since: now })
    }
  }

  acked (reqId: string, from: string): void {
    const wait = this.#waits.get(reqId)
    if (wait === undefined) return
    wait.acked.add(from)
    if (wait.expected?.delete(from) !== true) return
    if (wait.expected.size === 0) wait.finish?.()
    else wait.recheck?.()
  }

  forget (reqId: string): void { this.#waits.delete(reqId) }

  /**
   * Registered before the change is sent (an ack may arrive before the script's reply); the
   * returned function takes the script's reply and waits for the active members it names.
   */
  expect (reqId: string, passive: boolean): (reply: ChangeReply) => Promise<void> {
    const wait: Wait = { acked: new Set() }
    this.#waits.set(reqId, wait)
    return ([members, counts]) => new Promise<void>((resolve) => {
      this.observe(counts)
      const expected = new Set<string>()
      for (let i = 0; i + 1 < members.length; i += 2) {
        if (members[i] !== this.self && members[i + 1] === 'a' && !wait.acked.has(members[i]!)) expected.add(members[i]!)
      }
      const start = performance.now()
      let timer: NodeJS.Timeout | undefined
      const finish = (): void => { clearTimeout(timer); this.#waits.delete(reqId); resolve() }
      // Ends when each member still expected has answered or gone past its deadline.
      const recheck = (): void => {
        let until = 0
        // A member with no tick count yet (joined, not ticked): the full wait from the change.
        for (const node of expected) until = Math.max(until, Math.min(this.#seen.get(node)?.since ?? start, start) + this.waitMs)
        clearTimeout(timer)
        const ms = until - performance.now()
        if (ms <= 0) { finish(); this.onTimeout([...expected]); return }
        timer = setTimeout(recheck, ms)
      }
      if (expected.size === 0 || passive) { finish(); return }
      wait.expected = expected
      wait.finish = finish
      wait.recheck = recheck
      recheck()
    })
  }
}
