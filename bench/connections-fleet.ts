/**
 * The processes of bench/connections: the gateway fleet (P Redis-mode gateway processes on one
 * redis-server, or one Mosquitto), the Go idle generators (bench/loadgen-go, mode idle), and
 * what /proc says about them and the kernel. Every child is tracked by pid and killed on
 * every path (stop, error, exit, SIGINT/SIGTERM).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnGateway, type GatewayProcess } from '../test/helpers/process.js'
import { TestRedis } from '../test/helpers/redis.js'
import { cpuSeconds as processCpuSeconds, startBroker, track, type RunningBroker } from './brokers.js'


// ---- /proc readers -------------------------------------------------------------------------

export const PAGE_SIZE = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096

/** VmRSS in KiB (0 when the process is gone). */
export function rssKiB (pid: number): number {
  try {
    return Number(/^VmRSS:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
  } catch { return 0 }
}

/** user + system CPU seconds of a process; 0 once it is gone. */
export function cpuSeconds (pid: number): number {
  try { return processCpuSeconds(pid) } catch { return 0 }
}

/** Open descriptors of a process. */
export function fdCount (pid: number): number {
  try { return readdirSync(`/proc/${pid}/fd`).length } catch { return 0 }
}

/** /proc/net/sockstat: TCP sockets in use, orphans, time-wait, and TCP memory in pages. */
export function sockstat (): { tcpInuse: number, tcpOrphan: number, tcpTw: number, tcpMemPages: number, socketsUsed: number } {
  const text = readFileSync('/proc/net/sockstat', 'utf8')
  const tcp = /^TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)/m.exec(text)
  const used = /^sockets: used (\d+)/m.exec(text)
  return { tcpInuse: Number(tcp?.[1] ?? 0), tcpOrphan: Number(tcp?.[2] ?? 0), tcpTw: Number(tcp?.[3] ?? 0), tcpMemPages: Number(tcp?.[5] ?? 0), socketsUsed: Number(used?.[1] ?? 0) }
}

/** /proc/meminfo fields in KiB. */
export function meminfo (): { availableKiB: number, slabKiB: number } {
  const text = readFileSync('/proc/meminfo', 'utf8')
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { availableKiB: field('MemAvailable'), slabKiB: field('Slab') }
}

/** Allocated file handles and the system maximum (fs.file-nr, fs.file-max). */
export function fileHandles (): { allocated: number, max: number } {
  const [allocated, , max] = readFileSync('/proc/sys/fs/file-nr', 'utf8').trim().split(/\s+/).map(Number)
  return { allocated: allocated ?? 0, max: max ?? 0 }
}

/** The kernel settings that can stop a million-connection run, as read from /proc/sys. */
export function kernelLimits (): Record<string, string> {
  const read = (p: string): string => existsSync(p) ? readFileSync(p, 'utf8').trim().replace(/\s+/g, ' ') : '(absent)'
  const hard = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()
  return {
    'ulimit -Hn (descriptors per process)': hard,
    'fs.file-max': read('/proc/sys/fs/file-max'),
    'fs.nr_open': read('/proc/sys/fs/nr_open'),
    'net.core.somaxconn': read('/proc/sys/net/core/somaxconn'),
    'net.ipv4.tcp_max_syn_backlog': read('/proc/sys/net/ipv4/tcp_max_syn_backlog'),
    'net.ipv4.tcp_max_orphans': read('/proc/sys/net/ipv4/tcp_max_orphans'),
    'net.ipv4.tcp_mem (pages)': read('/proc/sys/net/ipv4/tcp_mem'),
    'net.ipv4.ip_local_port_range': read('/proc/sys/net/ipv4/ip_local_port_range'),
    'net.netfilter.nf_conntrack_max': read('/proc/sys/net/netfilter/nf_conntrack_max'),
    'vm.max_map_count': read('/proc/sys/vm/max_map_count')
  }
}

// ---- brokers -------------------------------------------------------------------------------

/** One broker process as the bench sees it: a pid to measure and host:port to connect to. */
export interface BrokerProcess { pid: number, target: string, rssBeforeKiB: number }

/** The broker side of a run: grows to hold more connections, and stops everything it started. */
export interface Fleet {
  name: string
  processes: BrokerProcess[]
  /** Connections one process is given at most (descriptor limit 20,000 minus its own). */
  perProcess: number
  /** Makes sure at least `count` processes run. False if this fleet cannot grow (Mosquitto). */
  grow: (count: number) => Promise<boolean>
  /** Extra processes whose memory belongs to the run (Redis), for the JSON. */
  helpers: () => Record<string, number>
  stop: () => Promise<void>
}

