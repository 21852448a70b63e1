#!/usr/bin/env node
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { builtinPlugins } from '../plugins/index.js'
import { ConfigError, loadConfigFile } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'

/*
 * The composition root: the only module that knows both the core (src/) and the plugin
 * registry (plugins/). src/ never imports plugins/.
 */

const DEFAULT_CONFIG = fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url))

const USAGE = `usage: mqtt-gateway [--config FILE] [--check]
  --config FILE   gateway YAML (default: $MQGW_CONFIG, else ${DEFAULT_CONFIG})
  --check         validate the configuration and exit (0 valid, 1 invalid)`

async function main (): Promise<number> {
  let args
  try {
    args = parseArgs({ options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 1
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const file = args.values.config ?? process.env.MQGW_CONFIG ?? DEFAULT_CONFIG
  let loaded
  try {
    loaded = loadConfigFile(file, { plugins: builtinPlugins })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mqtt-gateway: ${err.message}\n`)
      return 1
    }
    throw err
  }
  if (args.values.check) {
    process.stdout.write(`${loaded.file}: configuration valid\n`)
    return 0
  }

  const log = createLogger(loaded.config.log.level, undefined, loaded.config.log.format)
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
  // Without a handler SIGHUP would kill the process; with one it reloads plugin files.
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading')
    void gateway.reload()
  })
  return -1
}

main().then((code) => {
  if (code >= 0) process.exit(code)
}, (err: Error) => {
  process.stderr.write(`mqtt-gateway: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
