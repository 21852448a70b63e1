import cluster, { type Worker } from 'node:cluster'
import type { LoadedConfig } from '../src/config/load.js'
import { openAdminListener } from '../src/listeners/admin.js'
import { tlsOptions } from '../src/listeners/listeners.js'
import { createLogger, type Logger } from '../src/log.js'
import { Readiness } from '../src/readiness.js'
import { PrimaryMetrics } from './primary-metrics.js'
import { MSG_METRICS_ANSWER, MSG_READYZ, MSG_READYZ_ANSWER, MSG_STARTED, WORKER_INDEX_ENV, workerAdminPort, workerNodeId, type ReadyzAnswer } from './worker.js'

/*
 * `workers.count > 1`: this process is node:cluster's primary. It forks `count` gateway
 * processes (app/worker.ts + app/serve.ts) that share the listener ports, restarts one that
 * dies, stops them all on SIGTERM/SIGINT, and serves the admin port's /healthz, /readyz (ready
 * when every worker is) and /metrics (every worker's, aggregated by prom-client, plus its own).
 *
 * Scheduling (workers.scheduling): `round-robin` by default (SCHED_RR). The primary accepts
 * each connection and hands it to a worker that is free (it has acknowledged its previous
 * handoff), so connections spread evenly: what matters when each process is capped by its
 * descriptor limit. The price is the primary's CPU per accept (bench/workers). `kernel`
 * (SCHED_NONE): every worker accepts on the shared socket; no primary cost, but whichever
 * worker wakes first takes more of a burst (Node 20 has no SO_REUSEPORT for net servers).
 */

/** How often the primary asks each worker for its readiness, and how old an answer may be. */
const READY_POLL_MS = 500
const READY_STALE_MS = 3000
/** A worker whose previous run lasted this long restarts after the base delay again. */
const HEALTHY_RUN_MS = 10000

interface Slot {
  readonly index: number
  worker: Worker | undefined
  /** Set once the worker's gateway listens (MSG_STARTED). */
  startedAt: number | undefined
  startFailures: number
  /** Exits in a row, each after a short run: the exponent of the restart delay. */
  consecutiveExits: number
  restartTimer: NodeJS.Timeout | undefined
  report: { ready: boolean, reason?: string, at: number } | undefined
}

