/**
 * Subscription index for the local bus: which listeners match a published topic.
 *
 * Matching is exactly that of qlobber 8 as mqemitter / Aedes configure it
 * (`{ match_empty_levels: true, separator: '/', wildcard_one: '+', wildcard_some: '#' }`),
 * but the storage is split in two, as in Zhihu's gateway:
 *
 *  - Exact filters (no level that is exactly `+` or `#`) live in N hash-sharded `Map`s
 *    keyed by the whole filter string. Almost every device subscription is exact, so this
 *    is where the millions are. Sharding keeps each `Map` small: one V8 `Map` cannot hold
 *    more than 2^24 entries, and it rehashes in one go, so a single huge map stalls the event
 *    loop for as long as copying all of it takes (see bench/subscription-index.bench.ts).
 *    An exact filter matches a topic iff the two strings are equal (qlobber splits both on
 *    `/` and walks literal levels; a topic level `+` or `#` can only reach wildcard nodes).
 *  - Wildcard filters live in a trie walked with qlobber's algorithm, ported as is so that
 *    every edge case agrees: `#` also matches the parent level (`a/#` matches `a`), `#` in a
 *    middle position, `+` matching an empty level, and duplicates (one result per stored
 *    (filter, value) pair and per way the filter matches: `#/#` matches `a` twice).
 *
 * `$` topics are not special here: Aedes itself stops wildcard-first filters from receiving
 * `$SYS/...` (blockDollarSignTopics around its deliver functions), and qlobber matches them.
 *
 * Memory: an exact filter with one value costs one `Map` entry pointing at the caller's
 * filter string and the value itself; a second value for the same filter turns the entry
 * into a `ValueList`, and removing back to one value turns it back.
 */

/** Limits qlobber applies (its defaults); kept so that `add` and `match` fail where qlobber does. */
const QLOBBER_MAX_WORDS = 100
const QLOBBER_MAX_WILDCARD_SOMES = 3

const SLASH = 47 // '/'
const PLUS = 43 // '+'
const HASH = 35 // '#'

const FNV_OFFSET_BASIS = 0x811c9dc5
const FNV_PRIME = 0x01000193

export interface SubscriptionIndexOptions {
  /** Number of exact-filter shards (default 256). Any positive integer; a power of two is not required. */
  shards?: number
  /** Topic and filter level limit; qlobber's default is 100 and it throws `too many words` beyond it. */
  maxLevels?: number
  /** `#` levels allowed in one filter; qlobber's default is 3 (`too many wildcard somes`). */
  maxWildcardSomes?: number
}

export interface SubscriptionIndexStats {
  /** (filter, value) pairs under exact filters. */
  exact: number
  /** (filter, value) pairs under wildcard filters. */
  wildcard: number
  /** Distinct exact filters (Map entries over all shards). */
  exactFilters: number
  /** Trie nodes below the root (0 when no wildcard filter is stored). */
  trieNodes: number
  shards: number
  /** Entries in the fullest shard, to see that the hash spreads. */
  largestShard: number
}

/**
 * Two or more values under one exact filter. A class of its own (never handed out) so that
 * an entry can be told apart from a single stored value whatever `T` is, arrays included.
 */
class ValueList<T> {
  constructor (readonly items: T[]) {}
}

/** A trie node for wildcard filters. The wildcard children get their own fields (no `Map` lookup). */
class TrieNode<T> {
  /** Children by literal level; never holds `+` or `#` (those are `one` / `some`). Absent when empty. */
  literal: Map<string, TrieNode<T>> | undefined = undefined
  one: TrieNode<T> | undefined = undefined
  some: TrieNode<T> | undefined = undefined
  /** Values of the filters that end here (qlobber's `separator` key). Absent when empty. */
  values: T[] | undefined = undefined

  hasChildren (): boolean {
    return this.literal !== undefined || this.one !== undefined || this.some !== undefined
  }

  isEmpty (): boolean {
    return this.values === undefined && !this.hasChildren()
  }
}

/** Result of scanning a filter once: how deep it is and whether it needs the trie. */
interface FilterShape { levels: number, wildcardSomes: number, isWildcard: boolean }

function filterShape (filter: string): FilterShape {
  let levels = 1
  let wildcardSomes = 0
  let isWildcard = false
  let levelStart = 0
  const length = filter.length
  for (let i = 0; i <= length; i++) {
    if (i === length || filter.charCodeAt(i) === SLASH) {
      // Only a level that is exactly `+` or `#` is a wildcard; `a+` or `x#y` are literal (as in qlobber).
      if (i - levelStart === 1) {
        const code = filter.charCodeAt(levelStart)
        if (code === PLUS) isWildcard = true
        else if (code === HASH) { isWildcard = true; wildcardSomes++ }
      }
      if (i < length) levels++
      levelStart = i + 1
    }
  }
  return { levels, wildcardSomes, isWildcard }
}

/**
 * Values under subscription filters, matched against published topics. Values are compared
 * with `===` (remove takes out the last occurrence, as qlobber does) and must not be
 * `undefined` (qlobber treats `remove(filter, undefined)` as "remove all", so it cannot
 * hold them meaningfully either).
 */
