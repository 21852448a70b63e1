import { readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'
import { formatZodIssues } from '../../src/config/zod-issues.js'
import type { AclRuleSpec } from './schema.js'
import { aclFileSchema } from './schema.js'
import { TemplateError, TopicTemplate, type TemplateIdentity } from './topic-template.js'

export type AclAction = 'publish' | 'subscribe'

export interface AclIdentity extends TemplateIdentity {
  superuser: boolean
  listener: string
}

export interface AclDecision {
  permission: 'allow' | 'deny'
  /** Index of the deciding rule in the file; undefined when no rule matched. */
  rule: number | undefined
  /** The callback that must confirm an allow. */
  callback: string | undefined
  /** What decided: a rule, or `acl.noMatch` when none matched (see decide.ts for the others). */
  by: 'rule' | 'noMatch'
}

class Who {
  readonly #usernames: Set<string> | undefined
  readonly #usernameRegex: RegExp | undefined
  readonly #clientids: Set<string> | undefined
  readonly #clientidRegex: RegExp | undefined
  readonly #superuser: boolean | undefined
  readonly #listeners: Set<string> | undefined

  constructor (spec: NonNullable<AclRuleSpec['who']>) {
    this.#usernames = spec.username ? new Set(spec.username) : undefined
    this.#usernameRegex = spec.usernameRegex ? new RegExp(spec.usernameRegex) : undefined
    this.#clientids = spec.clientid ? new Set(spec.clientid) : undefined
    this.#clientidRegex = spec.clientidRegex ? new RegExp(spec.clientidRegex) : undefined
    this.#superuser = spec.superuser
    this.#listeners = spec.listener ? new Set(spec.listener) : undefined
  }

  /** Every condition given must hold. */
  matches (id: AclIdentity): boolean {
    if (this.#superuser !== undefined && id.superuser !== this.#superuser) return false
    if (this.#listeners && !this.#listeners.has(id.listener)) return false
    if (this.#usernames && (id.username === undefined || !this.#usernames.has(id.username))) return false
    if (this.#usernameRegex && (id.username === undefined || !this.#usernameRegex.test(id.username))) return false
    if (this.#clientids && !this.#clientids.has(id.clientid)) return false
    if (this.#clientidRegex && !this.#clientidRegex.test(id.clientid)) return false
    return true
  }
}

class Rule {
  constructor (
    readonly index: number,
    readonly permission: 'allow' | 'deny',
    readonly publish: boolean,
    readonly subscribe: boolean,
    readonly templates: readonly TopicTemplate[],
    readonly who: Who | undefined,
    readonly callback: string | undefined
  ) {}
}

export class AclFileError extends Error {}

/**
 * Compiled ACL rules, evaluated top to bottom; the first matching rule decides.
 * Rules are indexed by the first topic level of their templates so that a check with
 * a thousand rules looks only at the rules that could match: those whose templates
 * start with that literal level, plus those starting with a wildcard or a variable,
 * merged back into file order.
 */
export class AclRules {
  readonly #rules: Rule[]
  readonly #byFirstLevel = new Map<string, Rule[]>()
  readonly #anyFirstLevel: Rule[]
  readonly #candidates = new Map<string, Rule[]>()

  /** The rules as written in the file, by index (for explaining a decision). */
  readonly specs: readonly AclRuleSpec[]

  constructor (specs: readonly AclRuleSpec[], callbackNames: ReadonlySet<string>) {
    this.specs = specs
    this.#rules = specs.map((spec, index) => {
      if (spec.callback !== undefined && !callbackNames.has(spec.callback)) {
        throw new AclFileError(`rules[${index}].callback: "${spec.callback}" is not defined in acl.callbacks`)
      }
      const templates = spec.topics.map((topic, t) => {
        try {
          return new TopicTemplate(topic)
        } catch (err) {
          if (err instanceof TemplateError) throw new AclFileError(`rules[${index}].topics[${t}]: ${err.message}`)
          throw err
        }
      })
      return new Rule(index, spec.permission, spec.action !== 'subscribe', spec.action !== 'publish', templates,
        spec.who ? new Who(spec.who) : undefined, spec.callback)
    })
    const any: Rule[] = []
    for (const rule of this.#rules) {
      const firsts = new Set<string>()
      let wildcardFirst = false
      for (const t of rule.templates) {
        if (t.firstLiteral === undefined) wildcardFirst = true
        else firsts.add(t.firstLiteral)
      }
      if (wildcardFirst) {
        any.push(rule)
        continue
      }
      for (const first of firsts) {
        let list = this.#byFirstLevel.get(first)
        if (!list) this.#byFirstLevel.set(first, list = [])
        list.push(rule)
      }
    }
    this.#anyFirstLevel = any
  }

  get size (): number { return this.#rules.length }

  /** The rules that could match a topic starting with `first`, in file order. */
  #candidatesFor (first: string): Rule[] {
    const specific = this.#byFirstLevel.get(first)
    if (!specific) return this.#anyFirstLevel
    let merged = this.#candidates.get(first)
    if (!merged) {
      merged = [...specific, ...this.#anyFirstLevel].sort((a, b) => a.index - b.index)
      this.#candidates.set(first, merged)
    }
    return merged
  }

  /** First matching rule for this identity, action and topic (or filter) levels. */
  check (id: AclIdentity, action: AclAction, topic: readonly string[], noMatch: 'allow' | 'deny'): AclDecision {
    const first = topic[0] ?? ''
    // A requested filter starting with a wildcard can only be covered by a wildcard-first rule.
    const candidates = first === '+' || first === '#' ? this.#anyFirstLevel : this.#candidatesFor(first)
    for (const rule of candidates) {
      if (action === 'publish' ? !rule.publish : !rule.subscribe) continue
      if (rule.who && !rule.who.matches(id)) continue
      for (const template of rule.templates) {
        if (template.matches(id, topic)) return { permission: rule.permission, rule: rule.index, callback: rule.callback, by: 'rule' }
      }
    }
    return { permission: noMatch, rule: undefined, callback: undefined, by: 'noMatch' }
  }

  /** Parses and validates a rules file; every problem names the rule and key. */
  static load (file: string, callbackNames: ReadonlySet<string>): AclRules {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new AclFileError(`cannot read ACL file ${file}: ${(err as Error).message}`)
    }
    return AclRules.parse(text, callbackNames, file)
  }

  static parse (text: string, callbackNames: ReadonlySet<string>, source = 'ACL file'): AclRules {
    const doc = parseDocument(text, { uniqueKeys: true })
    if (doc.errors.length > 0) throw new AclFileError(`${source}: invalid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
    const parsed = aclFileSchema.safeParse(doc.toJS() ?? {})
    if (!parsed.success) {
      // The first problem only: the reload log line stays one line.
      throw new AclFileError(`${source}: ${formatZodIssues(parsed.error.issues)[0] ?? 'invalid'}`)
    }
    try {
      return new AclRules(parsed.data.rules, callbackNames)
    } catch (err) {
      if (err instanceof AclFileError) throw new AclFileError(`${source}: ${err.message}`)
      throw err
    }
  }
}
