/**
 * Starts the three brokers compared by bench/compare.bench.ts as separate processes, each pinned
 * to one core with taskset and with a raised fd limit, and runs load generators pinned to the
 * other core. Every child is tracked by pid and killed on stop, on error and at exit.
 *
 *  - gateway:   this project's CLI (dist/app/cli.js) with config/gateway.yaml (memory mode), log level warn
 *  - aedes:     plain Aedes 1.2.0 with default options (dist/bench/plain-aedes.js), as published
 *               (MQTT over WebSocket as Aedes' docs show it: ws + createWebSocketStream):
 *               node_modules/aedes carries this project's patch (patches/), so the peer runs a
 *               copy with the patch reversed (.cache/bench/pristine-aedes, see pristineAedes())
 *  - mosquitto: /usr/sbin/mosquitto with a generated config in a temp dir
 *  - node-floor (only when asked for, connection scenarios only): a bare Node net server answering
 *               CONNECT and PINGREQ and nothing else (dist/bench/node-floor.js): what any broker on
 *               Node's net.Socket pays per connection
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, track } from '../test/helpers/process.js'

export type BrokerName = 'gateway' | 'aedes' | 'mosquitto' | 'node-floor'
/** The peers a compare run uses unless told otherwise. */
export const BROKERS: readonly BrokerName[] = ['gateway', 'aedes', 'mosquitto']
/** Every peer startBroker knows; node-floor is not a broker (connections only), so never a default. */
export const KNOWN_BROKERS: readonly BrokerName[] = [...BROKERS, 'node-floor']

export const BROKER_CORE = 1
export const LOADGEN_CORE = 0
export const MOSQUITTO = '/usr/sbin/mosquitto'
/** The node flags `npm start` runs the gateway with, read from scripts/start.sh's exec line (one source). */
export const GATEWAY_NODE_FLAGS: readonly string[] = (() => {
  const line = /^exec node (.*)dist\/app\/cli\.js/m.exec(readFileSync('scripts/start.sh', 'utf8'))
  if (!line) throw new Error('scripts/start.sh: no `exec node ... dist/app/cli.js` line')
  return line[1]!.split(' ').filter((a) => a !== '')
})()

/** The fd limit to ask for: 65536, or the hard limit if lower (raising it needs CAP_SYS_RESOURCE). */
export const FD_LIMIT: number = (() => {
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' })
  const hard = r.stdout.trim()
  return hard === 'unlimited' ? 65536 : Math.min(65536, Number(hard) || 1024)
})()

/** Spawns `cmd args` through sh with the fd limit raised and pinned to `core`; the pid is the command's (exec). */
export function spawnPinned (core: number, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn('sh', ['-c', `ulimit -n ${FD_LIMIT} && exec taskset -c ${core} "$@"`, 'sh', cmd, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  track(child)
  return child
}

/** Children are SIGKILLed if this process exits or is interrupted while they still run (one registry with the tests' helpers). */
export { track }

/** Calls `onLine` with each complete line `stream` delivers (the generators' JSON-lines protocol). */
export function onLines (stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = ''
  stream.on('data', (c: Buffer) => {
    buf += c.toString()
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      onLine(line)
    }
  })
}

/** Pins this (orchestrating) process to the load generator core, off the broker's core. */
export function pinSelf (): void {
  spawnSync('taskset', ['-p', '-c', String(LOADGEN_CORE), String(process.pid)], { stdio: 'ignore' })
}

export interface RunningBroker {
  name: BrokerName
  pid: number
  port: number
  /** MQTT over WebSocket (path /mqtt); not for mosquitto. */
  wsPort?: number
  /** The gateway's admin HTTP port (/metrics, /healthz); gateway only. */
  adminPort?: number
  child: ChildProcess
  /** stdout + stderr of the broker, for error messages. */
  output: () => string
  stop: () => Promise<void>
}

function procStatus (pid: number, key: string): string | undefined {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim()
}

/** Resident set size in KiB (VmRSS). */
export function rssKiB (pid: number): number {
  return Number.parseInt(procStatus(pid, 'VmRSS') ?? '0', 10)
}

/** User and system CPU time in seconds (/proc/PID/stat; throws once the process is gone). */
export function cpuTimes (pid: number, tid?: number): { user: number, sys: number } {
  // With `tid`: that thread of the process alone (e.g. a Node process's event loop: tid = pid).
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK }
}

