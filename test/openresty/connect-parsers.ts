/**
 * Runs the access layer's CONNECT parser, openresty/lua/mqtt_connect.lua, under a plain
 * `luajit` (OpenResty's LuaJIT 2.1 from Debian's luajit2 package, or any LuaJIT 2.1), through
 * openresty/lua/test_driver.lua: one process for a whole batch.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'

export const LUA_DIR = join(process.cwd(), 'openresty/lua')

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
    child.once('error', (e) => reject(new Error(`luajit could not run: ${e.message} (Debian package "luajit2"; scripts/test.sh installs it)`)))
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

/** Runs luajit in openresty/lua/ with `args`, feeding `stdin`; stdout and stderr together. */
export function runLua (args: string[], stdin = ''): Promise<{ code: number | null, out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('luajit', args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: LUA_DIR })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000)
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`luajit could not run: ${e.message} (Debian package "luajit2"; scripts/test.sh installs it)`)) })
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, out }) })
    child.stdin.on('error', () => {})
    child.stdin.end(stdin)
  })
}

/** Seeded PRNG: fuzz inputs are reproducible from the printed seed. */
/**
 * Runs a preread handler (`module`, default mqtt_preread) under test_preread.lua's mocked ngx
 * on each case's bytes with its peek limit; one answer per case: what it set ($mqtt_client_id
 * as `var=...`, or `stalled`) and the most bytes it peeked.
 */
export async function runPreread (cases: Array<{ data: Buffer | string, max: number }>, module?: string): Promise<Array<{ result: string, maxPeek: number }>> {
  const input = cases.map((c) => `${Buffer.from(c.data).toString('hex')} ${c.max}`).join('\n') + '\n'
  const { code, out } = await runLua(module === undefined ? ['test_preread.lua'] : ['test_preread.lua', module], input)
  if (code !== 0) throw new Error(`test_preread.lua exited with ${code}: ${out}`)
  const lines = out.trim().split('\n')
  if (lines.length !== cases.length) throw new Error(`test_preread.lua answered ${lines.length} of ${cases.length} cases: ${out}`)
  return lines.map((line) => {
    const [result, maxPeek] = line.split('|')
    return { result: result ?? '', maxPeek: Number(maxPeek) }
  })
}

export { seededRandom as prng } from '../helpers/seeded-random.js'
