import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnGateway, type GatewayProcess } from './process.js'
import type { TestRedis } from './redis.js'

const configDir = mkdtempSync(join(tmpdir(), 'mqgw-cluster-'))

export interface ClusterNode extends GatewayProcess {
  id: string
  url: string
  admin: string
  /** SIGKILL: the node dies without any cleanup, as in a crash. */
  crash: () => Promise<void>
  stop: () => Promise<void>
}

/** A gateway process in Redis mode (real OS process, the CLI), node id fixed. */
export async function startNode (redis: Pick<TestRedis, 'configYaml'>, id: string, opts: { persistence?: Record<string, number | boolean>, yaml?: string, env?: Record<string, string>, waitFor?: 'readyz' | 'healthz' } = {}): Promise<ClusterNode> {
  const file = join(configDir, `${id}-${Date.now()}.yaml`)
  const persistenceExtra = Object.entries(opts.persistence ?? {}).map(([k, v]) => `, ${k}: ${v}`).join('')
  writeFileSync(file, `node: { id: ${id} }
log: { level: ${process.env.TEST_LOG ? 'info' : 'warn'} }
broker: { heartbeatIntervalMs: 1000 }
persistence: { type: redis, redis: ${redis.configYaml}${persistenceExtra} }
${opts.yaml ?? ''}`)
  const gw = await spawnGateway(['--config', file], opts.env ?? {}, opts.waitFor ?? 'readyz')
  if (process.env.TEST_LOG) gw.child.stdout!.pipe(process.stderr)
  const node: ClusterNode = {
    ...gw,
    id,
    url: `mqtt://127.0.0.1:${gw.ports.mqtt}`,
    admin: `http://127.0.0.1:${gw.ports.admin}`,
    crash: async () => {
      if (gw.child.exitCode !== null || gw.child.signalCode !== null) return
      gw.child.kill('SIGKILL')
      await gw.exited
    },
    stop: async () => {
      if (gw.child.exitCode !== null || gw.child.signalCode !== null) return
      gw.child.kill('SIGTERM')
      await gw.exited
    }
  }
  return node
}
