import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node as YamlNode } from 'yaml'
import { z } from 'zod'
import type { GatewayPlugin } from '../plugin.js'
import { coreConfigShape, coreProblems, type EnvOverride, type GatewayConfig } from './schema.js'
import { formatZodIssues } from './zod-issues.js'

export type { EnvOverride, GatewayConfig } from './schema.js'

/** A configuration problem, already phrased for an operator; the CLI prints it and exits 1. */
export class ConfigError extends Error {
  constructor (message: string, readonly problems: readonly string[] = []) {
    super(problems.length > 0 ? `${message}\n${problems.map((p) => `  - ${p}`).join('\n')}` : message)
    this.name = 'ConfigError'
  }
}

/** Environment overrides of core keys; plugins declare their own (see GatewayPlugin.envOverrides). */
export const CORE_ENV_OVERRIDES: readonly EnvOverride[] = [
  { env: 'MQGW_NODE_ID', path: ['node', 'id'], parse: 'string' },
  { env: 'MQGW_LOG_LEVEL', path: ['log', 'level'], parse: 'string' },
  { env: 'MQGW_LOG_FORMAT', path: ['log', 'format'], parse: 'string' },
  { env: 'MQGW_MQTT_HOST', path: ['listeners', 'mqtt', 'host'], parse: 'string' },
  { env: 'MQGW_MQTT_PORT', path: ['listeners', 'mqtt', 'port'], parse: 'integer' },
  { env: 'MQGW_WS_HOST', path: ['listeners', 'ws', 'host'], parse: 'string' },
  { env: 'MQGW_WS_PORT', path: ['listeners', 'ws', 'port'], parse: 'integer' },
  { env: 'MQGW_MQTTS_ENABLED', path: ['listeners', 'mqtts', 'enabled'], parse: 'boolean' },
  { env: 'MQGW_MQTTS_PORT', path: ['listeners', 'mqtts', 'port'], parse: 'integer' },
  { env: 'MQGW_WSS_ENABLED', path: ['listeners', 'wss', 'enabled'], parse: 'boolean' },
  { env: 'MQGW_WSS_PORT', path: ['listeners', 'wss', 'port'], parse: 'integer' },
  { env: 'MQGW_ADMIN_HOST', path: ['listeners', 'admin', 'host'], parse: 'string' },
  { env: 'MQGW_ADMIN_PORT', path: ['listeners', 'admin', 'port'], parse: 'integer' },
  { env: 'MQGW_ADMIN_API_TOKEN', path: ['listeners', 'admin', 'apiToken'], parse: 'string' },
  { env: 'MQGW_PERSISTENCE_TYPE', path: ['persistence', 'type'], parse: 'string' },
  { env: 'MQGW_REDIS_URL', path: ['persistence', 'redis', 'url'], parse: 'string' },
  { env: 'MQGW_MAX_UNAUTHENTICATED_PER_ADDRESS', path: ['limits', 'maxUnauthenticatedPerAddress'], parse: 'integer' },
  { env: 'MQGW_WORKERS', path: ['workers', 'count'], parse: 'integer' }
]

/** The full schema: core sections plus one optional section per registered plugin. */
export function buildConfigSchema (plugins: readonly GatewayPlugin[]): z.ZodType<GatewayConfig> {
  const shape: Record<string, z.ZodType> = { ...coreConfigShape }
  for (const plugin of plugins) {
    if (plugin.configKey in shape) throw new Error(`plugin "${plugin.name}" uses config section "${plugin.configKey}", which is taken`)
    shape[plugin.configKey] = plugin.schema.optional()
  }
  return z.strictObject(shape) as unknown as z.ZodType<GatewayConfig>
}

