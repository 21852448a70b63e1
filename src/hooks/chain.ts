import type { Logger } from '../log.js'
import { HOOK_NAMES, type DecisionHookName, type HookHandlers, type HookName, type ObserverHookName, type Verdict } from './types.js'

interface Registered<H extends HookName> {
  plugin: string
  handler: HookHandlers[H]
}

/** Thrown into the chain when an async handler does not settle within the hook timeout. */
export class HookTimeoutError extends Error {
  constructor (hook: HookName, plugin: string, timeoutMs: number) {
    super(`${hook} handler of plugin "${plugin}" did not answer within ${timeoutMs} ms`)
    this.name = 'HookTimeoutError'
  }
}

export interface HookFailure {
  hook: HookName
  plugin: string
  error: Error
}

function isPromiseLike<T> (value: unknown): value is PromiseLike<T> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
}

/**
 * The ordered handler lists for every hook point. Plugins register in the order they
 * appear in the plugin registry; the first handler that does not `pass` decides,
 * as in an EMQX hook chain.
 */
export class HookChains {
  readonly #chains: { [H in HookName]: Array<Registered<H>> }
  readonly #timeoutMs: number
  readonly #log: Logger
  /** Called with the duration of every chain run that had at least one handler. */
  onTiming: (hook: HookName, seconds: number) => void = () => {}

  constructor (timeoutMs: number, log: Logger) {
    this.#timeoutMs = timeoutMs
    this.#log = log
    const chains: Partial<Record<HookName, unknown[]>> = {}
    for (const name of HOOK_NAMES) chains[name] = []
    this.#chains = chains as { [H in HookName]: Array<Registered<H>> }
  }

  register<H extends HookName> (hook: H, plugin: string, handler: HookHandlers[H]): void {
    if (!HOOK_NAMES.includes(hook)) throw new Error(`unknown hook "${String(hook)}"`)
    this.#chains[hook].push({ plugin, handler } as Registered<H>)
  }

  size (hook: HookName): number {
    return this.#chains[hook].length
  }

  /**
   * Runs a decision hook. `done` receives the first non-`pass` verdict, or `pass` when
   * every handler passed. A handler that throws, rejects or times out produces
   * `onFailure(...)`'s verdict, so that auth hooks fail closed.
   * Synchronous handlers are run without allocating promises: this is on the
   * per-PUBLISH path.
   */
  decide<H extends Exclude<DecisionHookName, 'authorizeForward'>, V extends { result: string }>(
    hook: H,
    request: Parameters<HookHandlers[H]>[0],
    onFailure: (failure: HookFailure) => V,
    done: (verdict: V) => void
  ): void {
    const chain = this.#chains[hook] as Array<Registered<H>>
    if (chain.length === 0) {
      done({ result: 'pass' } as V)
      return
    }
    const started = process.hrtime.bigint()
    const finish = (verdict: V): void => {
      this.onTiming(hook, Number(process.hrtime.bigint() - started) / 1e9)
      done(verdict)
    }
    const fail = (plugin: string, error: unknown): void => {
      const err = error instanceof Error ? error : new Error(String(error))
      this.#log.error({ hook, plugin, err: err.message }, 'hook handler failed; denying')
      finish(onFailure({ hook, plugin, error: err }))
    }
    const step = (index: number): void => {
      for (let i = index; i < chain.length; i++) {
        const { plugin, handler } = chain[i]!
        let result: V | PromiseLike<V>
        try {
          result = (handler as (req: unknown) => V | PromiseLike<V>)(request)
        } catch (error) {
          fail(plugin, error)
          return
        }
        if (isPromiseLike<V>(result)) {
          let settled = false
          const timer = setTimeout(() => {
            if (settled) return
            settled = true
            fail(plugin, new HookTimeoutError(hook, plugin, this.#timeoutMs))
          }, this.#timeoutMs)
          result.then((verdict) => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            if (verdict.result === 'pass') step(i + 1)
            else finish(verdict)
          }, (error: unknown) => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            fail(plugin, error)
          })
          return
        }
        if (result.result !== 'pass') {
          finish(result)
          return
        }
      }
      finish({ result: 'pass' } as V)
    }
    step(0)
  }

  /** authorizeForward is synchronous in Aedes; a throwing handler denies delivery. */
  forward (request: Parameters<HookHandlers['authorizeForward']>[0]): Verdict {
    const chain = this.#chains.authorizeForward
    for (let i = 0; i < chain.length; i++) {
      const { plugin, handler } = chain[i]!
      let verdict: Verdict
      try {
        verdict = handler(request)
      } catch (error) {
        this.#log.error({ hook: 'authorizeForward', plugin, err: (error as Error).message }, 'hook handler failed; not delivering')
        return { result: 'deny', reason: 'handler error' }
      }
      if (verdict.result !== 'pass') return verdict
    }
    return { result: 'pass' }
  }

  /** Tells every observer of `hook`; one that throws is logged and the rest still run. */
  notify<H extends ObserverHookName> (hook: H, event: Parameters<HookHandlers[H]>[0]): void {
    const chain = this.#chains[hook] as Array<Registered<H>>
    for (let i = 0; i < chain.length; i++) {
      const { plugin, handler } = chain[i]!
      try {
        ;(handler as (e: typeof event) => void)(event)
      } catch (error) {
        this.#log.error({ hook, plugin, err: (error as Error).message }, 'observer failed')
      }
    }
  }
}
