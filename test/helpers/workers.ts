import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pollUntil } from './mqtt.js'
import { CLI, freePort, track } from './process.js'

/** Bind-tests `port` on 127.0.0.1. */
function isFree (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * `n` consecutive ports that were free a moment ago (the primary's admin port and one per worker
 * after it). Taken below the ephemeral range (net.ipv4.ip_local_port_range starts at 32768), where
 * no outgoing connection of the machine's load generators can hold one.
 */
export async function freePortRun (n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (12000 - n))
    let all = true
    for (let i = 0; i < n && all; i++) all = await isFree(base + i)
    if (all) return base
  }
  throw new Error(`no run of ${n} free ports found in 50 attempts`)
}

export interface PrimaryProcess {
  child: ChildProcess
  stdout: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  ports: { mqtt: number, ws: number, admin: number }
  /** Worker i's admin base URL (port admin + 1 + i). */
  workerAdmin: (i: number) => string
  /** The pids the primary logged for worker i ("worker started" lines), oldest first. */
  workerPids: (i: number) => number[]
  /** Parsed JSON log lines of every process (primary and workers share stdout). */
  lines: () => Array<Record<string, unknown>>
}

/**
 * Runs the real CLI as a primary with workers (`args` carry --workers or the config does),
 * waiting until the primary's /readyz is 200 (every worker ready) unless `waitReady` is false.
 */
export async function spawnPrimary (yaml: string, args: string[] = [], opts: { env?: Record<string, string>, waitReady?: boolean, workers?: number, startTimeoutMs?: number, logLevel?: string } = {}): Promise<PrimaryProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-workers-'))
  const file = join(dir, 'gateway.yaml')
  const ports = { mqtt: await freePort(), ws: await freePort(), admin: await freePortRun(1 + (opts.workers ?? 2)) }
  writeFileSync(file, `log: { level: ${opts.logLevel ?? 'info'}, format: json }
listeners:
  mqtt: { host: 127.0.0.1, port: ${ports.mqtt} }
  ws: { host: 127.0.0.1, port: ${ports.ws} }
  admin: { host: 127.0.0.1, port: ${ports.admin} }
${yaml}`)
  const child = track(spawn(process.execPath, [CLI, '--config', file, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = ''
  child.stdout!.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { out += c.toString() })
  if (process.env.TEST_LOG) child.stdout!.pipe(process.stderr)
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const lines = (): Array<Record<string, unknown>> => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  const primary: PrimaryProcess = {
    child,
    stdout: () => out,
    exited,
    ports,
    workerAdmin: (i) => `http://127.0.0.1:${ports.admin + 1 + i}`,
    workerPids: (i) => lines().filter((l) => l.msg === 'worker started' && l.worker === i).map((l) => l.pid as number),
    lines
  }
  if (opts.waitReady === false) return primary
  const timeoutMs = opts.startTimeoutMs ?? 60000
  const ready = await pollUntil(async () => {
    if (child.exitCode !== null) throw new Error(`primary exited with ${child.exitCode}: ${out}`)
    return await fetch(`http://127.0.0.1:${ports.admin}/readyz`).then((r) => r.status === 200, () => false)
  }, (up) => up, timeoutMs, 100)
  if (!ready) {
    child.kill('SIGKILL')
    throw new Error(`primary's /readyz not 200 within ${timeoutMs / 1000} s: ${out}`)
  }
  return primary
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A metric's value (no labels) from a Prometheus text page. */
export async function metricValue (adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}
