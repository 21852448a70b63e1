/** A route change: '+' this node has a local subscriber for `filter` now, '-' no longer. */
export interface RouteChange { op: '+' | '-', filter: string }

/**
 * Collects the route changes of one event-loop turn and hands them to `send` together, at most
 * `max` per call, one call at a time (route-table.ts: one script call and one acknowledgement
 * per other node per batch, instead of one each per filter). A reconnect storm, where every
 * client subscribes to a filter of its own (`user/${username}/inbox`), is exactly where this
 * counts: each other node would otherwise apply and acknowledge every SUBSCRIBE one by one.
 * Batches go in order (a later one may change a filter of an earlier one).
 */
export class RouteChangeBatches {
  #queue: Array<RouteChange & { done: () => void }> = []
  #flushing = false

  constructor (private readonly send: (batch: RouteChange[]) => Promise<void>, private readonly max: number) {}

  /** Resolves when the batch holding this change has been sent (`send` resolved or threw). */
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
        try {
          await this.send(batch.map(({ op, filter }) => ({ op, filter })))
        } finally {
          for (const change of batch) change.done()
        }
      }
    } finally {
      this.#flushing = false
    }
  }
}
