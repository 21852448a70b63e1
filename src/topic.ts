/**
 * MQTT 3.1.1 §4.7 topic rules. Aedes 1.2.0 checks these too, but its `+` check
 * misses filters shorter than four characters (`x+y`, `a+` are accepted), so the
 * core checks every filter itself.
 */

/** A valid SUBSCRIBE filter: `#` only as the whole last level, `+` only as a whole level. */
export function isValidTopicFilter (filter: string): boolean {
  if (filter.length === 0) return false
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level === '#') {
      if (i !== levels.length - 1) return false
    } else if (level !== '+' && (level.includes('+') || level.includes('#'))) {
      return false
    }
  }
  return true
}

export function topicLevels (topic: string): number {
  let levels = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47 /* / */) levels++
  return levels
}

/** Whether a topic (no wildcards) matches a filter (MQTT 3.1.1 §4.7; `a/#` matches `a`; wildcard-first filters skip `$` topics). */
export function topicMatchesFilter (filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  if ((f[0] === '#' || f[0] === '+') && topic.startsWith('$')) return false
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
