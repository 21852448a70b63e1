import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { TurnClock } from '../../src/persistence/turn-clock.js'

/** Spins for `ms` without yielding (the same turn). */
const spin = (ms: number): void => { const end = performance.now() + ms; while (performance.now() < end); }

describe('TurnClock: one clock reading per `every` calls within a turn', () => {
  it('reuses a reading for at most `every` calls of one turn, and never into a later turn', async () => {
    const clock = new TurnClock(3)
    const first = clock.now()
    spin(2)
    assert.equal(clock.now(), first, 'second call of the turn: the same reading')
    spin(2)
    assert.equal(clock.now(), first, 'third call: the same reading')
    const fourth = clock.now()
    assert.ok(fourth >= first + 4, `fourth call reads the clock again (${fourth - first} ms later)`)
    spin(2)
    await nextTurn()
    const later = clock.now()
    assert.ok(later >= fourth + 2, `first call of a later turn reads the clock (${later - fourth} ms later)`)
    // A reading older than the margin it guards never survives: every call of a new turn after a long wait is fresh.
    spin(5)
    await nextTurn()
    assert.ok(clock.now() >= later + 5)
  })
})
