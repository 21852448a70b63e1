import type { Aedes } from 'aedes'
import type { AdminRegistry } from './admin/router.js'
import type { z } from 'zod'
import type { ClientInfoLookup } from './client-info.js'
import type { EnvOverride, GatewayConfig } from './config/schema.js'
import type { HookHandlers, HookName } from './hooks/types.js'
import type { Readiness } from './readiness.js'
import type { Logger } from './log.js'

export type { EnvOverride } from './config/schema.js'
import type { GatewayMetrics } from './metrics.js'

export interface PluginContext<C> {
  /** The plugin's own validated section. */
  config: C
  /** The whole validated configuration, read-only. */
  gatewayConfig: Readonly<GatewayConfig>
  /** Directory of the config file, for resolving relative paths in the section. */
  configDir: string
  /** The gateway's version (package.json, as the admin API's node info reports it). */
  version: string
  broker: Aedes
  log: Logger
  metrics: GatewayMetrics
  readiness: Readiness
  /** The connections' infos (read only). */
  clients: ClientInfoLookup
  /** Adds endpoints to the admin REST API (/api/v1), documented in its OpenAPI document. */
  admin: AdminRegistry
  /** Adds a handler at the end of a hook's chain (plugins run in registry order). */
  hook: <H extends HookName>(hook: H, handler: HookHandlers[H]) => void
}

export interface ReloadResult { ok: boolean, error?: string }

export interface PluginInstance {
  /**
   * Called on SIGHUP and POST /api/v1/reload: re-read whatever files the plugin loads (ACL
   * rules, users...). A plugin that keeps its previous state answers `{ ok: false, error }`
   * (or throws); the outcome is reported by the API.
   */
  reload?: () => Promise<ReloadResult | void> | ReloadResult | void
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
  /**
   * Problems of the validated section that depend on other sections (e.g. a time bound
   * that must stay below hooks.timeoutMs), as `key: message`; checked by --check too.
   */
  check? (section: z.infer<S>, config: Readonly<GatewayConfig>): string[]
  // Method syntax on purpose: a registry holds plugins of different section types.
  setup (ctx: PluginContext<z.infer<S>>): Promise<PluginInstance | void> | PluginInstance | void
}

/** Helper that keeps the schema's type attached to setup's context. */
export function definePlugin<S extends z.ZodType> (plugin: GatewayPlugin<S>): GatewayPlugin<S> {
  return plugin
}