export async function runPrimary (loaded: LoadedConfig): Promise<number> {
  const { config } = loaded
  const settings = config.workers
  const log: Logger = createLogger(config.log.level, undefined, config.log.format).child({ component: 'primary' })
  cluster.schedulingPolicy = settings.scheduling === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR

  const primaryMetrics = new PrimaryMetrics()

  const slots: Slot[] = Array.from({ length: settings.count }, (_, index) => ({ index, worker: undefined, startedAt: undefined, startFailures: 0, consecutiveExits: 0, restartTimer: undefined, report: undefined }))
  const readiness = new Readiness()
  for (const slot of slots) {
    readiness.register(`worker-${slot.index}`, () => {
      if (slot.worker === undefined) return { ready: false, reason: 'not running (restarting)' }
      const report = slot.report
      if (report === undefined || Date.now() - report.at > READY_STALE_MS) return { ready: false, reason: 'no readiness answer' }
      return report.ready ? { ready: true } : { ready: false, reason: report.reason ?? 'not ready' }
    })
  }

  let stopping: Promise<number> | undefined
  let exitCode = 0
  const allExited = (): boolean => slots.every((s) => s.worker === undefined)
  let onAllExited: (() => void) | undefined

  let admin: { close: () => Promise<void> } | undefined
  let finished = false
  function finish (code: number): void {
    if (finished) return
    finished = true
    void (admin?.close() ?? Promise.resolve()).finally(() => {
      log.info({ exitCode: code }, 'primary stopped')
      process.exit(code)
    })
  }

  const fork = (slot: Slot): void => {
    slot.restartTimer = undefined
    slot.startedAt = undefined
    slot.report = undefined
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(slot.index) })
    slot.worker = worker
    worker.on('message', (message: { type?: unknown, requestId?: unknown, metrics?: unknown, report?: ReadyzAnswer['report'] }) => {
      if (message.type === MSG_STARTED) {
        slot.startedAt = Date.now()
        slot.startFailures = 0
        log.info({ worker: slot.index, pid: worker.process.pid, node: workerNodeId(config.node.id, slot.index) }, 'worker started')
      } else if (message.type === MSG_METRICS_ANSWER) {
        primaryMetrics.onMessage(message)
      } else if (message.type === MSG_READYZ_ANSWER && message.report) {
        const failing = Object.entries(message.report.checks).filter(([, c]) => !c.ready).map(([name, c]) => `${name}: ${c.reason ?? 'not ready'}`)
        slot.report = { ready: message.report.ready, reason: failing.join('; '), at: Date.now() }
      }
    })
    // A send() racing the worker's exit fails with ERR_IPC_CHANNEL_CLOSED as an 'error' event;
    // unhandled it would end the primary and with it every worker. The exit handler restarts it.
    worker.on('error', (err: Error) => { log.warn({ worker: slot.index, err: err.message }, 'worker IPC error') })
    worker.on('exit', (code, signal) => onExit(slot, worker, code, signal))
  }

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return
    slot.worker = undefined
    slot.report = undefined
    const ranMs = slot.startedAt === undefined ? 0 : Date.now() - slot.startedAt
    if (stopping !== undefined) {
      // A worker stopped by SIGTERM/SIGINT before its handlers were installed (still starting) had nothing to drain.
      if (code !== 0 && signal !== 'SIGTERM' && signal !== 'SIGINT') {
        exitCode = 1
        log.error({ worker: slot.index, pid: worker.process.pid, code, signal }, 'worker did not stop cleanly')
      }
      if (allExited()) onAllExited?.()
      return
    }
    if (slot.startedAt === undefined) slot.startFailures++
    if (slot.startFailures >= settings.maxStartFailures) {
      log.fatal({ worker: slot.index, pid: worker.process.pid, code, signal, startFailures: slot.startFailures }, 'worker failed to start repeatedly; stopping every worker')
      void stop(1).then(finish)
      return
    }
    slot.consecutiveExits = ranMs >= HEALTHY_RUN_MS ? 0 : slot.consecutiveExits + 1
    const delayMs = Math.min(settings.restartMaxDelayMs, settings.restartDelayMs * 2 ** Math.max(0, slot.consecutiveExits - 1))
    primaryMetrics.restarts.inc({ worker: String(slot.index) })
    log.warn({ worker: slot.index, pid: worker.process.pid, code, signal, ranMs, restartInMs: delayMs }, 'worker exited; restarting')
    slot.restartTimer = setTimeout(() => fork(slot), delayMs)
  }

  /** Drains every worker (their own graceful stop), bounded; resolves the process's exit code. */
  const stop = (code: number): Promise<number> => {
    if (stopping !== undefined) return stopping
    exitCode = code
    clearInterval(poll)
    stopping = new Promise<number>((resolve) => {
      const boundMs = config.shutdown.timeoutMs + 2000
      const bound = setTimeout(() => {
        const left = slots.filter((s) => s.worker !== undefined)
        log.error({ timeoutMs: boundMs, workers: left.map((s) => s.index) }, 'workers did not stop within the bound; killing them')
        for (const s of left) s.worker?.process.kill('SIGKILL')
        exitCode = 1
      }, boundMs)
      onAllExited = () => {
        clearTimeout(bound)
        resolve(exitCode)
      }
      for (const slot of slots) {
        clearTimeout(slot.restartTimer)
        slot.restartTimer = undefined
        // Each worker's own SIGTERM handler (app/serve.ts) stops accepting, disconnects its clients, closes the store.
        slot.worker?.process.kill('SIGTERM')
      }
      if (allExited()) onAllExited()
    })
    return stopping
  }

  const poll = setInterval(() => {
    for (const slot of slots) {
      if (slot.worker?.isConnected() === true) slot.worker.send({ type: MSG_READYZ })
    }
  }, READY_POLL_MS)

  const metrics = {
    contentType: primaryMetrics.contentType,
    // Workers that answered a readiness poll have their IPC listener (app/worker.ts).
    metrics: () => primaryMetrics.render(slots.flatMap((s) => s.worker !== undefined && s.report !== undefined ? [s.worker] : []))
  }
  if (config.listeners.admin.enabled) {
    try {
      const tls = config.listeners.admin.tls === undefined ? undefined : tlsOptions(config.listeners.admin.tls, loaded.baseDir)
      admin = await openAdminListener({ host: config.listeners.admin.host, port: config.listeners.admin.port, registry: metrics, readiness, log, tls })
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'primary admin listener failed to start')
      return 1
    }
  }

  for (const slot of slots) fork(slot)
  log.info({ workers: settings.count, scheduling: settings.scheduling, node: config.node.id, admin: config.listeners.admin.enabled ? `${config.listeners.admin.host}:${config.listeners.admin.port}` : undefined, workerAdminPorts: slots.map((s) => workerAdminPort(config.listeners.admin.port, s.index)) }, 'primary started')

  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutdown requested; stopping workers')
    void stop(0).then(finish)
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGHUP', () => {
    log.info('SIGHUP: forwarding to workers')
    for (const slot of slots) slot.worker?.process.kill('SIGHUP')
  })
  return -1
}
