import type { Aedes } from 'aedes'
import type { z } from 'zod'
import type { ClientInfoStore } from './client-info.js'
import type { GatewayConfig } from './config/load.js'
import type { HookHandlers, HookName } from './hooks/types.js'
import type { Readiness } from './listeners/admin.js'
import type { Logger } from './log.js'
import type { GatewayMetrics } from './metrics.js'

/** An environment variable that overrides one key of a plugin's section (for containers). */
export interface EnvOverride {
  env: string
  /** Key path inside the whole config, e.g. ['kafka', 'brokers']. */
  path: readonly string[]
  parse: 'string' | 'integer' | 'boolean' | 'csv'
}

export interface PluginContext<C> {
  /** The plugin's own validated section. */
  config: C
  /** The whole validated configuration, read-only. */
  gatewayConfig: Readonly<GatewayConfig>
  /** Directory of the config file, for resolving relative paths in the section. */
  configDir: string
  broker: Aedes
  log: Logger
  metrics: GatewayMetrics
  readiness: Readiness
  clients: ClientInfoStore
  /** Adds a handler at the end of a hook's chain (plugins run in registry order). */
  hook: <H extends HookName>(hook: H, handler: HookHandlers[H]) => void
}

export interface PluginInstance {
  /** Called on SIGHUP: re-read whatever files the plugin loads (ACL rules, users...). */
  reload?: () => Promise<void> | void
  /** Called on shutdown in reverse setup order. */
  close?: () => Promise<void> | void
}

/**
 * A capability of the gateway, in the style of a Fastify plugin: it owns its config
 * schema, its hooks and its tests; the core only knows its section key. It is enabled
 * by the presence of `configKey` in the gateway config.
 */
export interface GatewayPlugin<S extends z.ZodType = z.ZodType> {
  name: string
  configKey: string
  schema: S
  envOverrides?: readonly EnvOverride[]
  // Method syntax on purpose: a registry holds plugins of different section types.
  setup (ctx: PluginContext<z.infer<S>>): Promise<PluginInstance | void> | PluginInstance | void
}

/** Helper that keeps the schema's type attached to setup's context. */
export function definePlugin<S extends z.ZodType> (plugin: GatewayPlugin<S>): GatewayPlugin<S> {
  return plugin
}
