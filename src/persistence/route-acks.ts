import { performance } from 'node:perf_hooks'

interface Wait {
  acked: Set<string>
  expected?: Set<string>
  finish?: () => void
  /** When each other node's latest tick had arrived, as of this change's own message on the control connection. */
  heard?: Map<string, number>
  shorten?: () => void
}

/**
 * The acknowledgements a route change waits for (route-table.ts): each other route-aware
 * member applies the change and answers on this node's reply channel. The wait ends when all
 * have answered, or at the latest after `waitMs` (a member's lease, from ticks Redis ran before
 * the change, has run out by then, so it publishes everything). Sooner for members already
 * silent when the change went out: a member renews its lease only from its own ticks, so one
 * whose latest tick arrived here at h (ticks Redis ran before the change are delivered here
 * before the change's own message, on the same connection) has stopped skipping Redis by
 * h + lease, unless a later tick reached it, which it reads after the change. So a dead node
 * does not hold every SUBACK in the cluster for `waitMs` until the sweep removes it.
 */
export class RouteAcks {
  readonly #waits = new Map<string, Wait>()
  /** When each other node's latest tick arrived here (performance.now()). */
  readonly #heard = new Map<string, number>()

  constructor (private readonly self: string, private readonly waitMs: number, private readonly onTimeout: (silent: string[]) => void) {}

  heard (node: string): void { this.#heard.set(node, performance.now()) }

  /** This node's own change `reqId` came back on the control connection. */
  ownChange (reqId: string): void {
    const wait = this.#waits.get(reqId)
    if (wait === undefined || wait.heard !== undefined) return
    wait.heard = new Map(this.#heard)
    wait.shorten?.()
  }

  acked (reqId: string, from: string): void {
    const wait = this.#waits.get(reqId)
    if (wait === undefined) return
    wait.acked.add(from)
    if (wait.expected?.delete(from) !== true) return
    if (wait.expected.size === 0) wait.finish?.()
    else wait.shorten?.()
  }

  forget (reqId: string): void { this.#waits.delete(reqId) }

  /**
   * Registered before the change is sent (an ack may arrive before the script's reply); the
   * returned function takes the members hash the script returned and waits for the active ones.
   */
  expect (reqId: string, passive: boolean): (members: string[]) => Promise<void> {
    const wait: Wait = { acked: new Set() }
    this.#waits.set(reqId, wait)
    return (members) => new Promise<void>((resolve) => {
      const expected = new Set<string>()
      for (let i = 0; i + 1 < members.length; i += 2) {
        if (members[i] !== this.self && members[i + 1] === 'a' && !wait.acked.has(members[i]!)) expected.add(members[i]!)
      }
      if (expected.size === 0 || passive) { this.#waits.delete(reqId); resolve(); return }
      const finish = (): void => { clearTimeout(timer); this.#waits.delete(reqId); resolve() }
      const latest = performance.now() + this.waitMs
      let timer = setTimeout(() => { finish(); this.onTimeout([...expected]) }, this.waitMs)
      wait.expected = expected
      wait.finish = finish
      // Ends when each member still expected has answered or gone past its own deadline.
      wait.shorten = () => {
        let until = 0
        for (const node of expected) {
          const at = wait.heard?.get(node)
          if (at === undefined) return // not heard since this node started: the full wait
          until = Math.max(until, at + this.waitMs)
        }
        if (until >= latest) return
        clearTimeout(timer)
        timer = setTimeout(finish, Math.max(0, until - performance.now()))
      }
      if (wait.heard !== undefined) wait.shorten()
    })
  }
}
