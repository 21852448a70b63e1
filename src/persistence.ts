import type { GatewayConfig } from './config/load.js'
import type { Readiness } from './listeners/admin.js'
import type { Logger } from './log.js'

/**
 * The session store and message bus chosen by `persistence.type`. `undefined`
 * members leave Aedes' in-memory defaults in place.
 */
export interface PersistenceBackend {
  /** An aedes-persistence implementation (typed `any` by Aedes itself). */
  persistence?: unknown
  /** An mqemitter-compatible bus (`on`, `removeListener`, `emit`, `close`). */
  mq?: unknown
  close: () => Promise<void>
}

export async function createPersistence (config: GatewayConfig, _deps: { log: Logger, readiness: Readiness }): Promise<PersistenceBackend> {
  switch (config.persistence.type) {
    case 'memory':
      // Aedes' defaults: aedes-persistence (memory) and mqemitter. Sessions of
      // clean:false clients live as long as this process.
      return { close: async () => {} }
  }
}
