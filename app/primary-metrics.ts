import type { Worker } from 'node:cluster'
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { MSG_METRICS, MSG_METRICS_ANSWER, type MetricsAnswer } from './worker.js'

/** How long the primary's /metrics waits for its workers' answers; a worker that has not answered by then is left out. */
const ANSWER_TIMEOUT_MS = 2000

/**
 * The primary's /metrics: every answering worker's registry aggregated by prom-client
 * (counters and gauges summed, e.g. mqgw_connections_current is the machine's total; each
 * worker's own values are on its admin port), then the primary's own process metrics
 * (`mqgw_primary_*`: with round-robin the primary accepts every connection) and restarts.
 */
export class PrimaryMetrics {
  readonly registry = new Registry()
  readonly restarts: Counter<'worker'>
  /** Workers whose metrics are in this page's sums: one that did not answer in time is left out, and this says so. */
  readonly scraped: Gauge
  readonly asked: Gauge
  readonly contentType = this.registry.contentType
  #requestId = 0
  readonly #pending = new Map<number, (metrics: object[]) => void>()

  constructor () {
    collectDefaultMetrics({ register: this.registry, prefix: 'mqgw_primary_' })
    this.restarts = new Counter({ name: 'mqgw_worker_restarts_total', help: 'Worker processes restarted after they exited, by worker', labelNames: ['worker'], registers: [this.registry] })
    this.scraped = new Gauge({ name: 'mqgw_workers_scraped', help: 'Workers whose metrics are summed in this page (they answered within 2 s)', registers: [this.registry] })
    this.asked = new Gauge({ name: 'mqgw_workers_running', help: 'Worker processes running and attached to the primary', registers: [this.registry] })
  }

  /** A worker's IPC message: resolves the request it answers. */
  onMessage (message: { type?: unknown, requestId?: unknown, metrics?: unknown }): void {
    if (message.type !== MSG_METRICS_ANSWER || typeof message.requestId !== 'number') return
    this.#pending.get(message.requestId)?.((message as MetricsAnswer).metrics as object[])
  }

  /** Asks `workers` (those attached to the primary) for their registries; renders the aggregate. */
  async render (workers: readonly Worker[]): Promise<string> {
    const answers = await Promise.all(workers.map((worker) => this.#ask(worker)))
    const answered = answers.filter((a): a is object[] => a !== undefined)
    this.asked.set(workers.length)
    this.scraped.set(answered.length)
    const aggregated = answered.length === 0 ? '' : await AggregatorRegistry.aggregate(answered).metrics()
    return `${aggregated}\n${await this.registry.metrics()}`
  }

  #ask (worker: Worker): Promise<object[] | undefined> {
    const requestId = this.#requestId++
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), ANSWER_TIMEOUT_MS)
      const done = (metrics: object[] | undefined): void => {
        clearTimeout(timer)
        this.#pending.delete(requestId)
        resolve(metrics)
      }
      this.#pending.set(requestId, done)
      if (!worker.isConnected()) done(undefined)
      else worker.send({ type: MSG_METRICS, requestId })
    })
  }
}
