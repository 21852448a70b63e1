/**
 * Runs the two CONNECT parsers of the access layer on the same inputs:
 * openresty/lua/mqtt_connect.lua under Debian's `luajit` (through
 * openresty/lua/test_driver.lua, one process for a whole batch) and its njs port
 * openresty/njs/mqtt_connect.js loaded as an ES module in this process.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

export const LUA_DIR = join(process.cwd(), 'openresty/lua')
export const NJS_MODULE = join(process.cwd(), 'openresty/njs/mqtt_connect.js')

export interface ParseResult {
  /** ok | more | invalid | error (error: the parser raised; must never happen) */
  status: string
  /** ok: the client id; more: bytes needed (as text); invalid: the reason */
  value: string
  /** client_id(): the id, or "unknown" */
  clientId: string
}

export interface Input { data: Buffer, maxLen?: number }

/** Feeds every input to the Lua parser in one luajit process; results in input order. */
export async function luaParse (inputs: Input[], timeoutMs = 60000): Promise<ParseResult[]> {
  const child = spawn('luajit', [join(LUA_DIR, 'test_driver.lua')], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const done = new Promise<number | null>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`luajit could not run: ${e.message} (Debian package "luajit"; scripts/test.sh installs it)`)))
    child.once('exit', (code) => resolve(code))
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  child.stdin.on('error', () => {})
  child.stdin.end(inputs.map((i) => i.data.toString('hex') + (i.maxLen !== undefined ? ` ${i.maxLen}` : '')).join('\n') + '\n')
  const code = await done
  clearTimeout(timer)
  if (code !== 0) throw new Error(`luajit exited with ${code}: ${err}`)
  const lines = out.split('\n').filter((l) => l.length > 0)
  if (lines.length !== inputs.length) throw new Error(`luajit answered ${lines.length} lines for ${inputs.length} inputs: ${err}`)
  return lines.map((line) => {
    const [status = '', value = '', idHex = ''] = line.split('|')
    return {
      status,
      value: status === 'ok' ? Buffer.from(value, 'hex').toString('utf8') : value,
      clientId: Buffer.from(idHex, 'hex').toString('utf8')
    }
  })
}

interface NjsModule {
  parse: (buf: Buffer, maxLen?: number) => { status: string, value: string | number }
  clientId: (buf: Buffer, maxLen?: number) => string
}

let njs: NjsModule | undefined
export async function njsModule (): Promise<NjsModule> {
  if (!njs) njs = (await import(pathToFileURL(NJS_MODULE).href) as { default: NjsModule }).default
  return njs
}

/** The njs port on the same inputs, same result shape ("error" if it throws). */
export async function njsParse (inputs: Input[]): Promise<ParseResult[]> {
  const m = await njsModule()
  return inputs.map(({ data, maxLen }) => {
    try {
      const r = m.parse(data, maxLen)
      return { status: r.status, value: String(r.value), clientId: m.clientId(data, maxLen) }
    } catch (e) {
      return { status: 'error', value: (e as Error).message, clientId: '' }
    }
  })
}

/** Seeded PRNG: fuzz inputs are reproducible from the printed seed. */
export { seededRandom as prng } from '../helpers/seeded-random.js'
