import type { Aedes } from 'aedes'
import type { Logger } from '../log.js'
import type { GatewayMetrics } from '../metrics.js'
import type { Readiness } from '../readiness.js'
import type { StoreInspector } from './inspect.js'
import type { RetainedLedger, SessionOwners } from './ledgers.js'

/**
 * The session store and message bus chosen by `persistence.type`. `undefined`
 * members leave Aedes' in-memory defaults in place.
 */
export interface PersistenceBackend {
  /** An aedes-persistence implementation (typed `any` by Aedes itself). */
  persistence?: unknown
  /** An mqemitter-compatible bus (`on`, `removeListener`, `emit`, `close`); always ours, never Aedes' default. */
  mq: unknown
  /** Retained messages by topic, size and setter, for the retained-store limits. */
  retainedLedger: RetainedLedger
  /** Who owns each persistent session. */
  sessionOwners: SessionOwners
  /** Reads and removes sessions and retained messages for the admin API (once the broker exists). */
  inspector: (broker: Aedes) => StoreInspector
  /** Whether persistent sessions can be served now (a CONNECT with clean:false is refused with 0x03 otherwise). */
  available: () => boolean
  /** Resolves once the store can be used (Redis connected); the broker is built after it. */
  ready: () => Promise<void>
  /** Called once the broker listens: background work that needs the broker. */
  start: (broker: Aedes) => Promise<void>
  close: () => Promise<void>
}

export interface PersistenceDeps {
  log: Logger
  readiness: Readiness
  metrics: GatewayMetrics
}
