import type { PublishPacket } from 'aedes'
import type { RetainedAdmission } from '../persistence/ledgers.js'
import type { HandlerContext } from './context.js'

const LIMIT_NAME: Record<Exclude<RetainedAdmission, 'ok'>, string> = { count: 'maxRetainedMessages', bytes: 'maxRetainedBytes', client: 'maxRetainedPerClient' }

/**
 * The retained-store limits: a retained PUBLISH beyond them is still delivered, but not
 * retained (its retain flag is cleared), counted, and logged once a minute per limit.
 * A failing ledger (Redis down) does not block the message: the store itself then decides.
 */
export class RetainedAdmissions {
  readonly #ctx: HandlerContext
  /** When each limit was last logged. */
  readonly #logged = new Map<RetainedAdmission, number>()

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
  }

  admit (packet: PublishPacket, clientId: string | undefined, next: () => void): void {
    const { backend, log, metrics, config } = this.#ctx
    const ledger = backend.retainedLedger
    const topic = packet.topic
    if (packet.payload.length === 0) {
      // Clears the topic's retained message.
      const failed = (err: Error): void => { log.warn({ topic, err: err.message }, 'retained ledger release failed') }
      try {
        void Promise.resolve(ledger.release(topic)).catch(failed)
      } catch (err) {
        failed(err as Error)
      }
      next()
      return
    }
    const failed = (err: Error): void => {
      log.warn({ topic, err: err.message }, 'retained ledger unavailable; message retained without accounting')
      next()
    }
    const admitted = (result: RetainedAdmission): void => {
      if (result !== 'ok') {
        packet.retain = false
        metrics.retainedRefused.inc({ reason: result })
        const now = Date.now()
        if ((this.#logged.get(result) ?? 0) + 60000 <= now) {
          this.#logged.set(result, now)
          log.warn({ clientId, topic, limit: LIMIT_NAME[result] }, 'retained store limit reached; message delivered but not retained (logged once a minute per limit)')
        }
      }
      next()
    }
    const limits = config.limits
    let result: RetainedAdmission | Promise<RetainedAdmission>
    try {
      result = ledger.admit(topic, packet.payload.length, clientId ?? '', { maxMessages: limits.maxRetainedMessages, maxBytes: limits.maxRetainedBytes, maxPerClient: limits.maxRetainedPerClient })
    } catch (err) {
      failed(err as Error)
      return
    }
    if (typeof result === 'string') admitted(result)
    else result.then(admitted, failed)
  }
}
