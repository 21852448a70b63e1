import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Qlobber } from 'qlobber'
import { SubscriptionIndex } from '../../src/bus/subscription-index.js'
import { seededRandom } from '../helpers/seeded-random.js'

/** The matcher mqemitter 7 builds for Aedes (`matchEmptyLevels: true`). */
function aedesQlobber<V> (): Qlobber<V> {
  return new Qlobber<V>({ match_empty_levels: true, separator: '/', wildcard_one: '+', wildcard_some: '#' })
}


const sorted = (values: string[]): string[] => [...values].sort()

describe('SubscriptionIndex matches like qlobber (Aedes configuration)', () => {
  const cases: Array<{ filters: string[], topic: string }> = [
    { filters: ['a/#'], topic: 'a' }, // `#` matches the parent level
    { filters: ['#'], topic: '' },
    { filters: ['+'], topic: '' }, // match_empty_levels
    { filters: ['a/+'], topic: 'a/' },
    { filters: ['+/+'], topic: '/' },
    { filters: ['a//b', 'a/+/b'], topic: 'a//b' },
    { filters: ['#/#'], topic: 'a' }, // one filter, two ways of matching: two results
    { filters: ['#/#'], topic: 'a/' },
    { filters: ['a/#/b'], topic: 'a/x/y/b' }, // `#` in the middle (qlobber allows it)
    { filters: ['#', '+/#', '$SYS/#', '+/+/heartbeat'], topic: '$SYS/node1/heartbeat' }, // no `$` special case
    { filters: ['a+', 'a/x#y'], topic: 'a+' }, // `+`/`#` inside a level are literal
    { filters: ['a/+', 'a/#', 'a/b'], topic: 'a/+' }, // a topic level `+` reaches wildcard nodes only
    { filters: ['a/b', 'a/b', 'a/+'], topic: 'a/b' } // a pair added twice matches twice
  ]
  for (const { filters, topic } of cases) {
    it(`${JSON.stringify(filters)} against ${JSON.stringify(topic)}`, () => {
      const index = new SubscriptionIndex<string>()
      const reference = aedesQlobber<string>()
      filters.forEach((filter, i) => {
        index.add(filter, `v${i}:${filter}`)
        reference.add(filter, `v${i}:${filter}`)
      })
      assert.deepEqual(sorted(index.match(topic)), sorted(reference.match(topic)))
    })
  }

  it('returns duplicates: one value under two matching filters, and `#/#` twice', () => {
    const index = new SubscriptionIndex<string>()
    index.add('a/b', 'L')
    index.add('a/#', 'L')
    index.add('#/#', 'M')
    assert.deepEqual(sorted(index.match('a/b')), ['L', 'L', 'M', 'M', 'M'])
    assert.deepEqual(sorted(aedesQlobber<string>().add('a/b', 'L').add('a/#', 'L').add('#/#', 'M').match('a/b')), ['L', 'L', 'M', 'M', 'M'])
  })

  it('fails where qlobber fails: more than 100 levels, more than 3 `#` levels', () => {
    const deep = Array.from({ length: 101 }, () => 'x').join('/')
    const index = new SubscriptionIndex<string>()
    const reference = aedesQlobber<string>()
    assert.throws(() => reference.match(deep), /too many words/)
    assert.throws(() => index.match(deep), /too many words/)
    assert.throws(() => reference.add(deep, 'v'), /too many words/)
    assert.throws(() => index.add(deep, 'v'), /too many words/)
    assert.throws(() => reference.add('#/#/#/#', 'v'), /too many wildcard somes/)
    assert.throws(() => index.add('#/#/#/#', 'v'), /too many wildcard somes/)
    index.add('#/#/#', 'v') // three is allowed
    assert.equal(index.match(Array.from({ length: 100 }, () => 'x').join('/')).length, reference.add('#/#/#', 'v').match(Array.from({ length: 100 }, () => 'x').join('/')).length)
  })

  it('removes one occurrence, keeps single values compact, prunes empty trie nodes', () => {
    const index = new SubscriptionIndex<string>({ shards: 4 })
    index.add('a/b', 'x')
    index.add('a/b', 'x')
    index.add('a/b', 'y')
    index.add('a/+/c/#', 'w')
    assert.equal(index.size, 4)
    assert.equal(index.remove('a/b', 'x'), true)
    assert.deepEqual(sorted(index.match('a/b')), ['x', 'y'])
    assert.equal(index.remove('a/b', 'z'), false)
    assert.equal(index.remove('a/b', 'x'), true)
    assert.equal(index.remove('a/b', 'x'), false)
    assert.deepEqual(index.match('a/b'), ['y'])
    assert.equal(index.remove('a/+/c', 'w'), false) // not the stored filter
    assert.equal(index.stats().trieNodes, 4)
    assert.equal(index.remove('a/+/c/#', 'w'), true)
    assert.equal(index.remove('a/b', 'y'), true)
    assert.deepEqual(index.stats(), { exact: 0, wildcard: 0, exactFilters: 0, trieNodes: 0, shards: 4, largestShard: 0 })
  })

  it('holds any value type, arrays included, and refuses undefined', () => {
    const index = new SubscriptionIndex<string[]>()
    const one = ['one']
    const two = ['two']
    index.add('t', one)
    assert.deepEqual(index.match('t'), [one])
    index.add('t', two)
    assert.deepEqual(index.match('t'), [one, two])
    index.remove('t', one)
    assert.deepEqual(index.match('t'), [two])
    assert.throws(() => new SubscriptionIndex<string>().add('t', undefined as unknown as string), TypeError)
    assert.throws(() => new SubscriptionIndex<string>({ shards: 0 }), RangeError)
  })

  it('returns a new array each time (callers may keep it while the index changes)', () => {
    const index = new SubscriptionIndex<string>()
    index.add('a/+', 'w')
    const first = index.match('a/b')
    index.remove('a/+', 'w')
    assert.deepEqual(first, ['w'])
    assert.deepEqual(index.match('a/b'), [])
  })
})

