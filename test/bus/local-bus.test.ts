import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Aedes } from 'aedes'
import { LocalBus, type BusListener } from '../../src/bus/local-bus.js'

interface TestPacket { topic: string, n?: number }

function emitAsync (bus: LocalBus<TestPacket>, packet: TestPacket): Promise<Error | undefined> {
  return new Promise((resolve) => bus.emit(packet, resolve))
}

/** A listener that records the topics it receives and calls done at once. */
function recorder (): { listener: BusListener<TestPacket>, topics: string[] } {
  const topics: string[] = []
  return { topics, listener: (packet, done) => { topics.push(packet.topic); done() } }
}

describe('LocalBus', () => {
  it('listenersOf answers what an emit would reach, and follows every on/removeListener (its answer is reused in between)', () => {
    const bus = new LocalBus<TestPacket>()
    const own = recorder()
    const other = recorder()
    const topic = '$SYS/n1/new/clients'
    assert.deepEqual(bus.listenersOf(topic), [])
    bus.on('$SYS/+/new/clients', own.listener)
    assert.deepEqual(bus.listenersOf(topic), [own.listener])
    assert.equal(bus.listenersOf(topic), bus.listenersOf(topic), 'unchanged subscriptions: the same answer')
    bus.on('$SYS/#', other.listener)
    assert.deepEqual(new Set(bus.listenersOf(topic)), new Set([own.listener, other.listener]))
    assert.deepEqual(bus.listenersOf('$SYS/n1/disconnect/clients'), [other.listener])
    bus.removeListener('$SYS/#', other.listener)
    assert.deepEqual(bus.listenersOf(topic), [own.listener])
    assert.deepEqual(bus.listenersOf('$SYS/n1/disconnect/clients'), [])
  })

  it('delivers to exact and wildcard listeners, once per matching registration', async () => {
    const bus = new LocalBus<TestPacket>()
    const exact = recorder()
    const wildcard = recorder()
    const both = recorder()
    bus.on('d/1/cmd', exact.listener)
    bus.on('d/+/cmd', wildcard.listener)
    bus.on('d/#', wildcard.listener)
    bus.on('d/1/cmd', both.listener)
    bus.on('d/1/#', both.listener)
    assert.equal(bus.subscriptionCount, 5)
    assert.equal(await emitAsync(bus, { topic: 'd/1/cmd' }), undefined)
    await emitAsync(bus, { topic: 'd/2/cmd' })
    await emitAsync(bus, { topic: 'd' })
    assert.deepEqual(exact.topics, ['d/1/cmd'])
    assert.deepEqual(wildcard.topics, ['d/1/cmd', 'd/1/cmd', 'd/2/cmd', 'd/2/cmd', 'd'])
    assert.deepEqual(both.topics, ['d/1/cmd', 'd/1/cmd'])
  })

  it('on and removeListener take effect at once; their callbacks run on a later turn', async () => {
    const bus = new LocalBus<TestPacket>()
    const { listener, topics } = recorder()
    let subscribed = false
    bus.on('t', listener, () => { subscribed = true })
    assert.equal(subscribed, false)
    await emitAsync(bus, { topic: 't' })
    assert.deepEqual(topics, ['t'])
    let unsubscribed = false
    bus.removeListener('t', listener, () => { unsubscribed = true })
    assert.equal(unsubscribed, false)
    await emitAsync(bus, { topic: 't' })
    assert.deepEqual(topics, ['t'])
    assert.equal(bus.subscriptionCount, 0)
    await nextTurn()
    assert.equal(subscribed, true)
    assert.equal(unsubscribed, true)
  })

  it("emit's callback waits for every listener's done; a second done counts once", async () => {
    const bus = new LocalBus<TestPacket>()
    const held: Array<() => void> = []
    const holder: BusListener<TestPacket> = (_packet, done) => { held.push(done) }
    bus.on('t', holder)
    bus.on('#', holder)
    bus.on('+', holder)
    let completed = 0
    bus.emit({ topic: 't' }, () => { completed++ })
    assert.equal(held.length, 3)
    held[0]!()
    held[0]!() // a misbehaving listener calling done twice must not complete the emit early
    held[1]!()
    await nextTurn()
    assert.equal(completed, 0)
    held[2]!()
    assert.equal(completed, 1)
  })

  it('a listener that throws does not stop the others, counts as done and is reported', async () => {
    const thrown: string[] = []
    const bus = new LocalBus<TestPacket>({ onListenerError: (err) => thrown.push((err as Error).message) })
    const before = recorder()
    const after = recorder()
    bus.on('t', before.listener)
    bus.on('t', () => { throw new Error('listener bug') })
    bus.on('t', (_packet, done) => { done(); throw new Error('done, then a bug') })
    bus.on('#', after.listener)
    assert.equal(await emitAsync(bus, { topic: 't' }), undefined)
    assert.deepEqual(before.topics, ['t'])
    assert.deepEqual(after.topics, ['t'])
    assert.deepEqual(thrown, ['listener bug', 'done, then a bug'])
  })

  it('an exception thrown by the emit callback reaches the caller (never swallowed as a listener error)', () => {
    const thrown: unknown[] = []
    const bus = new LocalBus<TestPacket>({ onListenerError: (err) => thrown.push(err) })
    bus.on('t', (_packet, done) => { done() })
    assert.throws(() => bus.emit({ topic: 't' }, () => { throw new Error('publisher bug') }), /publisher bug/)
    assert.deepEqual(thrown, [])
  })

  it('a subscriber that never calls done does not stall other topics (no broker-wide concurrency slot)', async () => {
    const stuck = 200 // above Aedes' default concurrency of 100
    const slowBus = new LocalBus<TestPacket>()
    slowBus.on('slow', () => {}) // holds every done
    slowBus.on('fast', (_packet, done) => { done() })
    for (let i = 0; i < stuck; i++) slowBus.emit({ topic: 'slow' })
    assert.equal(await emitAsync(slowBus, { topic: 'fast' }), undefined)

    // The contrast: Aedes' default bus (mqemitter, concurrency 100) queues 'fast' behind them.
    const aedesBus = (new Aedes({ concurrency: 100 }) as unknown as { mq: LocalBus<TestPacket> }).mq
    aedesBus.on('slow', () => {})
    aedesBus.on('fast', (_packet, done) => { done() })
    for (let i = 0; i < stuck; i++) aedesBus.emit({ topic: 'slow' })
    let fastCompleted = false
    aedesBus.emit({ topic: 'fast' }, () => { fastCompleted = true })
    // mqemitter starts a message only when one of its 100 slots frees, i.e. when a slow
    // delivery calls done, which none ever does: 'fast' sits in its queue behind 100 more.
    const state = aedesBus as unknown as { current: number, length: number }
    assert.equal(state.current, 100, 'every slot held by a slow delivery')
    assert.equal(state.length, stuck - 100 + 1, "'fast' queued behind the other slow messages")
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(fastCompleted, false)
  })

  it('with no listener the callback runs before emit returns', () => {
    const bus = new LocalBus<TestPacket>()
    let completed = false
    bus.emit({ topic: 'nobody/listens' }, (err) => { assert.equal(err, undefined); completed = true })
    assert.equal(completed, true)
  })

  it('close: later emits call back with Error("bus closed"); in-flight deliveries still complete', async () => {
    const bus = new LocalBus<TestPacket>()
    let release: (() => void) | undefined
    bus.on('t', (_packet, done) => { release = done })
    let inFlight: Error | undefined | 'pending' = 'pending'
    bus.emit({ topic: 't' }, (err) => { inFlight = err })
    await new Promise<void>((resolve) => bus.close(resolve))
    assert.equal(bus.isClosed, true)
    const err = await emitAsync(bus, { topic: 't' })
    assert.ok(err instanceof Error)
    assert.equal(err.message, 'bus closed')
    release!()
    assert.equal(inFlight, undefined)
  })

  it('a topic deeper than 100 levels calls back with an error instead of throwing', async () => {
    const bus = new LocalBus<TestPacket>()
    const err = await emitAsync(bus, { topic: Array.from({ length: 101 }, () => 'x').join('/') })
    assert.match(err?.message ?? '', /too many words/)
  })
})

