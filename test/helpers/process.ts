import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { pollUntil } from './mqtt.js'

export const CLI = join(process.cwd(), 'dist/app/cli.js')

/**
 * Children of this test process (gateways, redis-server, sentinels...), SIGKILLed if it exits or
 * is stopped before it stopped them: a test file that runs past its time bound is ended by the
 * runner (SIGTERM) without its after() hooks, and its servers would otherwise keep running and
 * take CPU from every later file (seen: three gateways and a redis-server left by a timed-out
 * file).
 */
const children = new Set<ChildProcess>()
function killChildren (): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try { process.kill(child.pid, 'SIGKILL') } catch { /* already gone */ }
    }
  }
}
let stopHandlers = false
export function track<C extends ChildProcess> (child: C): C {
  if (!stopHandlers) {
    stopHandlers = true
    process.once('exit', killChildren)
    for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
      process.once(signal, () => { killChildren(); process.exit(code) })
    }
  }
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** Ports freePort() has returned in this process: never returned twice. */
const handedOut = new Set<number>()

/**
 * A port that was free a moment ago on 127.0.0.1, below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, 32768-60999 here), and low enough that a Redis Cluster node's bus port (port + 10000) is below it too. A port from listen(0) is an ephemeral
 * one, which any outgoing connection of another test may take as its source port before the
 * gateway binds it (CI saw EADDRINUSE that way); ports below the range are never handed out
 * as source ports.
 */
export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 10000 + Math.floor(Math.random() * 10000)
    // A port handed out earlier may not be bound yet (a test picks several ports, then starts
    // the processes): probing it again would find it free and hand it out twice (CI: nginx's
    // listen port was also a gateway node's, EADDRINUSE).
    if (handedOut.has(port)) continue
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
    })
    if (free) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('no free port in 10000-19999 on 127.0.0.1 after 100 tries')
}

export interface GatewayProcess {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
  ports: { mqtt: number, ws: number, admin: number }
}

/** Runs the real CLI as a separate OS process and waits until its /readyz (or /healthz) answers 200. */
export async function spawnGateway (args: string[], env: Record<string, string> = {}, waitFor: 'readyz' | 'healthz' = 'readyz', startTimeoutMs = 15000, cwd?: string): Promise<GatewayProcess> {
  const ports = { mqtt: await freePort(), ws: await freePort(), admin: await freePort() }
  // BENCH_GATEWAY_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): node flags for the
  // gateway only; NODE_OPTIONS refuses --cpu-prof and would reach every process anyway.
  const nodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')
  const child = track(spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    ...(cwd !== undefined ? { cwd } : {}),
    env: { ...process.env, MQGW_MQTT_HOST: '127.0.0.1', MQGW_WS_HOST: '127.0.0.1', MQGW_MQTT_PORT: String(ports.mqtt), MQGW_WS_PORT: String(ports.ws), MQGW_ADMIN_PORT: String(ports.admin), ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  }))
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const ready = await pollUntil(async () => {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}: ${err}${out}`)
    return await fetch(`http://127.0.0.1:${ports.admin}/${waitFor}`).then((r) => r.status === 200, () => false)
  }, (up) => up, startTimeoutMs, 25)
  if (!ready) {
    child.kill('SIGKILL')
    throw new Error(`gateway did not become ready within ${startTimeoutMs / 1000} s: ${err}${out}`)
  }
  return { child, stdout: () => out, stderr: () => err, exited, ports }
}

/** Runs a command to completion with a time bound; never throws on a non-zero exit. */
export function run (cmd: string, args: string[], timeoutMs = 15000, cwd?: string): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd !== undefined ? { cwd } : {}) }))
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`${cmd} could not run: ${e.message} (the test command installs it; see scripts/test.sh)`)) })
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** Starts a command and returns it running (for subscribers that wait for messages). */
export function start (cmd: string, args: string[]): { child: ChildProcess, output: () => string, done: Promise<number | null> } {
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }))
  let output = ''
  child.stdout!.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { output += c.toString() })
  const done = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1))
    child.once('exit', (code) => resolve(code))
  })
  return { child, output: () => output, done }
}
