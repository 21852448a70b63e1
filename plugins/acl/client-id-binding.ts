import type { ClientInfo } from '../../src/client-info.js'

const PART = /\$\{([A-Za-z0-9_.-]+)\}|\*/g

type Part = { literal: string } | { variable: 'username' | `claims.${string}` } | { any: true }

export class ClientIdBindingError extends Error {}

/**
 * One `acl.clientIds` template: `${username}-*`, `${claims.device_id}`, `app-${username}`.
 * A variable must have a non-empty value for the template to match (a user without
 * the claim is bound to no id by it); `*` matches any run of characters.
 */
class ClientIdTemplate {
  readonly #parts: Part[] = []

  constructor (readonly source: string) {
    let last = 0
    for (const m of source.matchAll(PART)) {
      if (m.index > last) this.#parts.push({ literal: source.slice(last, m.index) })
      if (m[0] === '*') {
        this.#parts.push({ any: true })
      } else {
        const name = m[1]!
        if (name !== 'username' && !/^claims\.[A-Za-z0-9_-]+$/.test(name)) {
          throw new ClientIdBindingError(`acl.clientIds: unknown variable \${${name}} in "${source}" (use \${username} or \${claims.NAME})`)
        }
        this.#parts.push({ variable: name as 'username' | `claims.${string}` })
      }
      last = m.index + m[0].length
    }
    if (last < source.length) this.#parts.push({ literal: source.slice(last) })
    if (this.#parts.some((p) => 'literal' in p && p.literal.includes('${'))) {
      throw new ClientIdBindingError(`acl.clientIds: malformed variable in "${source}"`)
    }
  }

  matches (clientId: string, info: ClientInfo): boolean {
    // Rendered to a pattern of literal segments separated by "any": a greedy-free scan,
    // no RegExp built from user-controlled values.
    const segments: string[] = []
    let current = ''
    for (const part of this.#parts) {
      if ('any' in part) {
        segments.push(current)
        current = ''
        continue
      }
      let value: string | undefined
      if ('literal' in part) value = part.literal
      else value = part.variable === 'username' ? info.username : info.claims[part.variable.slice(7)]
      if (value === undefined || value.length === 0) {
        if ('variable' in part) return false
        continue
      }
      current += value
    }
    segments.push(current)
    if (segments.length === 1) return clientId === segments[0]
    const first = segments[0]!
    const last = segments[segments.length - 1]!
    if (clientId.length < first.length + last.length) return false
    if (!clientId.startsWith(first) || !clientId.endsWith(last)) return false
    let pos = first.length
    const end = clientId.length - last.length
    for (let i = 1; i < segments.length - 1; i++) {
      const found = clientId.indexOf(segments[i]!, pos)
      if (found === -1 || found + segments[i]!.length > end) return false
      pos = found + segments[i]!.length
    }
    return true
  }
}

/** The client ids each identity may use (`acl.clientIds`); empty: any. */
export class ClientIdBinding {
  readonly #templates: ClientIdTemplate[]

  constructor (sources: readonly string[]) {
    this.#templates = sources.map((s) => new ClientIdTemplate(s))
  }

  get size (): number { return this.#templates.length }

  allows (clientId: string, info: ClientInfo): boolean {
    for (const t of this.#templates) if (t.matches(clientId, info)) return true
    return false
  }
}
