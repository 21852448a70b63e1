import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Aedes } from 'aedes'
import { LocalBus } from '../../src/bus/local-bus.js'

interface Bus {
  on: (topic: string, fn: (m: unknown, done: () => void) => void, cb?: () => void) => void
  removeListener: (topic: string, fn: (m: unknown, done: () => void) => void, cb?: () => void) => void
  emit: (m: { topic: string }, cb: (err?: Error) => void) => void
}

/** The very bus Aedes builds by default (mqemitter with Aedes' options); the broker is never started. */
function aedesDefaultBus (): Bus {
  return (new Aedes({ concurrency: 100 }) as unknown as { mq: Bus }).mq
}

/**
 * The scenario of aedes#193 / mqemitter#204: 20k messages queued behind the bus'
 * concurrency limit, then their only subscriber goes away. Returns what happened.
 */
async function drainQueuedMessagesWithoutListeners (mq: Bus): Promise<{ threw: string | undefined, completed: number }> {
  const held: Array<() => void> = []
  const listener = (_m: unknown, done: () => void): void => { held.push(done) }
  await new Promise<void>((resolve) => mq.on('t', listener, resolve))
  const total = 20000
  let completed = 0
  const allDone = new Promise<void>((resolve) => {
    for (let i = 0; i < total; i++) {
      mq.emit({ topic: 't' }, () => {
        if (++completed === total) resolve()
      })
    }
  })
  await new Promise<void>((resolve) => mq.removeListener('t', listener, resolve))
  let threw: string | undefined
  try {
    for (const done of held.splice(0)) done()
  } catch (err) {
    threw = (err as Error).message
  }
  if (threw === undefined) await Promise.race([allDone, new Promise((resolve) => setTimeout(resolve, 5000))])
  return { threw, completed }
}

describe('20k messages in flight whose subscriber goes away (aedes#193, mqemitter#204)', () => {
  it('Aedes\' default bus (mqemitter) overflows the stack', async () => {
    const result = await drainQueuedMessagesWithoutListeners(aedesDefaultBus())
    assert.match(result.threw ?? '', /Maximum call stack size exceeded/)
  })

  it('the gateway\'s LocalBus completes every message', async () => {
    const result = await drainQueuedMessagesWithoutListeners(new LocalBus() as unknown as Bus)
    assert.equal(result.threw, undefined)
    assert.equal(result.completed, 20000)
  })
})
