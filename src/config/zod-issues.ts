import type { z } from 'zod'

/** Finds the line of a key path in the source, when the source can tell. */
export type LineLocator = (path: readonly PropertyKey[]) => number | undefined

/** `listeners.mqtt.port`, `rules[2].topic`, `(top level)`. */
export function formatPath (path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)'
  return path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? String(p) : `.${String(p)}`)).join('')
}

/**
 * One line per problem, naming its key path and (with a locator) its line: an operator
 * fixes a config file from the message alone. Used for the gateway config and plugin files.
 */
export function formatZodIssues (issues: readonly z.core.$ZodIssue[], locate: LineLocator = () => undefined): string[] {
  const where = (path: readonly PropertyKey[]): string => {
    const line = locate(path)
    return `${formatPath(path)}${line ? ` (line ${line})` : ''}`
  }
  return issues.flatMap((issue) => issue.code === 'unrecognized_keys'
    ? issue.keys.map((key) => `${where([...issue.path, key])}: unknown key`)
    : [`${where(issue.path)}: ${issue.message}`])
}
