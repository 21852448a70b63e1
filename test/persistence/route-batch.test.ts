/**
 * src/persistence/route-batch.ts with a fake `send` (the real script calls are in
 * route-table.test.ts against redis-server): one call per turn, at most `max` each, in order,
 * the next batch sent while an earlier one still waits for its acknowledgements.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RouteChangeBatches, type RouteChange } from '../../src/persistence/route-batch.js'

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('RouteChangeBatches', () => {
  it('sends the changes of one turn in one call, at most max per call, calls in order', async () => {
    const calls: RouteChange[][] = []
    const batches = new RouteChangeBatches(async (batch) => { calls.push(batch); return undefined }, 3)
    const done = ['a', 'b', 'c', 'd', 'e'].map((f) => batches.push('+', f))
    done.push(batches.push('-', 'a'))
    await Promise.all(done)
    assert.deepEqual(calls.map((c) => c.map((x) => x.op + x.filter)), [['+a', '+b', '+c'], ['+d', '+e', '-a']])
    await batches.push('+', 'f')
    assert.equal(calls.length, 3, 'a later turn: a call of its own')
  })

  it('sends the next batch while an earlier one waits for acknowledgements; each push resolves after its own batch is acknowledged', async () => {
    const acks: Array<() => void> = []
    const calls: string[][] = []
    const batches = new RouteChangeBatches(async (batch) => {
      calls.push(batch.map((c) => c.filter))
      return { acknowledged: new Promise<void>((resolve) => acks.push(resolve)) }
    }, 10)
    let firstDone = false
    let secondDone = false
    void batches.push('+', 'x').then(() => { firstDone = true })
    await turn()
    await turn()
    void batches.push('+', 'y').then(() => { secondDone = true })
    for (let i = 0; i < 100 && calls.length < 2; i++) await turn()
    assert.deepEqual(calls, [['x'], ['y']], 'the second call did not wait for the first one\'s acknowledgements')
    assert.equal(firstDone || secondDone, false, 'nothing resolves before its acknowledgements')
    acks[1]!()
    await turn()
    assert.deepEqual([firstDone, secondDone], [false, true])
    acks[0]!()
    await turn()
    assert.deepEqual([firstDone, secondDone], [true, true])
  })

  it('a failed call resolves its changes (the caller has rejoined) and the next batch still goes out', async () => {
    let n = 0
    const calls: string[][] = []
    const batches = new RouteChangeBatches(async (batch) => {
      calls.push(batch.map((c) => c.filter))
      if (n++ === 0) throw new Error('redis away')
      return undefined
    }, 10)
    await batches.push('+', 'p')
    await batches.push('+', 'q')
    assert.deepEqual(calls, [['p'], ['q']])
  })
})
