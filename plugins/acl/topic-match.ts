/**
 * Whether one topic filter covers another: every topic the `requested` filter can
 * match is matched by `rule`. A plain topic is a filter without wildcards, so the same
 * function decides PUBLISH (rule vs topic) and SUBSCRIBE (rule vs requested filter).
 *
 * rule `user/alice/#` covers `user/alice/inbox`, `user/alice/#` and `user/alice`
 * (`#` also matches its parent level, MQTT 3.1.1 §4.7.1.2); never `user/+/inbox`,
 * `user/#` or `#`. A rule starting with a wildcard does not cover `$`-topics
 * ([MQTT-4.7.2-1]: `#` and `+/...` do not match `$SYS/...`).
 */
export function covers (rule: readonly string[], requested: readonly string[]): boolean {
  if (rule.length > 0 && (rule[0] === '#' || rule[0] === '+') && requested.length > 0 && requested[0]!.startsWith('$')) return false
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i]!
    if (r === '#') return true
    if (i >= requested.length) return false
    const q = requested[i]!
    if (r === '+') {
      if (q === '#') return false
    } else if (r !== q) {
      return false
    }
  }
  if (requested.length === rule.length) return true
  // The rule is exhausted. Only `rule/#`-like rules (handled above) cover longer filters,
  // except that a requested trailing `#` is never covered by a shorter rule.
  return false
}

/** Splits once; callers keep the result (topics are split once per check). */
export function levels (topic: string): string[] {
  return topic.split('/')
}
