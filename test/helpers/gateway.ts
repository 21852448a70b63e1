import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { parse as yamlParse, stringify as yamlStringify } from 'yaml'
import { parseConfig } from '../../src/config/load.js'
import { Gateway } from '../../src/gateway.js'
import { createLogger, type LogLevel } from '../../src/log.js'
import type { GatewayPlugin } from '../../src/plugin.js'

/** Log lines a test gateway wrote, parsed; printed to stderr as well when TEST_LOG is set. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = []
  override _write (chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.length === 0) continue
      this.lines.push(JSON.parse(line) as Record<string, unknown>)
      if (process.env.TEST_LOG) process.stderr.write(line + '\n')
    }
    cb()
  }

  find (msg: string): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.msg === msg)
  }
}

export interface TestGateway {
  gateway: Gateway
  logs: LogCapture
  mqttUrl: string
  wsUrl: string
  adminUrl: string
  stop: () => Promise<void>
}

/**
 * A gateway in this process on ephemeral 127.0.0.1 ports, configured from YAML text
 * exactly as the CLI would be (same parser, same validation).
 */
export async function startTestGateway (yaml = '', opts: { plugins?: readonly GatewayPlugin[], baseDir?: string, level?: LogLevel } = {}): Promise<TestGateway> {
  const base = `
listeners:
  mqtt: { host: 127.0.0.1, port: 0 }
  ws: { host: 127.0.0.1, port: 0 }
  admin: { host: 127.0.0.1, port: 0 }
`
  const config = parseConfig(mergeYaml(base, yaml), { plugins: opts.plugins ?? [], env: {} })
  const logs = new LogCapture()
  const gateway = await Gateway.start({
    config,
    plugins: opts.plugins ?? [],
    baseDir: opts.baseDir ?? process.cwd(),
    logger: createLogger(opts.level ?? 'info', logs)
  })
  return {
    gateway,
    logs,
    mqttUrl: `mqtt://127.0.0.1:${gateway.ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${gateway.ports.ws}/mqtt`,
    adminUrl: `http://127.0.0.1:${gateway.ports.admin}`,
    stop: () => gateway.stop()
  }
}

/** Deep-merges two YAML documents (the second wins), so tests state only what they change. */
function mergeYaml (a: string, b: string): string {
  const parse = (text: string): Record<string, unknown> => (yamlParse(text) ?? {}) as Record<string, unknown>
  const merge = (x: Record<string, unknown>, y: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...x }
    for (const [k, v] of Object.entries(y)) {
      const prev = out[k]
      out[k] = isPlainObject(prev) && isPlainObject(v) ? merge(prev, v) : v
    }
    return out
  }
  return yamlStringify(merge(parse(a), parse(b)))
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}


let tlsDir: string | undefined
/** A self-signed certificate for localhost/127.0.0.1, made once per test process with openssl. */
export function testCertificate (): { dir: string, cert: string, key: string } {
  if (!tlsDir) {
    tlsDir = mkdtempSync(join(tmpdir(), 'mqgw-tls-'))
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '2',
      '-keyout', join(tlsDir, 'server.key'), '-out', join(tlsDir, 'server.crt')], { stdio: 'ignore' })
  }
  return { dir: tlsDir, cert: join(tlsDir, 'server.crt'), key: join(tlsDir, 'server.key') }
}