// `T extends {}` rather than `unknown`: excludes only undefined and null (see above).
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- `{}` is meant: any value but undefined and null
export class SubscriptionIndex<T extends {}> {
  readonly shardCount: number
  private readonly shards: Array<Map<string, T | ValueList<T>>>
  private readonly root = new TrieNode<T>()
  private readonly maxLevels: number
  private readonly maxWildcardSomes: number
  private exactPairs = 0
  private wildcardPairs = 0
  private trieNodes = 0
  /**
   * match()'s scratch for the trie walk: where each level of the topic ends, and the level's
   * string once a literal lookup needs it. Why not `topic.split('/')`: the split (a runtime call,
   * an array and every level's string) was ~7 % of the gateway's CPU in bench/compare fan-in
   * (perf), where a `bench/fanin/#` subscriber needs two of a topic's three levels and `#`
   * needs only the level count. match() never runs inside itself (it calls nobody back).
   */
  private readonly levelEnds: Int32Array
  private readonly levelWords: Array<string | undefined> = []
  private matchTopic = ''
  private matchLevels = 0

  constructor (options: SubscriptionIndexOptions = {}) {
    const shards = options.shards ?? 256
    if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shards must be a positive integer, got ${shards}`)
    this.shardCount = shards
    this.shards = Array.from({ length: shards }, () => new Map<string, T | ValueList<T>>())
    this.maxLevels = options.maxLevels ?? QLOBBER_MAX_WORDS
    this.maxWildcardSomes = options.maxWildcardSomes ?? QLOBBER_MAX_WILDCARD_SOMES
    this.levelEnds = new Int32Array(this.maxLevels + 1)
  }

  /** Stored (filter, value) pairs; a pair added twice counts twice. */
  get size (): number {
    return this.exactPairs + this.wildcardPairs
  }

  stats (): SubscriptionIndexStats {
    let exactFilters = 0
    let largestShard = 0
    for (const shard of this.shards) {
      exactFilters += shard.size
      if (shard.size > largestShard) largestShard = shard.size
    }
    return { exact: this.exactPairs, wildcard: this.wildcardPairs, exactFilters, trieNodes: this.trieNodes, shards: this.shardCount, largestShard }
  }

  /** Adds one (filter, value) pair. Throws as qlobber does for too many levels or `#` levels. */
  add (filter: string, value: T): void {
    if (value === undefined) throw new TypeError('SubscriptionIndex values must not be undefined')
    const shape = filterShape(filter)
    if (shape.levels > this.maxLevels) throw new Error('too many words')
    if (shape.wildcardSomes > this.maxWildcardSomes) throw new Error('too many wildcard somes')
    if (shape.isWildcard) this.addWildcard(filter, value)
    else this.addExact(filter, value)
  }

  /**
   * Removes one occurrence of (filter, value); returns whether there was one. Empty entries
   * and trie nodes are deleted. (qlobber throws for a filter deeper than its limit; such a
   * filter cannot have been added, so this answers false.)
   */
  remove (filter: string, value: T): boolean {
    const shape = filterShape(filter)
    if (shape.levels > this.maxLevels) return false
    return shape.isWildcard ? this.removeWildcard(filter, value) : this.removeExact(filter, value)
  }

  /**
   * Values whose filter matches `topic`, one per matching (filter, value) pair and way of
   * matching, in no particular order. Always a new array: the caller may keep it while the
   * index changes. Throws `too many words` beyond the level limit, as qlobber does (Aedes
   * refuses such topics before they reach the bus).
   */
  match (topic: string): T[] {
    // One pass gives the shard hash (FNV-1a over UTF-16 code units), the level count and where
    // each level ends; a topic deeper than maxLevels throws at its first extra level, as qlobber does.
    let hash = FNV_OFFSET_BASIS
    let levels = 1
    const length = topic.length
    const ends = this.levelEnds
    for (let i = 0; i < length; i++) {
      const code = topic.charCodeAt(i)
      if (code === SLASH) {
        if (levels === this.maxLevels) throw new Error('too many words')
        ends[levels - 1] = i
        levels++
      }
      hash = Math.imul(hash ^ code, FNV_PRIME)
    }
    ends[levels - 1] = length

    const result: T[] = []
    const entry = this.shards[(hash >>> 0) % this.shardCount]!.get(topic)
    if (entry !== undefined) {
      if (entry instanceof ValueList) {
        for (const value of entry.items) result.push(value)
      } else {
        result.push(entry)
      }
    }

    if (this.wildcardPairs > 0) {
      // Cheap pre-check that avoids the walk's set-up: with no `+`/`#` at the root, a wildcard
      // filter can only match when the topic's first level is a literal child of the root. With
      // Aedes the trie holds `$SYS/+/...` and per-service wildcards, so most device topics stop here.
      const root = this.root
      let first: string | undefined
      if (root.one === undefined && root.some === undefined) {
        if (root.literal === undefined) return result
        first = levels === 1 ? topic : topic.slice(0, ends[0])
        if (!root.literal.has(first)) return result
      }
      this.matchTopic = topic
      this.matchLevels = levels
      const words = this.levelWords
      words[0] = first
      for (let i = 1; i < levels; i++) words[i] = undefined
      this.matchNode(root, 0, result)
      this.matchTopic = ''
    }
    return result
  }

  /** Level `i` of the topic being matched, sliced on first use. */
  private word (i: number): string {
    let word = this.levelWords[i]
    if (word === undefined) {
      word = this.matchTopic.slice(i === 0 ? 0 : this.levelEnds[i - 1]! + 1, this.levelEnds[i])
      this.levelWords[i] = word
    }
    return word
  }

  private shardOf (filter: string): Map<string, T | ValueList<T>> {
    let hash = FNV_OFFSET_BASIS
    for (let i = 0; i < filter.length; i++) hash = Math.imul(hash ^ filter.charCodeAt(i), FNV_PRIME)
    return this.shards[(hash >>> 0) % this.shardCount]!
  }

  private addExact (filter: string, value: T): void {
    const shard = this.shardOf(filter)
    const entry = shard.get(filter)
    if (entry === undefined) shard.set(filter, value)
    else if (entry instanceof ValueList) entry.items.push(value)
    else shard.set(filter, new ValueList([entry, value]))
    this.exactPairs++
  }

  private removeExact (filter: string, value: T): boolean {
    const shard = this.shardOf(filter)
    const entry = shard.get(filter)
    if (entry === undefined) return false
    if (entry instanceof ValueList) {
      const items = entry.items
      const at = items.lastIndexOf(value)
      if (at < 0) return false
      items.splice(at, 1)
      // Back to the compact single-value form (a ValueList never holds fewer than 2 items).
      if (items.length === 1) shard.set(filter, items[0]!)
    } else {
      if (entry !== value) return false
      shard.delete(filter)
    }
    this.exactPairs--
    return true
  }

  private addWildcard (filter: string, value: T): void {
    let node = this.root
    for (const word of filter.split('/')) {
      let child: TrieNode<T> | undefined
      if (word === '+') {
        child = node.one
        if (child === undefined) node.one = child = this.newNode()
      } else if (word === '#') {
        child = node.some
        if (child === undefined) node.some = child = this.newNode()
      } else {
        if (node.literal === undefined) node.literal = new Map()
        child = node.literal.get(word)
        if (child === undefined) {
          child = this.newNode()
          node.literal.set(word, child)
        }
      }
      node = child
    }
    if (node.values === undefined) node.values = [value]
    else node.values.push(value)
    this.wildcardPairs++
  }

  private removeWildcard (filter: string, value: T): boolean {
    const words = filter.split('/')
    // The path from the root, to prune empty nodes bottom-up afterwards.
    const path: Array<TrieNode<T>> = [this.root]
    let node = this.root
    for (const word of words) {
      const child = word === '+' ? node.one : word === '#' ? node.some : node.literal?.get(word)
      if (child === undefined) return false
      path.push(child)
      node = child
    }
    const values = node.values
    if (values === undefined) return false
    const at = values.lastIndexOf(value)
    if (at < 0) return false
    values.splice(at, 1)
    if (values.length === 0) node.values = undefined
    this.wildcardPairs--

    for (let depth = words.length; depth > 0; depth--) {
      const child = path[depth]!
      if (!child.isEmpty()) break
      const parent = path[depth - 1]!
      const word = words[depth - 1]!
      if (word === '+') parent.one = undefined
      else if (word === '#') parent.some = undefined
      else {
        parent.literal!.delete(word)
        if (parent.literal!.size === 0) parent.literal = undefined
      }
      this.trieNodes--
    }
    return true
  }

  private newNode (): TrieNode<T> {
    this.trieNodes++
    return new TrieNode<T>()
  }

  /**
   * qlobber's `_match`, step for step (lib/qlobber.js), on this node layout. Recursion depth
   * is bounded by the filter depth (at most maxLevels).
   */
  private matchNode (node: TrieNode<T>, i: number, result: T[]): void {
    const levels = this.matchLevels
    const some = node.some
    if (some !== undefined) {
      // `#` followed by more levels: let it swallow words i..j-1 and go on matching at j.
      if (some.hasChildren()) {
        for (let j = i; j < levels; j++) this.matchNode(some, j, result)
      }
      // `#` swallowing everything that is left (also nothing: `a/#` matches `a`).
      this.matchNode(some, levels, result)
    }

    if (i === levels) {
      const values = node.values
      if (values !== undefined) for (const value of values) result.push(value)
      return
    }

    // A topic level `+` or `#` finds no literal child (those keys never exist), as in qlobber.
    const literal = node.literal?.get(this.word(i))
    if (literal !== undefined) this.matchNode(literal, i + 1, result)
    // match_empty_levels: `+` also matches an empty level.
    if (node.one !== undefined) this.matchNode(node.one, i + 1, result)
  }
}
