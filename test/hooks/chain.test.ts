import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HookChains } from '../../src/hooks/chain.js'
import { ALLOW, PASS, deny, type AuthVerdict, type PublishVerdict, type Verdict } from '../../src/hooks/types.js'
import { createLogger } from '../../src/log.js'
import { waitFor } from '../helpers/mqtt.js'

const log = createLogger('silent')
const request = { client: null, info: undefined, packet: { cmd: 'publish', topic: 't', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false } } as never

function decide<V extends Verdict> (chains: HookChains, onFailure: V = deny('failed') as V): Promise<V> {
  return new Promise((resolve) => chains.decide('authorizePublish', request, () => onFailure, (v) => resolve(v as V)))
}

describe('HookChains', () => {
  it('an empty chain passes', async () => {
    assert.deepEqual(await decide(new HookChains(100, log)), PASS)
  })

  it('handlers run in registration order; the first non-pass decides and later ones do not run', async () => {
    const chains = new HookChains(100, log)
    const calls: string[] = []
    chains.register('authorizePublish', 'a', () => { calls.push('a'); return PASS })
    chains.register('authorizePublish', 'b', async () => { calls.push('b'); return deny('b says no') })
    chains.register('authorizePublish', 'c', () => { calls.push('c'); return ALLOW })
    assert.deepEqual(await decide(chains), { result: 'deny', reason: 'b says no' })
    assert.deepEqual(calls, ['a', 'b'])
  })

  it('all passing yields pass; an allow stops the chain', async () => {
    const chains = new HookChains(100, log)
    chains.register('authorizePublish', 'a', () => PASS)
    chains.register('authorizePublish', 'b', async () => PASS)
    assert.deepEqual(await decide(chains), PASS)
    chains.register('authorizePublish', 'c', () => ALLOW)
    chains.register('authorizePublish', 'd', () => { throw new Error('must not run') })
    assert.deepEqual(await decide(chains), ALLOW)
  })

  it('a throwing, rejecting or hanging handler yields the failure verdict (fail closed)', async () => {
    const failure: PublishVerdict = { result: 'deny', reason: 'fail-closed', disconnect: true }
    for (const handler of [
      () => { throw new Error('boom') },
      async () => { throw new Error('async boom') },
      () => new Promise<PublishVerdict>(() => {})
    ]) {
      const chains = new HookChains(50, log)
      chains.register('authorizePublish', 'bad', handler)
      chains.register('authorizePublish', 'later', () => ALLOW)
      const started = Date.now()
      assert.deepEqual(await decide(chains, failure), failure)
      assert.ok(Date.now() - started < 1000)
    }
  })

  it('the failure callback learns which plugin failed and why', async () => {
    const chains = new HookChains(30, log)
    chains.register('authenticate', 'slow-auth', () => new Promise<AuthVerdict>(() => {}))
    const failure = await new Promise<string>((resolve) => chains.decide('authenticate', {} as never, (f) => {
      resolve(`${f.plugin}: ${f.error.message}`)
      return deny('x')
    }, () => {}))
    assert.match(failure, /^slow-auth: authenticate handler of plugin "slow-auth" did not answer within 30 ms/)
  })

  it('a late answer after a timeout is ignored (done is called once)', async () => {
    const chains = new HookChains(20, log)
    let resolveLate: (v: Verdict) => void = () => {}
    chains.register('authorizePublish', 'late', () => new Promise<Verdict>((resolve) => { resolveLate = resolve }))
    let calls = 0
    chains.decide('authorizePublish', request, () => deny('timeout'), () => { calls++ })
    await waitFor(() => calls === 1, 'the timeout verdict')
    resolveLate(ALLOW)
    // The late answer reaches the chain through promise callbacks (microtasks): all of them
    // have run before the next macrotask.
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(calls, 1)
  })

  it('authorizeForward is synchronous; a throwing handler denies', () => {
    const chains = new HookChains(100, log)
    chains.register('authorizeForward', 'a', () => PASS)
    assert.deepEqual(chains.forward(request), PASS)
    chains.register('authorizeForward', 'b', () => { throw new Error('bad') })
    assert.equal(chains.forward(request).result, 'deny')
  })

  it('observers all run in order, a throwing one does not stop the rest', () => {
    const chains = new HookChains(50, log)
    const calls: string[] = []
    chains.register('clientConnected', 'a', ({ info }) => { calls.push(`a:${info.listener}`) })
    chains.register('clientConnected', 'b', () => { calls.push('b'); throw new Error('b broke') })
    chains.register('clientConnected', 'c', () => { calls.push('c') })
    chains.register('clientDisconnected', 'd', () => { calls.push('d') })
    chains.notify('clientConnected', { client: {} as never, info: { listener: 'mqtt', remoteAddress: '127.0.0.1', remotePort: 1, connectedAt: 0, superuser: false, claims: {} } })
    assert.deepEqual(calls, ['a:mqtt', 'b', 'c'])
  })

  it('timings are reported per hook', async () => {
    const chains = new HookChains(100, log)
    const seen: string[] = []
    chains.onTiming = (hook, seconds) => { assert.ok(seconds >= 0); seen.push(hook) }
    chains.register('authorizePublish', 'a', () => ALLOW)
    await decide(chains)
    assert.deepEqual(seen, ['authorizePublish'])
  })
})
