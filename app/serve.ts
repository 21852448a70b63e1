import { builtinPlugins } from '../plugins/index.js'
import type { LoadedConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'

export interface ServeOptions {
  /** Fields on every log line (a worker's `worker` index). */
  logBindings?: Record<string, unknown>
  /** Called once the gateway is listening (a worker tells its primary). */
  onStarted?: (gateway: Gateway) => void
}

/** Runs the gateway until a signal stops it; resolves -1 while it runs, 1 if it failed to start. */
export async function serve (loaded: LoadedConfig, opts: ServeOptions = {}): Promise<number> {
  const root = createLogger(loaded.config.log.level, undefined, loaded.config.log.format)
  const log = opts.logBindings ? root.child(opts.logBindings) : root
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.stack ?? err.message }, 'uncaught exception; exiting')
    process.exit(1)
  })
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason instanceof Error ? reason.stack : String(reason) }, 'unhandled rejection; exiting')
    process.exit(1)
  })

  let gateway: Gateway
  try {
    // Relative paths in the config (certificates, ACL file) resolve against the config
    // file's directory, whatever the working directory.
    gateway = await Gateway.start({ config: loaded.config, baseDir: loaded.baseDir, plugins: builtinPlugins, logger: log })
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'gateway failed to start')
    return 1
  }
  opts.onStarted?.(gateway)

  const shutdown = (signal: string): void => {
    log.info({ signal }, 'shutdown requested')
    const bound = setTimeout(() => {
      log.error({ timeoutMs: loaded.config.shutdown.timeoutMs }, 'graceful shutdown exceeded its bound; exiting')
      process.exit(1)
    }, loaded.config.shutdown.timeoutMs)
    bound.unref()
    gateway.stop().then(() => process.exit(0), (err: Error) => {
      log.error({ err: err.message }, 'error during shutdown')
      process.exit(1)
    })
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  // Without a handler SIGHUP would kill the process; with one it reloads plugin files
  // (the same as POST /api/v1/reload).
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading')
    void gateway.reload()
  })
  return -1
}