describe('SubscriptionIndex vs qlobber: randomized operation sequences', () => {
  // Small alphabets so filters collide, repeat and overlap: empty levels, `$` levels,
  // wildcards as filter levels and (as qlobber allows) as topic levels.
  const filterLevels = ['a', 'b', '', '$SYS', '+', '#', 'a+']
  const topicLevels = ['a', 'b', '', '$SYS', 'a+', 'c', '+', '#']
  const values = ['v0', 'v1', 'v2', 'v3']

  function draw (random: () => number, alphabet: string[], maxLevels: number): string {
    const levels = 1 + Math.floor(random() * maxLevels)
    return Array.from({ length: levels }, () => alphabet[Math.floor(random() * alphabet.length)]!).join('/')
  }

  for (const { seed, shards } of [{ seed: 1, shards: 256 }, { seed: 2, shards: 1 }, { seed: 3, shards: 7 }, { seed: 4, shards: 256 }, { seed: 5, shards: 3 }]) {
    it(`seed ${seed}, ${shards} shard(s): 4,000 subscribe/unsubscribe/publish operations agree`, () => {
      const random = seededRandom(seed)
      const index = new SubscriptionIndex<string>({ shards })
      const reference = aedesQlobber<string>()
      const stored: Array<[string, string]> = [] // the (filter, value) pairs currently in both
      let matches = 0
      let nonEmptyMatches = 0
      for (let op = 0; op < 4000; op++) {
        const roll = random()
        if (roll < 0.4) {
          const filter = draw(random, filterLevels, 4)
          const value = values[Math.floor(random() * values.length)]!
          if (filter.split('/').filter((w) => w === '#').length > 3) continue
          index.add(filter, value)
          reference.add(filter, value)
          stored.push([filter, value])
        } else if (roll < 0.65) {
          // Mostly a stored pair; sometimes one that may not be stored (must then be a no-op).
          const fromStored = stored.length > 0 && random() < 0.8
          const pair: [string, string] = fromStored
            ? stored.splice(Math.floor(random() * stored.length), 1)[0]!
            : [draw(random, filterLevels, 4), values[Math.floor(random() * values.length)]!]
          const removed = index.remove(pair[0], pair[1])
          reference.remove(pair[0], pair[1])
          const storedAt = fromStored ? -1 : stored.findIndex(([f, v]) => f === pair[0] && v === pair[1])
          assert.equal(removed, fromStored || storedAt >= 0, `seed ${seed} op ${op}: remove(${JSON.stringify(pair)})`)
          if (storedAt >= 0) stored.splice(storedAt, 1)
        } else {
          const topic = draw(random, topicLevels, 5)
          const expected = sorted(reference.match(topic))
          assert.deepEqual(sorted(index.match(topic)), expected, `seed ${seed} op ${op}: match(${JSON.stringify(topic)})`)
          matches++
          if (expected.length > 0) nonEmptyMatches++
        }
        assert.equal(index.size, stored.length, `seed ${seed} op ${op}: size`)
      }
      // The sequence really exercised matching (not only empty results).
      assert.ok(matches > 1000 && nonEmptyMatches > matches / 4, `matches ${matches}, non-empty ${nonEmptyMatches}`)
      // Remove everything: no entry and no trie node may be left behind.
      for (const [filter, value] of stored) assert.equal(index.remove(filter, value), true)
      const stats = index.stats()
      assert.deepEqual([stats.exact, stats.wildcard, stats.exactFilters, stats.trieNodes], [0, 0, 0, 0])
    })
  }
})
