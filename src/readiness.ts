export interface ReadinessReport {
  ready: boolean
  checks: Record<string, { ready: boolean, reason?: string }>
}

/**
 * Named readiness checks. Plugins and the core register one per dependency (listeners,
 * Redis, Kafka...); /readyz is 200 only when every check is ready.
 */
export class Readiness {
  readonly #checks = new Map<string, () => { ready: boolean, reason?: string }>()

  register (name: string, check: () => { ready: boolean, reason?: string }): void {
    if (this.#checks.has(name)) throw new Error(`readiness check "${name}" registered twice`)
    this.#checks.set(name, check)
  }

  report (): ReadinessReport {
    const checks: ReadinessReport['checks'] = {}
    let ready = true
    for (const [name, check] of this.#checks) {
      let result: { ready: boolean, reason?: string }
      try {
        result = check()
      } catch (err) {
        result = { ready: false, reason: `check failed: ${(err as Error).message}` }
      }
      checks[name] = result
      if (!result.ready) ready = false
    }
    return { ready, checks }
  }
}
