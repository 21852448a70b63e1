#!/usr/bin/env node
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { builtinPlugins } from '../plugins/index.js'
import { ConfigError, loadConfigFile } from '../src/config/load.js'
import { ACL_USAGE, aclCommand } from './acl-command.js'
import { serve } from './serve.js'
import { attachToPrimary, workerConfig, workerIndex } from './worker.js'
import { runPrimary } from './workers.js'

/*
 * The composition root: the only module that knows both the core (src/) and the plugin
 * registry (plugins/). src/ never imports plugins/. Commands: run the gateway (app/serve.ts),
 * `acl check|test` (app/acl-command.ts).
 */

const DEFAULT_CONFIG = fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url))

const USAGE = `usage: mqtt-gateway [--config FILE] [--check] [--workers P]
  --config FILE   gateway YAML (default: $MQGW_CONFIG, else ${DEFAULT_CONFIG})
  --check         validate the configuration and exit (0 valid, 1 invalid)
  --workers P     run P gateway processes sharing the listener ports (workers.count; $MQGW_WORKERS)
${ACL_USAGE}`

async function main (): Promise<number> {
  if (process.argv[2] === 'acl') return aclCommand(process.argv.slice(3))
  let args
  try {
    args = parseArgs({ options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, workers: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 1
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const file = args.values.config ?? process.env.MQGW_CONFIG ?? DEFAULT_CONFIG
  // --workers is MQGW_WORKERS: validated with the file, and inherited by the workers node:cluster forks.
  if (args.values.workers !== undefined) {
    if (!/^\d+$/.test(args.values.workers)) {
      process.stderr.write(`mqtt-gateway: --workers: "${args.values.workers}" is not a positive integer\n`)
      return 1
    }
    process.env.MQGW_WORKERS = args.values.workers
  }
  const worker = workerIndex()
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
  // A worker of app/workers.ts runs the ordinary gateway as its own node; the primary only supervises.
  if (worker !== undefined) return serve(workerConfig(loaded, worker), { logBindings: { worker }, onStarted: attachToPrimary() })
  if (loaded.config.workers.count > 1) return runPrimary(loaded)
  return serve(loaded)
}

main().then((code) => {
  if (code >= 0) process.exit(code)
}, (err: Error) => {
  process.stderr.write(`mqtt-gateway: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