async function settledRss (pid: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1000))
  return rssKiB(pid)
}

/**
 * The gateway as P separate processes on this machine, each its own node (Redis mode, one
 * redis-server started here), each on its own port: the way to pass one process's 20,000
 * descriptors until the `workers` setting (node:cluster, one shared port) is on main. Switching
 * to it changes only this function.
 */
export async function gatewayFleet (perProcess: number): Promise<Fleet> {
  // No append-only file: the run measures connections, not durability, and Redis must not be
  // the bottleneck of a connect storm.
  const redis = new TestRedis(['--appendonly', 'no', '--maxclients', '10000'])
  await redis.start()
  const gateways: GatewayProcess[] = []
  const processes: BrokerProcess[] = []
  // config/gateway.yaml (the defaults) with the one change Redis mode requires: a $SYS tree per node.
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-connections-'))
  const config = join(dir, 'gateway.yaml')
  const defaults = readFileSync('config/gateway.yaml', 'utf8')
  const perNode = defaults.replace(/^(\s*prefix:\s*)\$SYS\/broker\b/m, '$1$$SYS/brokers/$${node}')
  if (perNode === defaults) throw new Error('config/gateway.yaml: no sys.prefix line to make per node')
  writeFileSync(config, perNode)
  return {
    name: 'gateway',
    processes,
    perProcess,
    grow: async (count) => {
      while (gateways.length < count) {
        const k = gateways.length
        // Redis mode by environment; as `npm start` runs it, no node flags.
        const gw = await spawnGateway(['--config', config], {
          MQGW_NODE_ID: `conn-${k}`,
          MQGW_PERSISTENCE_TYPE: 'redis',
          MQGW_REDIS_URL: redis.url,
          MQGW_LOG_LEVEL: 'warn',
          // Every generator connection comes from a few loopback addresses: the per-address cap on
          // connections before CONNACK would refuse the bench's connect bursts.
          MQGW_MAX_UNAUTHENTICATED_PER_ADDRESS: '0'
        }, 'readyz', 30000)
        track(gw.child)
        gateways.push(gw)
        processes.push({ pid: gw.child.pid!, target: `127.0.0.1:${gw.ports.mqtt}`, rssBeforeKiB: await settledRss(gw.child.pid!) })
      }
      return true
    },
    helpers: () => ({ redisRssKiB: redisPid(redis.port) === undefined ? 0 : rssKiB(redisPid(redis.port)!) }),
    stop: async () => {
      await Promise.all(gateways.map(async (gw) => {
        if (gw.child.exitCode === null && gw.child.signalCode === null) {
          const timer = setTimeout(() => gw.child.kill('SIGKILL'), 15000)
          gw.child.kill('SIGTERM')
          await gw.exited
          clearTimeout(timer)
        }
      }))
      await redis.stop('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The pid of the redis-server listening on `port` (TestRedis keeps its child private). */
function redisPid (port: number): number | undefined {
  const r = spawnSync('pgrep', ['-f', `redis-server 127.0.0.1:${port}`], { encoding: 'utf8' })
  const pid = Number(r.stdout.trim().split('\n')[0])
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/** One Mosquitto process (bench/brokers.ts, as bench/compare runs it). It cannot grow: it is one process. */
export async function mosquittoFleet (perProcess: number): Promise<Fleet> {
  const broker: RunningBroker = await startBroker('mosquitto')
  const processes: BrokerProcess[] = [{ pid: broker.pid, target: `127.0.0.1:${broker.port}`, rssBeforeKiB: await settledRss(broker.pid) }]
  return {
    name: 'mosquitto',
    processes,
    perProcess,
    grow: async (count) => count <= 1,
    helpers: () => ({}),
    stop: () => broker.stop()
  }
}

// ---- the Go idle generator -----------------------------------------------------------------

export const LOADGEN = join(process.cwd(), '.cache/go/bin/mqgw-loadgen')

/** Builds bench/loadgen-go (scripts/loadgen.sh: a no-op when nothing changed). */
export function buildLoadgen (): void {
  const r = spawnSync('sh', ['scripts/loadgen.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`scripts/loadgen.sh failed: ${r.stderr}`)
}

export interface UpLine {
  wanted: number, attempted: number, connected: number, held: number, failed: number
  failedBy: Record<string, number>, connectsPerSec: number, elapsedS: number
  latencyMs: { p50: number, p99: number, max: number }
  latencyHist: { baseMs: number, ratio: number, counts: Record<string, number> }
  rssKiB: number, rssBeforeKiB: number
}
export interface CounterLine {
  held: number, lostWhileHeld: number, pingsSent: number, pingresps: number, pingrespMissing: number
  pingOutstanding: number, unexpectedPackets: number, rssKiB: number
}

/** One running `mqgw-loadgen idle` process. */
export class Generator {
  readonly child: ChildProcess
  readonly up: Promise<UpLine>
  /** The exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
  #waiting: Array<(c: CounterLine) => void> = []
  #final: Promise<CounterLine>
  #err = ''

  /** `extra`: more `mqgw-loadgen idle` flags (bench/keepalive: -ping-period). */
  constructor (readonly opts: { n: number, targets: string[], sources: string[], prefix: string, keepaliveS: number, inflight: number, upTimeoutS: number, holdMaxS: number }, extra: string[] = []) {
    this.child = spawn(LOADGEN, ['idle', '-n', String(opts.n), '-targets', opts.targets.join(','), '-sources', opts.sources.join(','),
      '-prefix', opts.prefix, '-keepalive', String(opts.keepaliveS), '-inflight', String(opts.inflight),
      '-up-timeout', String(opts.upTimeoutS), '-hold-max', String(opts.holdMaxS), ...extra], { stdio: ['pipe', 'pipe', 'pipe'] })
    track(this.child)
    // 'close', not 'exit': 'exit' can come before the last stdout data is read, which lost
    // final lines under load (the rejections below would win over the line's resolve).
    this.exited = new Promise((resolve) => this.child.once('close', (code) => resolve(code)))
    let resolveUp: (u: UpLine) => void = () => {}
    let resolveFinal: (c: CounterLine) => void = () => {}
    this.up = new Promise((resolve, reject) => {
      resolveUp = resolve
      this.child.once('close', (code, signal) => reject(new Error(`generator ${opts.prefix} exited (${code ?? signal}) before it was up: ${this.#err}`)))
    })
    this.#final = new Promise((resolve, reject) => {
      resolveFinal = resolve
      this.child.once('close', (code, signal) => reject(new Error(`generator ${opts.prefix} exited (${code ?? signal}) without a final line: ${this.#err}`)))
    })
    this.up.catch(() => {})
    this.#final.catch(() => {})
    this.child.stderr!.on('data', (c: Buffer) => { this.#err = (this.#err + c.toString()).slice(-4000) })
    let buf = ''
    this.child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { event: string }
        buf = buf.slice(nl + 1)
        if (msg.event === 'up') resolveUp(msg as unknown as UpLine)
        if (msg.event === 'stats') this.#waiting.shift()?.(msg as unknown as CounterLine)
        if (msg.event === 'final') resolveFinal(msg as unknown as CounterLine)
      }
    })
  }

  /** The generator's counters now (it answers a "stats" line on stdin). */
  stats (timeoutMs = 10000): Promise<CounterLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`generator ${this.opts.prefix}: no stats within ${timeoutMs} ms`)), timeoutMs)
      this.#waiting.push((c) => { clearTimeout(timer); resolve(c) })
      this.child.stdin!.write('stats\n')
    })
  }

  /** SIGTERM: DISCONNECT and close every connection; resolves with the final counters once it exited (SIGKILL after a bound). */
  async stop (timeoutMs = 15000): Promise<CounterLine | undefined> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return undefined
    const timer = setTimeout(() => { try { this.child.kill('SIGKILL') } catch { /* gone */ } }, timeoutMs)
    this.child.kill('SIGTERM')
    try {
      const final = await this.#final
      await this.exited
      return final
    } catch { return undefined } finally { clearTimeout(timer) }
  }
}

/** Percentile from merged log-spaced histograms (the generators' latencyHist). */
export function histPercentile (hists: UpLine['latencyHist'][], p: number): number {
  const counts = new Map<number, number>()
  let base = 0.01
  let ratio = 1.05
  for (const h of hists) {
    base = h.baseMs
    ratio = h.ratio
    for (const [k, v] of Object.entries(h.counts)) counts.set(Number(k), (counts.get(Number(k)) ?? 0) + v)
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  if (total === 0) return 0
  let seen = 0
  for (const k of [...counts.keys()].sort((a, b) => a - b)) {
    seen += counts.get(k)!
    // The bucket's upper edge: an upper bound within one bucket (5 %).
    if (seen >= p / 100 * total) return base * ratio ** (k + 1)
  }
  return 0
}
