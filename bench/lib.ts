import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnGateway, type GatewayProcess } from '../test/helpers/process.js'

export { spawnGateway, type GatewayProcess }

/** Runs the load generator in its own process and returns its JSON result. */
export function loadgen<T> (job: object, timeoutMs = 120000): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(process.cwd(), 'dist/bench/loadgen.js'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`loadgen exited ${code}: ${out}`))
      else resolve(JSON.parse(out) as T)
    })
  })
}

export async function stopGateway (gw: GatewayProcess): Promise<void> {
  gw.child.kill('SIGTERM')
  await gw.exited
}

export function percentiles (samples: number[]): { p50: number, p99: number, mean: number } {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))] ?? 0
  return { p50: at(50), p99: at(99), mean: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length) }
}

/** Prints a table and writes the results as JSON under bench/results/. */
export function report (name: string, rows: Array<Record<string, string | number>>, raw: object): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const cell = (v: string | number | undefined): string => typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : (v ?? '')
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (values: string[]): string => values.map((v, i) => v.padEnd(widths[i]!)).join('  ')
  process.stdout.write(`\n${name}\n${line(columns)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`)
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + '\n')
  mkdirSync('bench/results', { recursive: true })
  writeFileSync(join('bench/results', `${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.json`), JSON.stringify({ name, when: new Date().toISOString(), rows, raw }, null, 2))
}

/**
 * A bench's `--key=value` flags (`--key` alone reads as 'true') and a reader of positive numbers
 * with a default, which refuses anything else with one line.
 */
export function commandFlags (argv: readonly string[] = process.argv.slice(2)): { flags: Map<string, string>, num: (key: string, fallback: number) => number } {
  const flags = new Map(argv.filter((a) => a.startsWith('--')).map((a) => {
    const [k, v] = a.slice(2).split('=')
    return [k!, v ?? 'true']
  }))
  const num = (key: string, fallback: number): number => {
    const v = flags.get(key)
    if (v === undefined) return fallback
    const n = Number(v)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${key}=${v}: a positive number is needed`)
    return n
  }
  return { flags, num }
}
