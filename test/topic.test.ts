/**
 * src/topic.ts' limit check against the two measures it stands for (UTF-8 bytes, levels),
 * around each bound, where its shortcuts (3 bytes per code unit, length + 1 levels) decide.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { exceedsTopicLimits, topicLevels } from '../src/topic.js'

const measured = (topic: string, maxTopicLength: number, maxTopicLevels: number): boolean =>
  Buffer.byteLength(topic) > maxTopicLength || topicLevels(topic) > maxTopicLevels

describe('exceedsTopicLimits', () => {
  it('agrees with the measured byte length and level count at and around every bound', () => {
    const units = ['a', '/', 'é', '€', '😀', '\ud800']
    const topics: string[] = ['', '/', '//', 'a']
    // Deterministic mixes of 1-, 2-, 3- and 4-byte characters, slashes and a lone surrogate.
    for (let n = 1; n <= 40; n++) {
      for (let k = 0; k < units.length; k++) {
        let t = ''
        for (let i = 0; i < n; i++) t += units[(i * (k + 1) + k) % units.length]
        topics.push(t)
      }
      topics.push('/'.repeat(n), 'x'.repeat(n), 'é'.repeat(n), '😀'.repeat(n))
    }
    let checked = 0
    for (const topic of topics) {
      const bytes = Buffer.byteLength(topic)
      const levels = topicLevels(topic)
      for (const maxTopicLength of [1, bytes - 1, bytes, bytes + 1, 3 * topic.length, 1024].filter((v) => v >= 1)) {
        for (const maxTopicLevels of [1, levels - 1, levels, levels + 1, topic.length + 1, 32].filter((v) => v >= 1)) {
          assert.equal(exceedsTopicLimits(topic, { maxTopicLength, maxTopicLevels }), measured(topic, maxTopicLength, maxTopicLevels), `${JSON.stringify(topic)} ${maxTopicLength} ${maxTopicLevels}`)
          checked++
        }
      }
    }
    assert.ok(checked > 5000)
  })

  it('refuses by bytes and by levels', () => {
    assert.equal(exceedsTopicLimits('é'.repeat(10), { maxTopicLength: 19, maxTopicLevels: 32 }), true)
    assert.equal(exceedsTopicLimits('é'.repeat(10), { maxTopicLength: 20, maxTopicLevels: 32 }), false)
    assert.equal(exceedsTopicLimits('a/b/c/d', { maxTopicLength: 1024, maxTopicLevels: 3 }), true)
    assert.equal(exceedsTopicLimits('a/b/c', { maxTopicLength: 1024, maxTopicLevels: 3 }), false)
  })
})
