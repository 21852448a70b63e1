// qlobber 8 ships no types. The part the bus tests and bench/subscription-index.bench.ts use,
// as a reference for SubscriptionIndex (mqemitter 7 builds exactly this matcher for Aedes).
declare module 'qlobber' {
  export interface QlobberOptions {
    separator?: string
    wildcard_one?: string
    wildcard_some?: string
    match_empty_levels?: boolean
    max_words?: number
    max_wildcard_somes?: number
  }

  export class Qlobber<V = unknown> {
    constructor (options?: QlobberOptions)
    add (topic: string, value: V): this
    /** Without `value`, removes every value under `topic`. */
    remove (topic: string, value?: V): this
    /** May return qlobber's internal array when one node matched: copy before mutating. */
    match (topic: string): V[]
    test (topic: string, value: V): boolean
    clear (): this
  }
}
