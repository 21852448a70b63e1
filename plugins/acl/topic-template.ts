import { covers } from '../../src/topic.js'

/** Identity a template is rendered with: CONNECT fields and the claims auth returned. */
export interface TemplateIdentity {
  clientid: string
  username: string | undefined
  claims: Readonly<Record<string, string>>
}

type Part = { literal: string } | { variable: string }

const VARIABLE = /\$\{([A-Za-z0-9_.-]+)\}/g

/** A value may fill a variable only if it cannot change the topic's shape. */
function safeValue (value: string | undefined): value is string {
  if (value === undefined || value.length === 0) return false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 43 /* + */ || c === 35 /* # */ || c === 47 /* / */ || c === 0) return false
  }
  return true
}

export class TemplateError extends Error {}

/**
 * An ACL topic such as `user/${username}/inbox`, `uid/${claims.uid}/#` or
 * `eq live/+/chat` (literal: `+` has no wildcard meaning, as EMQX's `eq`).
 * Rendering with an identity whose variable is missing, empty or contains `+`, `#`,
 * `/` or NUL yields null: the rule does not match, so a user named `#` or `a/+` can
 * never widen a rule.
 */
export class TopicTemplate {
  readonly literalMatch: boolean
  /** Per level: the parts of that level; a level without variables is one literal part. */
  readonly #levels: Part[][]
  readonly #static: string[] | undefined
  /** First level when it is a fixed literal (not a variable or wildcard), for indexing. */
  readonly firstLiteral: string | undefined

  constructor (source: string) {
    let text = source
    this.literalMatch = false
    if (text.startsWith('eq ')) {
      this.literalMatch = true
      text = text.slice(3)
    }
    if (text.length === 0) throw new TemplateError(`empty topic in "${source}"`)
    this.#levels = text.split('/').map((level, index, all) => {
      const parts: Part[] = []
      let last = 0
      for (const m of level.matchAll(VARIABLE)) {
        if (m.index > last) parts.push({ literal: level.slice(last, m.index) })
        const name = m[1]!
        if (name !== 'clientid' && name !== 'username' && !/^claims\.[A-Za-z0-9_-]+$/.test(name)) {
          throw new TemplateError(`unknown variable \${${name}} in "${source}" (use \${clientid}, \${username} or \${claims.NAME})`)
        }
        parts.push({ variable: name })
        last = m.index + m[0].length
      }
      if (last < level.length) parts.push({ literal: level.slice(last) })
      if (parts.length === 0) parts.push({ literal: '' })
      const literalText = parts.every((p) => 'literal' in p) ? parts.map((p) => (p as { literal: string }).literal).join('') : undefined
      if (literalText !== undefined && level.includes('${')) throw new TemplateError(`malformed variable in "${source}"`)
      if (!this.literalMatch) {
        const hasWildcard = level.includes('+') || level.includes('#')
        if (hasWildcard && level !== '+' && level !== '#') throw new TemplateError(`wildcard must be a whole level in "${source}"`)
        if (level === '#' && index !== all.length - 1) throw new TemplateError(`"#" must be the last level in "${source}"`)
      }
      return parts
    })
    const isStatic = this.#levels.every((parts) => parts.length === 1 && 'literal' in parts[0]!)
    this.#static = isStatic ? this.#levels.map((parts) => (parts[0] as { literal: string }).literal) : undefined
    const first = this.#levels[0]!
    this.firstLiteral = !this.literalMatch && first.length === 1 && 'literal' in first[0]! && first[0].literal !== '+' && first[0].literal !== '#'
      ? first[0].literal
      : undefined
  }

  /** The topic levels for this identity, or null when a variable is unusable. */
  render (identity: TemplateIdentity): string[] | null {
    if (this.#static) return this.#static
    const out: string[] = new Array(this.#levels.length)
    for (let i = 0; i < this.#levels.length; i++) {
      const parts = this.#levels[i]!
      let level = ''
      for (const part of parts) {
        if ('literal' in part) {
          level += part.literal
          continue
        }
        const value = part.variable === 'clientid'
          ? identity.clientid
          : part.variable === 'username' ? identity.username : identity.claims[part.variable.slice(7)]
        if (!safeValue(value)) return null
        level += value
      }
      out[i] = level
    }
    return out
  }

  /** Whether this template, for this identity, allows `requested` (levels of a topic or filter). */
  matches (identity: TemplateIdentity, requested: readonly string[]): boolean {
    const rendered = this.render(identity)
    if (rendered === null) return false
    if (this.literalMatch) {
      if (rendered.length !== requested.length) return false
      for (let i = 0; i < rendered.length; i++) if (rendered[i] !== requested[i]) return false
      return true
    }
    return covers(rendered, requested)
  }
}
