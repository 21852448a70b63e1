import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { STATEMENTS } from './statements.js'

/**
 * The statement ids in the suite's test names, read from the TypeScript sources: every id
 * outside a comment line (names built in loops carry them in the loop's table).
 */
function testedIds (): Map<string, number> {
  const dir = join(process.cwd(), 'test/conformance')
  const ids = new Map<string, number>()
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.test.ts') && f !== 'coverage.test.ts')) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (/^\s*(\/\/|\*|\/\*)/.test(line)) continue
      for (const m of line.matchAll(/\[(MQTT-\d+\.\d+\.\d+-\d+)\]/g)) ids.set(m[1]!, (ids.get(m[1]!) ?? 0) + 1)
    }
  }
  return ids
}

describe('MQTT 3.1.1 conformance: coverage of the normative statements', () => {
  it('every statement is listed once', () => {
    const seen = new Set<string>()
    for (const s of STATEMENTS) {
      assert.ok(!seen.has(s.id), `${s.id} listed twice`)
      seen.add(s.id)
    }
  })

  it('every statement marked "test" has a test named after it; every other one has a reason', () => {
    const tested = testedIds()
    const missing = STATEMENTS.filter((s) => s.coverage.kind === 'test' && !tested.has(s.id)).map((s) => s.id)
    assert.deepEqual(missing, [], 'statements without a test')
    for (const s of STATEMENTS) if (s.coverage.kind !== 'test') assert.ok(s.coverage.reason.length > 10, `${s.id} needs a reason`)
  })

  it('every statement id in a test name is in the list (no typos)', () => {
    const known = new Set(STATEMENTS.map((s) => s.id))
    assert.deepEqual([...testedIds().keys()].filter((id) => !known.has(id)), [])
  })
})
