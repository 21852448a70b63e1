import type { GatewayConfig } from '../config/schema.js'
import type { HookChains } from '../hooks/chain.js'
import type { Logger } from '../log.js'
import type { GatewayMetrics } from '../metrics.js'
import type { PersistenceBackend } from '../persistence/backend.js'
import type { ConnectionRegistry } from './connections.js'

/** What every packet handler of the core works with. */
export interface HandlerContext {
  readonly config: GatewayConfig
  readonly hooks: HookChains
  readonly metrics: GatewayMetrics
  readonly log: Logger
  readonly connections: ConnectionRegistry
  readonly backend: PersistenceBackend
}
