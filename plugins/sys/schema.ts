import { z } from 'zod'

/** The `sys` section: Mosquitto-style `$SYS` statistics, published by the broker itself. */
export const sysConfigSchema = z.strictObject({
  /** Seconds between two updates (Mosquitto's `sys_interval`). */
  intervalS: z.number().int().min(1).max(86400).default(10),
  /**
   * Topic prefix of the tree. `${node}` (a whole level) is replaced by node.id; required
   * with Redis persistence, where the retained store and the bus are shared by every node:
   * without it the nodes would overwrite one another's values.
   */
  prefix: z.string().min(1).default('$SYS/broker')
})
export type SysConfig = z.infer<typeof sysConfigSchema>

export const NODE_LEVEL = '${node}'

/** Problems of a prefix, as `key: message`; `redis`: the cluster needs a per-node prefix. */
export function prefixProblems (prefix: string, redis: boolean): string[] {
  const levels = prefix.split('/')
  if (levels[0] !== '$SYS' || levels.length < 2) return ['prefix: must start with "$SYS/" (the tree clients cannot publish to and the ACL keeps for superusers)']
  if (levels.some((l) => l.length === 0)) return ['prefix: empty topic level (a "//" or a trailing "/")']
  if (levels.some((l) => l.includes('+') || l.includes('#'))) return ['prefix: wildcards "+" and "#" are not allowed in a topic']
  if (levels.some((l) => l !== NODE_LEVEL && l.includes('${'))) return [`prefix: the only variable is ${NODE_LEVEL}, as a whole topic level`]
  if (redis && !levels.includes(NODE_LEVEL)) {
    return [`prefix: with persistence.type redis the tree must be per node (a ${NODE_LEVEL} level, e.g. "$SYS/brokers/${NODE_LEVEL}"): nodes share the retained store and the bus`]
  }
  return []
}

/** The prefix with `${node}` replaced by this node's id. */
export function resolvePrefix (prefix: string, nodeId: string): string {
  return prefix.split('/').map((l) => l === NODE_LEVEL ? nodeId : l).join('/')
}
