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
