import type { AsyncRedisPersistence } from 'aedes-persistence-redis'
import type { Cluster, Redis } from 'ioredis'

/** A store write that a PUBACK or SUBACK depends on was not confirmed by enough replicas. */
export class ReplicasNotConfirmedError extends Error {
  readonly code = 'REPLICAS_NOT_CONFIRMED'
}

/**
 * `persistence.redis.waitReplicas`: Redis replicates asynchronously, so a write the primary
 * acknowledged can be missing on the replica that Sentinel promotes when the primary dies.
 * `confirm()` resolves once `WAIT n timeout` on the store's connection reports at least `n`
 * replicas holding every write that connection made so far, and rejects otherwise; the
 * caller then refuses the acknowledgement (the client sends the message again).
 *
 * WAIT covers all earlier writes of its connection, and Redis holds the connection's later
 * commands until it returns; one WAIT per message would serialize every store write behind a
 * replica round trip. So one WAIT is in flight at a time, and the confirmations asked for
 * meanwhile share the next one: each waits for at most one WAIT already running plus its own.
 *
 * WAIT only counts replicas that hold the writes *of this connection*: after a reconnect (to
 * the promoted replica, say) a WAIT knows nothing of the writes made before, and would
 * confirm them. So the caller takes `epoch` before its writes and `confirm(epoch)` fails when
 * the connection was replaced since (ioredis resends unanswered commands after a reconnect).
 */
export class ReplicaWait {
  #waiting: Array<{ epoch: number, resolve: () => void, reject: (err: Error) => void }> = []
  #inFlight = false
  #epoch = 0
  /** Replicas the last WAIT reported (undefined before the first). */
  lastConfirmed: number | undefined

  constructor (private readonly conn: Redis | Cluster, private readonly replicas: number, private readonly timeoutMs: number) {
    conn.on('close', () => { this.#epoch++ })
  }

  /** Which connection is current: take it before the writes that `confirm` is to cover. */
  get epoch (): number { return this.#epoch }

  /** Resolves when every write this connection made since `epoch` is on `replicas` replicas. */
  confirm (epoch: number): Promise<void> {
    if (epoch !== this.#epoch) return Promise.reject(changed())
    return new Promise((resolve, reject) => {
      this.#waiting.push({ epoch, resolve, reject })
      this.#next()
    })
  }

  #next (): void {
    if (this.#inFlight || this.#waiting.length === 0) return
    const batch = this.#waiting
    this.#waiting = []
    this.#inFlight = true
    const sentOn = this.#epoch
    ;(this.conn as Redis).wait(this.replicas, this.timeoutMs).then((confirmed) => {
      this.lastConfirmed = confirmed
      if (confirmed >= this.replicas) {
        for (const w of batch) {
          if (w.epoch === sentOn && this.#epoch === sentOn) w.resolve()
          else w.reject(changed())
        }
        return
      }
      const err = new ReplicasNotConfirmedError(`${confirmed} of ${this.replicas} Redis replicas confirmed the write within ${this.timeoutMs} ms`)
      for (const w of batch) w.reject(err)
    }, (err: Error) => {
      for (const w of batch) w.reject(err)
    }).finally(() => {
      this.#inFlight = false
      this.#next()
    })
  }
}

function changed (): ReplicasNotConfirmedError {
  return new ReplicasNotConfirmedError('the Redis connection was replaced since the write; its replication cannot be confirmed')
}

/**
 * The store writes an acknowledgement depends on wait for the replicas: a message's
 * offline-queue entries (before its PUBACK: the Aedes patch publishes, and so enqueues, first)
 * and a session's subscriptions (before its SUBACK). A failed confirmation fails the store
 * call: Aedes sends no PUBACK/SUBACK and closes the connection; the client sends it again.
 * Messages without persistent subscribers write nothing here and wait for nothing.
 */
export function confirmReplicatedWrites (store: AsyncRedisPersistence, replicas: ReplicaWait): void {
  const enqueue = store.outgoingEnqueueCombi.bind(store)
  store.outgoingEnqueueCombi = async (subs, packet) => {
    const epoch = replicas.epoch
    const replies = await enqueue(subs, packet)
    if (subs.length > 0) await replicas.confirm(epoch)
    return replies
  }
  const addSubscriptions = store.addSubscriptions.bind(store)
  store.addSubscriptions = async (client, subs) => {
    const epoch = replicas.epoch
    const result = await addSubscriptions(client, subs)
    await replicas.confirm(epoch)
    return result
  }
}