/** CPU time (user + system) in seconds; the one reader of /proc/PID/stat for every bench. */
export function cpuSeconds (pid: number, tid?: number): number {
  const { user, sys } = cpuTimes(pid, tid)
  return user + sys
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** Busy and steal seconds of one core, or of all cores together without `core`, since boot (/proc/stat; busy = user+nice+system+irq+softirq). */
export function coreSeconds (core?: number): { busy: number, steal: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${core ?? ''} `))
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number)
  return { busy: ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0)) / CLK_TCK, steal: (f[7] ?? 0) / CLK_TCK }
}

export function cpusAllowed (pid: number): string {
  return procStatus(pid, 'Cpus_allowed_list') ?? '?'
}

export function fdLimitOf (pid: number): string {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8')
  return /^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? '?'
}

/** Resolves once an MQTT CONNECT on 127.0.0.1:port gets CONNACK 0 (or rejects after timeoutMs). */
async function waitMqtt (port: number, child: ChildProcess, output: () => string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  // CONNECT, MQTT 3.1.1, clean session, keepalive 10, client id "probe".
  const connect = Buffer.from([0x10, 17, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 10, 0, 5, 0x70, 0x72, 0x6f, 0x62, 0x65])
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`broker exited (${child.exitCode ?? child.signalCode}): ${output()}`)
    if (Date.now() > deadline) throw new Error(`broker not answering MQTT on ${port} within ${timeoutMs} ms: ${output()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      const timer = setTimeout(() => { s.destroy(); resolve(false) }, 1000)
      s.once('connect', () => s.write(connect))
      s.once('data', (d: Buffer) => { clearTimeout(timer); s.end(Buffer.from([0xe0, 0])); resolve(d[0] === 0x20 && d[3] === 0) })
      s.once('error', () => { clearTimeout(timer); resolve(false) })
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Resolves once 127.0.0.1:port accepts a TCP connection (the WebSocket listener opens after MQTT's). */
async function waitListening (port: number, child: ChildProcess, output: () => string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`broker exited (${child.exitCode ?? child.signalCode}): ${output()}`)
    if (Date.now() > deadline) throw new Error(`broker not listening on ${port} within ${timeoutMs} ms: ${output()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function stopChild (child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  try { process.kill(child.pid, 'SIGTERM') } catch { return }
  const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL') } catch { /* gone */ } }, graceMs)
  await exited
  clearTimeout(timer)
}

const AEDES_PATCH = 'patches/aedes+1.2.0.patch'
/** Packages plain Aedes loads that the project patches: plain Aedes gets them unpatched. */
const PATCHED_PACKAGES = [{ name: 'aedes', patch: AEDES_PATCH }, { name: 'mqtt-packet', patch: 'patches/mqtt-packet+9.0.2.patch' }, { name: 'aedes-persistence', patch: 'patches/aedes-persistence+11.0.0.patch' }]
const PRISTINE_ROOT = '.cache/bench/pristine-aedes'

/**
 * The entry file of an unpatched Aedes 1.2.0: node_modules/aedes, mqtt-packet and
 * aedes-persistence with this project's patches reversed (Debian's `patch`), rebuilt when a patch changes. Its
 * other dependencies resolve from the project's node_modules. Refuses to return a copy that
 * still carries a patch marker.
 */
export function pristineAedes (): string {
  const hash = createHash('sha256')
  for (const { name, patch } of PATCHED_PACKAGES) hash.update(readFileSync(patch)).update(readFileSync(`node_modules/${name}/package.json`))
  const stamp = hash.digest('hex')
  const dir = join(PRISTINE_ROOT, 'node_modules', 'aedes')
  const stampFile = join(PRISTINE_ROOT, '.stamp')
  if (!existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp) {
    rmSync(PRISTINE_ROOT, { recursive: true, force: true })
    mkdirSync(join(PRISTINE_ROOT, 'node_modules'), { recursive: true })
    for (const { name, patch } of PATCHED_PACKAGES) {
      const copy = join(PRISTINE_ROOT, 'node_modules', name)
      cpSync(`node_modules/${name}`, copy, { recursive: true })
      const reversed = spawnSync('patch', ['-R', '-p1', '-s', '-d', PRISTINE_ROOT, '-i', join(process.cwd(), patch)], { encoding: 'utf8' })
      if (reversed.error || reversed.status !== 0) throw new Error(`cannot reverse ${patch} for the plain Aedes peer (is Debian's "patch" installed?): ${reversed.error?.message ?? reversed.stderr}`)
      const marked = spawnSync('grep', ['-rl', 'mqtt-gateway patch', copy], { encoding: 'utf8' })
      if (marked.stdout.trim() !== '') throw new Error(`reversing ${patch} left patched files: ${marked.stdout.trim()}`)
    }
    writeFileSync(stampFile, stamp)
  }
  return join(process.cwd(), dir, 'aedes.js')
}

export function mosquittoConfig (port: number): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    // Large enough that the QoS 1 scenarios never drop (a paused subscriber queues everything).
    'max_queued_messages 10000000',
    'max_queued_bytes 0',
    // As the gateway at log level warn: no per-connection log lines.
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    ''
  ].join('\n')
}

export async function startBroker (name: BrokerName): Promise<RunningBroker> {
  const port = await freePort()
  let child: ChildProcess
  let cleanup = (): void => {}
  let wsPort: number | undefined
  let adminPort: number | undefined
  if (name === 'gateway') {
    wsPort = await freePort()
    adminPort = await freePort()
    const env = {
      ...process.env,
      MQGW_LOG_LEVEL: 'warn',
      MQGW_MQTT_HOST: '127.0.0.1',
      MQGW_MQTT_PORT: String(port),
      MQGW_WS_HOST: '127.0.0.1',
      MQGW_WS_PORT: String(wsPort),
      MQGW_ADMIN_PORT: String(adminPort),
      // Every load generator connection comes from 127.0.0.1 and Mosquitto has no such cap:
      // the per-address bound on connections before CONNACK would refuse the bench's bursts.
      MQGW_MAX_UNAUTHENTICATED_PER_ADDRESS: '0'
    }
    // As `npm start` runs it (scripts/start.sh: its one V8 flag, GATEWAY_NODE_FLAGS), plus
    // BENCH_GATEWAY_NODE_ARGS for profiling (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    // BENCH_GATEWAY_CONFIG: another configuration file, to compare a setting (default: the shipped defaults).
    const extra = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')
    child = spawnPinned(BROKER_CORE, process.execPath, [...GATEWAY_NODE_FLAGS, ...extra, join(process.cwd(), 'dist/app/cli.js'), '--config', process.env.BENCH_GATEWAY_CONFIG ?? 'config/gateway.yaml'], env)
  } else if (name === 'aedes') {
    wsPort = await freePort()
    child = spawnPinned(BROKER_CORE, process.execPath, [join(process.cwd(), 'dist/bench/plain-aedes.js'), String(port), pristineAedes(), String(wsPort)])
  } else if (name === 'node-floor') {
    child = spawnPinned(BROKER_CORE, process.execPath, [join(process.cwd(), 'dist/bench/node-floor.js'), String(port)])
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-compare-mosquitto-'))
    const file = join(dir, 'mosquitto.conf')
    writeFileSync(file, mosquittoConfig(port))
    cleanup = () => rmSync(dir, { recursive: true, force: true })
    child = spawnPinned(BROKER_CORE, MOSQUITTO, ['-c', file])
  }
  let out = ''
  child.stdout!.on('data', (c: Buffer) => { out = (out + c.toString()).slice(-20000) })
  child.stderr!.on('data', (c: Buffer) => { out = (out + c.toString()).slice(-20000) })
  const output = (): string => out
  try {
    await waitMqtt(port, child, output)
    if (wsPort !== undefined) await waitListening(wsPort, child, output)
  } catch (err) {
    await stopChild(child)
    cleanup()
    throw err
  }
  return {
    name,
    pid: child.pid!,
    port,
    ...(wsPort === undefined ? {} : { wsPort }),
    ...(adminPort === undefined ? {} : { adminPort }),
    child,
    output,
    stop: async () => { await stopChild(child); cleanup() }
  }
}

export interface LoadgenRun<T> {
  result: T
  /** Broker CPU seconds between the loadgen's window-start and window-end events. */
  brokerCpuSeconds?: number
  /**
   * Over the same window: busy seconds of the broker core not spent by the broker, and of the
   * load generator core not spent by the load generator or this process (other work on the
   * machine), and steal seconds of both cores. Load generator CPU comes from its own report.
   */
  cores?: { brokerCoreBusy: number, loadgenCoreBusy: number, orchestrator: number, steal: number }
  /** Wall seconds between those events, as seen here. */
  windowSeconds?: number
  /** Values read when the loadgen reported "connected" (idle scenario). */
  atConnected?: Record<string, number>
}

/**
 * Runs bench/loadgen-scenarios.js for one job, pinned to the load generator core, and samples the
 * broker's CPU time at the window events. `onConnected` runs when the loadgen holds its idle
 * connections; the loadgen is then told to release them.
 */
export function runLoadgen<T> (job: object & { timeLimitMs: number }, broker: RunningBroker, onConnected?: () => Promise<Record<string, number>>): Promise<LoadgenRun<T>> {
  return new Promise((resolve, reject) => {
    const child = spawnPinned(LOADGEN_CORE, process.execPath, [join(process.cwd(), 'dist/bench/loadgen-scenarios.js'), JSON.stringify(job)])
    let err = ''
    let result: T | undefined
    const run: Partial<LoadgenRun<T>> = {}
    let cpu0 = 0
    let t0 = 0
    let c0 = { b: coreSeconds(BROKER_CORE), l: coreSeconds(LOADGEN_CORE), self: process.cpuUsage() }
    const timer = setTimeout(() => { if (child.pid !== undefined) try { process.kill(child.pid, 'SIGKILL') } catch { /* gone */ } }, job.timeLimitMs + 5000)
    child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-20000) })
    onLines(child.stdout!, (line) => {
        const msg = JSON.parse(line) as { event: string } & Record<string, unknown>
        try {
          if (msg.event === 'window-start') {
            cpu0 = cpuSeconds(broker.pid)
            t0 = performance.now()
            c0 = { b: coreSeconds(BROKER_CORE), l: coreSeconds(LOADGEN_CORE), self: process.cpuUsage() }
          }
          if (msg.event === 'window-end') {
            run.brokerCpuSeconds = cpuSeconds(broker.pid) - cpu0
            run.windowSeconds = (performance.now() - t0) / 1000
            const b = coreSeconds(BROKER_CORE)
            const l = coreSeconds(LOADGEN_CORE)
            const self = process.cpuUsage(c0.self)
            run.cores = { brokerCoreBusy: b.busy - c0.b.busy, loadgenCoreBusy: l.busy - c0.l.busy, orchestrator: (self.user + self.system) / 1e6, steal: b.steal - c0.b.steal + l.steal - c0.l.steal }
          }
        } catch { /* broker gone: reported by the caller */ }
        if (msg.event === 'connected') {
          const release = (): void => { child.stdin!.write('release\n') }
          if (onConnected === undefined) release()
          else onConnected().then((v) => { run.atConnected = v; release() }, (e: unknown) => { err += String(e); release() })
        }
        if (msg.event === 'result') { const { event: _e, ...rest } = msg; result = rest as T }
    })
    // 'close', not 'exit': 'exit' may come before the last stdout data (the result) was read.
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0 || result === undefined) reject(new Error(`loadgen ${JSON.stringify(job)} exited ${code ?? signal}: ${err}`))
      else resolve({ ...run, result })
    })
  })
}
