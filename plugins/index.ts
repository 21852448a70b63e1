import type { GatewayPlugin } from '../src/plugin.js'
import { aclPlugin } from './acl/plugin.js'
import { authPlugin } from './auth/plugin.js'
import { flowPlugin } from './flow/plugin.js'
import { kafkaPlugin } from './kafka/plugin.js'
import { sysPlugin } from './sys/plugin.js'

/**
 * The plugin registry: every built-in capability, keyed by its config section and run
 * in this order (which is also the order of their handlers in every hook chain).
 * Order matters: auth and ACL decide before the Kafka bridge routes a message.
 * New capabilities are added here and nowhere else.
 */
export const builtinPlugins: readonly GatewayPlugin[] = [authPlugin, aclPlugin, flowPlugin, kafkaPlugin, sysPlugin]