function parseEnvValue (override: EnvOverride, raw: string): unknown {
  switch (override.parse) {
    case 'string': return raw
    case 'integer': {
      if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`environment variable ${override.env}="${raw}" is not an integer`)
      return Number.parseInt(raw, 10)
    }
    case 'boolean': {
      const v = raw.trim().toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off'].includes(v)) return false
      throw new ConfigError(`environment variable ${override.env}="${raw}" is not a boolean (true/false)`)
    }
    case 'csv': return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  }
}

function applyEnvOverrides (raw: Record<string, unknown>, overrides: readonly EnvOverride[], env: NodeJS.ProcessEnv): void {
  for (const override of overrides) {
    const value = env[override.env]
    if (value === undefined || value === '') continue
    let target: Record<string, unknown> = raw
    const path = override.path
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i]!
      const next = target[key]
      if (typeof next !== 'object' || next === null || Array.isArray(next)) target[key] = {}
      target = target[key] as Record<string, unknown>
    }
    target[path[path.length - 1]!] = parseEnvValue(override, value)
  }
}

/** Finds the line of a key path in the YAML source, for error messages. */
function lineOf (doc: Document, lines: LineCounter, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents
  let offset: number | undefined
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(key))
      if (!pair) break
      offset = (pair.key as YamlNode).range?.[0]
      node = pair.value
    } else if (node && typeof node === 'object' && 'items' in node && typeof key === 'number') {
      const item = (node as { items: unknown[] }).items[key]
      if (!item) break
      offset = (item as YamlNode).range?.[0] ?? offset
      node = item
    } else {
      break
    }
  }
  return offset === undefined ? undefined : lines.linePos(offset).line
}

/** What a plugin finds wrong with its section given the rest of the config (GatewayPlugin.check). */
function crossSectionProblems (config: GatewayConfig, plugins: readonly GatewayPlugin[]): string[] {
  const problems: string[] = []
  for (const plugin of plugins) {
    const section = config[plugin.configKey]
    if (section === undefined || !plugin.check) continue
    for (const problem of plugin.check(section, config)) problems.push(`${plugin.configKey}.${problem}`)
  }
  return problems
}

export interface LoadedConfig {
  config: GatewayConfig
  /** Directory of the file; relative paths in the config resolve against it. */
  baseDir: string
  file: string | undefined
}

/**
 * Parses and validates YAML text. Every problem names its key path and, where the
 * YAML parser knows it, the line: operators fix configs from the error message alone.
 */
export function parseConfig (text: string, opts: { plugins: readonly GatewayPlugin[], env?: NodeJS.ProcessEnv, source?: string }): GatewayConfig {
  const source = opts.source ?? 'config'
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(`${source}: invalid YAML`, doc.errors.map((e) => e.message.split('\n')[0] ?? e.message))
  }
  const raw: unknown = doc.toJS() ?? {}
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${source}: the top level must be a mapping of sections (node, listeners, ...)`)
  }
  const overrides = [...CORE_ENV_OVERRIDES, ...opts.plugins.flatMap((p) => p.envOverrides ?? [])]
  applyEnvOverrides(raw as Record<string, unknown>, overrides, opts.env ?? process.env)

  const result = buildConfigSchema(opts.plugins).safeParse(raw)
  if (result.success) {
    const problems = [...coreProblems(result.data), ...crossSectionProblems(result.data, opts.plugins)]
    if (problems.length === 0) return result.data
    throw new ConfigError(`${source}: invalid configuration`, problems)
  }
  const problems = formatZodIssues(result.error.issues, (path) => lineOf(doc, lines, path))
  throw new ConfigError(`${source}: invalid configuration`, problems)
}

export function loadConfigFile (file: string, opts: { plugins: readonly GatewayPlugin[], env?: NodeJS.ProcessEnv }): LoadedConfig {
  const path = resolve(file)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(code === 'ENOENT' ? `config file not found: ${path}` : `cannot read config file ${path}: ${(err as Error).message}`)
  }
  return { config: parseConfig(text, { ...opts, source: path }), baseDir: dirname(path), file: path }
}
