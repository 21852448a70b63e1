import type { GatewayConfig } from '../config/schema.js'
import { LocalBus } from '../bus/local-bus.js'
import type { PersistenceBackend, PersistenceDeps } from './backend.js'
import { memoryInspector } from './inspect.js'
import { MemoryRetainedLedger, MemorySessionOwners } from './ledgers.js'
import { announceOnlyWhenHeard } from './memory-announcements.js'
import { createRedisBackend } from './redis.js'

export type { PersistenceBackend, PersistenceDeps } from './backend.js'

export async function createPersistence (config: GatewayConfig, deps: PersistenceDeps): Promise<PersistenceBackend> {
  const persistence = config.persistence
  switch (persistence.type) {
    case 'memory':
      // Aedes' in-memory store (sessions of clean:false clients live as long as this
      // process) and our LocalBus: the sharded subscription index, and no broker-wide
      // delivery slots (mqemitter's `concurrency`) that one slow client could hold.
    {
      const retainedLedger = new MemoryRetainedLedger()
      const sessionOwners = new MemorySessionOwners()
      const bus = new LocalBus({ shards: config.broker.subscriptionShards, onListenerError: (err) => deps.log.error({ err: (err as Error).message }, 'a bus listener threw; delivery to it skipped') })
      return {
        mq: bus,
        retainedLedger,
        sessionOwners,
        inspector: (broker) => memoryInspector(broker, retainedLedger, sessionOwners),
        available: () => true,
        ready: async () => {},
        start: async (broker) => { announceOnlyWhenHeard(broker, bus) },
        close: async () => {}
      }
    }
    case 'redis':
      return createRedisBackend(persistence, config.node.id, config.broker.subscriptionShards, deps)
  }
}
