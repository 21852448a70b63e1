/** A route change: '+' this node has a local subscriber for `filter` now, '-' no longer. */
export interface RouteChange { op: '+' | '-', filter: string }

/**
 * Collects the route changes of one event-loop turn and hands them to `send` together, at most
 * `max` per call, one call at a time (route-table.ts: one script call and one acknowledgement
 * per other node per batch, instead of one each per filter). A reconnect storm, where every
 * client subscribes to a filter of its own (`user/${username}/inbox`), is exactly where this
 * counts: each other node would otherwise apply and acknowledge every SUBSCRIBE one by one.
 * Batches go in order (a later one may change a filter of an earlier one): one script call at a
 * time. The wait for acknowledgements is not part of that order: `send` resolves once its call
 * is done, with what is left to wait for (the acknowledgements, in an object: an async function
 * returning a promise would flatten it into its own), so the next batch goes out
 * meanwhile, and a node that does not acknowledge holds only the batches sent before it went
 * quiet, not every later one behind them.
 */
export class RouteChangeBatches {
  #queue: Array<RouteChange & { done: () => void }> = []
  #flushing = false

  constructor (private readonly send: (batch: RouteChange[]) => Promise<{ acknowledged: Promise<void> } | undefined>, private readonly max: number) {}

  /** Resolves when the batch holding this change has been sent and acknowledged (or `send` failed). */
  push (op: '+' | '-', filter: string): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#queue.push({ op, filter, done: resolve })
      if (this.#queue.length === 1 && !this.#flushing) setImmediate(() => { void this.#flush() })
    })
  }

  async #flush (): Promise<void> {
    this.#flushing = true
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.max)
        const finish = (): void => { for (const change of batch) change.done() }
        let sent: { acknowledged: Promise<void> } | undefined
        try {
          sent = await this.send(batch.map(({ op, filter }) => ({ op, filter })))
        } catch {
          finish()
          continue
        }
        if (sent === undefined) finish()
        else sent.acknowledged.then(finish, finish)
      }
    } finally {
      this.#flushing = false
    }
  }
}
