import type { Connection } from './connections.js'

/** A step that must finish (call `release`) before the client's next PUBLISH starts. */
export type OrderedTask = (release: () => void) => void

/**
 * Aedes hands every packet of one socket read to its handlers at once, so async hooks
 * (and the Redis retained ledger) could finish out of order; each client's PUBLISHes
 * pass authorization one at a time. Tasks that release synchronously run in a loop.
 */
export function inPublishOrder (conn: Connection, task: OrderedTask): void {
  const queue = conn.publishQueue ??= []
  queue.push(task)
  if (conn.publishing) return
  conn.publishing = true
  drain(conn, queue)
}

function drain (conn: Connection, queue: OrderedTask[]): void {
  // A loop, not recursion: a read of thousands of packets decided synchronously must not grow the stack.
  for (let task = queue.shift(); task !== undefined; task = queue.shift()) {
    let inCall = true
    let releasedInCall = false
    task(() => {
      if (inCall) releasedInCall = true
      else drain(conn, queue)
    })
    inCall = false
    if (!releasedInCall) return
  }
  conn.publishing = false
}