describe('LocalBus never overflows the stack', () => {
  const total = 20000

  it(`${total} emits whose listeners all call done synchronously`, () => {
    const bus = new LocalBus<TestPacket>()
    bus.on('t', (_packet, done) => { done() })
    bus.on('#', (_packet, done) => { done() })
    let completed = 0
    for (let i = 0; i < total; i++) bus.emit({ topic: 't', n: i }, () => { completed++ })
    assert.equal(completed, total)
  })

  it(`${total} emits in flight whose subscriber is removed before it calls done (aedes#193)`, async () => {
    const bus = new LocalBus<TestPacket>()
    const held: Array<() => void> = []
    const holder: BusListener<TestPacket> = (_packet, done) => { held.push(done) }
    bus.on('t', holder)
    let completed = 0
    let allDone = (): void => {}
    const finished = new Promise<void>((resolve) => { allDone = resolve })
    const onComplete = (): void => { if (++completed === 2 * total) allDone() }
    for (let i = 0; i < total; i++) bus.emit({ topic: 't', n: i }, onComplete)
    await new Promise<void>((resolve) => bus.removeListener('t', holder, resolve))
    // Messages published after the subscriber left find no listener.
    for (let i = 0; i < total; i++) bus.emit({ topic: 't', n: i }, onComplete)
    assert.equal(completed, total)
    for (const done of held.splice(0)) done()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`only ${completed} completed`)), 5000) })
    await Promise.race([finished, timeout]).finally(() => clearTimeout(timer))
    assert.equal(completed, 2 * total)
  })

  for (const withListener of [false, true]) {
    it(`a publisher that emits the next of ${total} messages from the previous one's callback (${withListener ? 'listener calls done synchronously' : 'no listener'})`, async () => {
      const bus = new LocalBus<TestPacket>()
      if (withListener) bus.on('t', (_packet, done) => { done() })
      const finished = new Promise<number>((resolve, reject) => {
        let sent = 0
        const next = (err?: Error): void => {
          if (err !== undefined) { reject(err); return }
          if (sent === total) { resolve(sent); return }
          sent++
          bus.emit({ topic: 't', n: sent }, next)
        }
        next()
      })
      assert.equal(await finished, total)
    })
  }

  it(`${total} emits whose listeners call done from a later turn, with unsubscribes mid-flight`, async () => {
    const bus = new LocalBus<TestPacket>()
    const listeners: Array<BusListener<TestPacket>> = Array.from({ length: 10 }, () => (_packet, done) => { setImmediate(done) })
    for (const [i, listener] of listeners.entries()) bus.on(i % 2 === 0 ? 't/x' : 't/+', listener)
    let completed = 0
    const allDone = new Promise<void>((resolve) => {
      for (let i = 0; i < total; i++) {
        bus.emit({ topic: 't/x', n: i }, () => { if (++completed === total) resolve() })
        if (i === total / 2) for (const [j, listener] of listeners.entries()) bus.removeListener(j % 2 === 0 ? 't/x' : 't/+', listener)
      }
    })
    await allDone
    assert.equal(completed, total)
    assert.equal(bus.subscriptionCount, 0)
  })
})
