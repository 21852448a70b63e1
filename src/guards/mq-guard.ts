/**
 * Guard for Aedes' default bus (mqemitter 7). When messages are queued behind the
 * concurrency limit and their subscribers are gone (clients that exited abruptly with
 * ~20k QoS 0 messages in flight), every queued message matches no listener,
 * fastparallel completes it synchronously, and mqemitter's `released` starts the
 * next one on the same stack: "Maximum call stack size exceeded" (aedes#193,
 * mqemitter#204). The guard completes a listener-less message on a later turn when
 * others are queued behind it, which turns the recursion into a loop over turns.
 * A message with no listener and nothing queued still completes synchronously, so the
 * common path costs one array length check.
 */

interface MQEmitterInternals {
  _matcher: { match: (topic: string) => unknown[] }
  _messageQueue: unknown[]
  _released: () => void
  _doing: boolean
  current: number
  _do: (message: { topic: string }, callback: (err?: Error) => void) => unknown
}

export function guardMqEmitterRecursion (mq: unknown): void {
  const emitter = mq as MQEmitterInternals
  if (typeof emitter._do !== 'function' || typeof emitter._released !== 'function' || !Array.isArray(emitter._messageQueue)) {
    throw new Error('mqemitter internals changed; the recursion guard cannot be installed')
  }
  const originalDo = emitter._do
  emitter._do = function guardedDo (this: MQEmitterInternals, message, callback) {
    if (this._messageQueue.length > 0 && this._matcher.match(message.topic).length === 0) {
      this._doing = true
      this.current++
      setImmediate(() => {
        callback()
        this._released()
      })
      return this
    }
    return originalDo.call(this, message, callback)
  }
}
