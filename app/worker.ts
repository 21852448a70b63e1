import cluster from 'node:cluster'
import type { LoadedConfig } from '../src/config/load.js'
import type { Gateway } from '../src/gateway.js'
import type { ReadinessReport } from '../src/readiness.js'

/*
 * The worker side of `workers.count > 1` (app/workers.ts is the primary). A worker is the
 * ordinary gateway (app/serve.ts) with its own node id and admin port, answering the
 * primary's IPC questions: its readiness (the primary's /readyz) and its metrics (prom-client's
 * AggregatorRegistry protocol, the primary's /metrics).
 */

/** Environment variable the primary sets on each worker: its slot, 0..count-1, stable across restarts. */
export const WORKER_INDEX_ENV = 'MQGW_WORKER_INDEX'

export const MSG_STARTED = 'mqgw:worker-started'
export const MSG_READYZ = 'mqgw:readyz'
export const MSG_READYZ_ANSWER = 'mqgw:readyz-answer'
export const MSG_METRICS = 'mqgw:metrics'
export const MSG_METRICS_ANSWER = 'mqgw:metrics-answer'

export interface ReadyzAnswer { type: typeof MSG_READYZ_ANSWER, report: ReadinessReport }
/** The worker's registry as prom-client's getMetricsAsJSON(), for AggregatorRegistry.aggregate() in the primary. */
export interface MetricsAnswer { type: typeof MSG_METRICS_ANSWER, requestId: number, metrics: unknown[] }

/** This process's worker slot, or undefined when it is not a worker of app/workers.ts. */
export function workerIndex (): number | undefined {
  const raw = process.env[WORKER_INDEX_ENV]
  if (!cluster.isWorker || raw === undefined || !/^\d+$/.test(raw)) return undefined
  return Number(raw)
}

/** Worker i's node id: `<node.id>-w<i>` (its own node of the Redis cluster, the same after a restart). */
export function workerNodeId (nodeId: string, index: number): string {
  return `${nodeId}-w${index}`
}

/** Worker i's admin port: the configured one is the primary's, worker i's is port + 1 + i. */
export function workerAdminPort (port: number, index: number): number {
  return port + 1 + index
}

/** The config a worker runs: the file's, with its own node id and admin port. */
export function workerConfig (loaded: LoadedConfig, index: number): LoadedConfig {
  const config = loaded.config
  return {
    ...loaded,
    config: {
      ...config,
      node: { ...config.node, id: workerNodeId(config.node.id, index) },
      listeners: { ...config.listeners, admin: { ...config.listeners.admin, port: workerAdminPort(config.listeners.admin.port, index) } }
    }
  }
}

/**
 * Answers the primary from the first moment (before the gateway exists: not ready, no
 * metrics). The primary asks for metrics only workers that answered a readiness poll: an IPC
 * message sent before this listener exists is lost, and prom-client's own clusterMetrics()
 * asks every forked worker, so one still loading its modules made /metrics wait 5 s and fail.
 * Returns what serve() calls once the gateway runs.
 */
export function attachToPrimary (): (gateway: Gateway) => void {
  let gateway: Gateway | undefined
  process.on('message', (message: { type?: unknown, requestId?: unknown }) => {
    if (message.type === MSG_READYZ) {
      const report: ReadinessReport = gateway?.readiness.report() ?? { ready: false, checks: { gateway: { ready: false, reason: 'starting' } } }
      const answer: ReadyzAnswer = { type: MSG_READYZ_ANSWER, report }
      process.send?.(answer)
    } else if (message.type === MSG_METRICS && typeof message.requestId === 'number') {
      const requestId = message.requestId
      const metrics = gateway === undefined ? Promise.resolve([]) : gateway.metrics.registry.getMetricsAsJSON()
      void metrics.then((json) => {
        const answer: MetricsAnswer = { type: MSG_METRICS_ANSWER, requestId, metrics: json }
        process.send?.(answer)
      })
    }
  })
  return (started) => {
    gateway = started
    process.send?.({ type: MSG_STARTED })
  }
}
