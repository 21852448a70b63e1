/**
 * bench/connections: how many idle MQTT connections one machine holds, and what each costs.
 *
 *   npm run bench -- connections [--max=250000] [--steps=10000,15000,100000,...]
 *        [--brokers=mosquitto,gateway] [--keepalive=60] [--window=20] [--time-budget=2400]
 *        [--mem-floor-gib=3] [--inflight=100] [--inflight-total=400] [--per-process=18000]
 *
 * Connections are added step by step (held across steps) by Go idle generators
 * (bench/loadgen-go/idle.go, one epoll loop per process, at most --per-process connections
 * each, every process from its own two loopback source addresses 127.20.<g>.2/.3), against
 * (a) the gateway: P Redis-mode processes, P = ceil(N / --per-process) (a process may hold at
 * most 20,000 descriptors here), and (b) one Mosquitto (the same limit, which it cannot pass:
 * one process). At each step: RSS per connection of the broker processes (VmRSS now minus
 * before connecting), kernel socket memory (/proc/net/sockstat, Slab), connects/s, connect p99,
 * the CPU keepalive costs (broker CPU over --window seconds of idle connections each pinging
 * every --keepalive s), the generators' RSS per connection. Stops at the first limit and names
 * it. Prints a table and writes bench/results/connections.json.
 */
import { readFileSync } from 'node:fs'
import { commandFlags, report } from './lib.js'
import {
  buildLoadgen, cpuSeconds, fdCount, fileHandles, gatewayFleet, Generator, histPercentile, kernelLimits, meminfo,
  mosquittoFleet, PAGE_SIZE, rssKiB, sockstat, type Fleet, type UpLine
} from './connections-fleet.js'

const { flags, num } = commandFlags()
const MAX = num('max', 1_000_000)
const STEPS = (flags.get('steps') ?? '10000,15000,100000,250000,500000,1000000').split(',').map(Number).filter((n) => n > 0 && n <= MAX)
const MOSQUITTO_STEPS = (flags.get('mosquitto-steps') ?? '10000,15000').split(',').map(Number).filter((n) => n > 0 && n <= MAX)
const BROKERS = (flags.get('brokers') ?? 'mosquitto,gateway').split(',')
const KEEPALIVE_S = num('keepalive', 60)
const WINDOW_S = num('window', 20)
const TIME_BUDGET_S = num('time-budget', 2400)
const MEM_FLOOR_KIB = num('mem-floor-gib', 3) * 1024 * 1024
const INFLIGHT = num('inflight', 100)
// CONNECTs in flight over all of a step's generators: each gets min(--inflight, this / generators).
// More only queue in the gateways' accept backlogs: under CPU contention a 100-per-generator
// burst against 9 processes timed out 0.7 % of the connects (15 s) at 250k.
const INFLIGHT_TOTAL = num('inflight-total', 400)
const PER_PROCESS = num('per-process', 18000)
const started = Date.now()
const secondsLeft = (): number => TIME_BUDGET_S - (Date.now() - started) / 1000
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

type Row = Record<string, string | number>
const rows: Row[] = []
const limits: string[] = []
const maxHeld = (broker: string): number => Math.max(0, ...rows.filter((r) => r.broker === broker).map((r) => Number(r.N)))
const raw: Array<Record<string, unknown>> = []
const memAtStart = meminfo()
const sockAtStart = sockstat()
let generatorSerial = 0

/** Adds connections to the fleet until `n` are held; returns the step's row, or the limit that stopped it. */
/** CPU seconds per second of one idle broker process without connections (subtracted from keepalive CPU). */
let idleCpuPerProc = 0

async function step (fleet: Fleet, gens: Generator[], ups: Map<Generator, UpLine>, loads: number[], n: number): Promise<{ row?: Row, limit?: string }> {
  const heldBefore = [...ups.values()].reduce((a, u) => a + u.held, 0)
  const delta = n - heldBefore
  if (delta <= 0) return {}
  // Plan: chunks of at most PER_PROCESS per generator, never more than PER_PROCESS per broker process.
  const chunks: Array<{ proc: number, count: number }> = []
  for (let left = delta, proc = 0; left > 0; proc++) {
    if (proc >= fleet.processes.length && !await fleet.grow(proc + 1)) {
      return { limit: `one ${fleet.name} process holds at most ${fleet.perProcess} connections (20,000 descriptors per process) and ${fleet.name} runs as one process` }
    }
    const room = fleet.perProcess - (loads[proc] ?? 0)
    if (room <= 0) continue
    const count = Math.min(room, left)
    chunks.push({ proc, count })
    loads[proc] = (loads[proc] ?? 0) + count
    left -= count
  }
  const upTimeoutS = Math.max(30, Math.min(secondsLeft() - WINDOW_S - 30, Math.max(120, delta / 200)))
  if (upTimeoutS <= 30 && secondsLeft() < WINDOW_S + 60) return { limit: `time budget (--time-budget=${TIME_BUDGET_S} s)` }
  const inflight = Math.max(5, Math.min(INFLIGHT, Math.floor(INFLIGHT_TOTAL / chunks.length)))
  const t0 = performance.now()
  const fresh = chunks.map(({ proc, count }) => {
    const g = generatorSerial++
    if (g >= 250) throw new Error('more than 250 generator processes: source addresses 127.20.<g>.x exhausted')
    return new Generator({ n: count, targets: [fleet.processes[proc]!.target], sources: [`127.20.${g}.2`, `127.20.${g}.3`], prefix: `${fleet.name}-${g}`, keepaliveS: KEEPALIVE_S, inflight, upTimeoutS: Math.round(upTimeoutS), holdMaxS: Math.round(TIME_BUDGET_S + 600) })
  })
  gens.push(...fresh)
  // Watch available memory while connecting: below the floor, stop the step.
  let memLow: string | undefined
  const watch = setInterval(() => {
    const avail = meminfo().availableKiB
    if (avail < MEM_FLOOR_KIB && memLow === undefined) {
      memLow = `memory: ${(avail / 1048576).toFixed(1)} GiB available < floor ${MEM_FLOOR_KIB / 1048576} GiB while connecting`
      for (const g of fresh) g.child.kill('SIGTERM')
    }
  }, 1000)
  let freshUps: UpLine[]
  try {
    freshUps = await Promise.all(fresh.map((g) => g.up))
  } catch (err) {
    return { limit: memLow ?? `generator: ${(err as Error).message}` }
  } finally {
    clearInterval(watch)
  }
  const connectS = (performance.now() - t0) / 1000
  fresh.forEach((g, i) => ups.set(g, freshUps[i]!))
  const connected = freshUps.reduce((a, u) => a + u.connected, 0)
  const failed = freshUps.reduce((a, u) => a + u.failed, 0)
  const failedBy: Record<string, number> = {}
  for (const u of freshUps) for (const [k, v] of Object.entries(u.failedBy)) failedBy[k] = (failedBy[k] ?? 0) + v
  const p99 = histPercentile(freshUps.map((u) => u.latencyHist), 99)
  const p50 = histPercentile(freshUps.map((u) => u.latencyHist), 50)

  await sleep(5000) // settle: the last CONNACKs' garbage, the sweep of the sessions' Redis writes
  const held0 = await Promise.all(gens.map((g) => g.stats()))
  const pids = fleet.processes.map((p) => p.pid)
  const cpu0 = pids.map(cpuSeconds)
  const w0 = performance.now()
  await sleep(WINDOW_S * 1000)
  const held1 = await Promise.all(gens.map((g) => g.stats()))
  const windowS = (performance.now() - w0) / 1000
  const cpu = pids.map(cpuSeconds).reduce((a, c, i) => a + c - cpu0[i]!, 0)
  const pings = held1.reduce((a, s, i) => a + s.pingsSent - held0[i]!.pingsSent, 0)
  const held = held1.reduce((a, s) => a + s.held, 0)
  const lost = held1.reduce((a, s) => a + s.lostWhileHeld, 0)
  const missing = held1.reduce((a, s) => a + s.pingrespMissing, 0)
  const rssNow = fleet.processes.reduce((a, p) => a + rssKiB(p.pid), 0)
  const rssBefore = fleet.processes.reduce((a, p) => a + p.rssBeforeKiB, 0)
  const genRss = held1.reduce((a, s, i) => a + s.rssKiB - ups.get(gens[i]!)!.rssBeforeKiB, 0)
  const ss = sockstat()
  const mem = meminfo()
  const files = fileHandles()
  const fdMax = Math.max(...pids.map(fdCount))
  const row: Row = {
    broker: fleet.name,
    N: held,
    procs: fleet.processes.length,
    'KiB/conn': (rssNow - rssBefore) / Math.max(1, held),
    'RSS MiB': rssNow / 1024,
    'tcp mem MiB': ss.tcpMemPages * PAGE_SIZE / 1048576,
    'sockets': ss.socketsUsed,
    'slab KiB/conn': (mem.slabKiB - memAtStart.slabKiB) / Math.max(1, held),
    'conn/s': connected / connectS,
    'p50 ms': p50,
    'p99 ms': p99,
    'ka cpu %': cpu / windowS * 100,
    'µs/ping': pings > 0 ? Math.max(0, cpu - idleCpuPerProc * pids.length * windowS) * 1e6 / pings : 0,
    'gen KiB/conn': genRss / Math.max(1, held),
    'fd max': fdMax,
    failed,
    lost,
    'ping miss': missing,
    'avail GiB': mem.availableKiB / 1048576
  }
  raw.push({ ...row, step: n, connectSeconds: connectS, inflightPerGenerator: inflight, nfConntrackCount: conntrackCount(), failedBy, pingsInWindow: pings, windowS, cpuSeconds: cpu, sockstat: ss, sockstatAtStart: sockAtStart, fileHandles: files, helpers: fleet.helpers(), perProcess: fleet.processes.map((p) => ({ pid: p.pid, rssKiB: rssKiB(p.pid), rssBeforeKiB: p.rssBeforeKiB, fds: fdCount(p.pid) })), generators: freshUps.map((u) => ({ connected: u.connected, failedBy: u.failedBy, p99: u.latencyMs.p99, connectsPerSec: u.connectsPerSec })) })
  process.stderr.write(`connections: ${fleet.name} ${held} held: ${JSON.stringify(row)}\n`)
  // The first limit, named.
  if (failedBy.emfile !== undefined) return { row, limit: `EMFILE (descriptor limit) on ${failedBy.emfile} connects` }
  if (failed > 0.005 * delta) return { row, limit: `connect failures ${(failed / delta * 100).toFixed(2)} % > 0.5 % (${JSON.stringify(failedBy)})` }
  if (lost > 0.005 * held) return { row, limit: `${lost} connections lost while held` }
  if (fdMax > 19500) return { row, limit: `a process uses ${fdMax} descriptors (limit 20,000)` }
  if (files.allocated > 0.95 * files.max) return { row, limit: `fs.file-max: ${files.allocated} of ${files.max} file handles allocated` }
  // Generators that stopped opening at their up-timeout (derived from the time budget) ended the
  // step short with few failures: that is the time budget, not "none".
  const unopened = freshUps.reduce((a, u) => a + u.wanted - u.attempted, 0)
  if (unopened > 0) return { row, limit: `time budget (--time-budget=${TIME_BUDGET_S} s): the generators' up-timeout left ${unopened} of the step's connections unopened` }
  return { row }
}

function conntrackCount (): number | undefined {
  try { return Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_count', 'utf8')) } catch { return undefined }
}

/** The memory the next step would need, from what the held connections cost so far (everything on the machine). */
function memoryFit (held: number, next: number, newProcs: number): number {
  const now = meminfo().availableKiB
  const perConn = held > 0 ? Math.max(8, (memAtStart.availableKiB - now) / held) : 40
  const fits = Math.floor((now - MEM_FLOOR_KIB - newProcs * 100 * 1024) / (perConn * 1.15))
  return Math.min(next, held + Math.max(0, fits))
}

async function runFleet (fleet: Fleet, steps: number[]): Promise<void> {
  const gens: Generator[] = []
  const ups = new Map<Generator, UpLine>()
  const loads: number[] = []
  let limit = `none up to ${steps.at(-1)} (the last step asked for)`
  try {
    // The CPU one broker process spends with no connections (timers, $SYS, Redis node key):
    // what keepalive costs is the rest.
    await fleet.grow(1)
    const pid = fleet.processes[0]!.pid
    // After its start-up work (JIT, first $SYS publish, first sweep): measured from the first
    // second it read 3 % of a core, which at 100k connections in 6 processes left ~0 µs per ping.
    await sleep(5000)
    const c0 = cpuSeconds(pid)
    const t0 = performance.now()
    await sleep(Math.min(WINDOW_S, 20) * 1000)
    idleCpuPerProc = (cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)
    raw.push({ broker: fleet.name, idleCpuPercentPerProcess: idleCpuPerProc * 100 })
    for (let n of steps) {
      const held = [...ups.values()].reduce((a, u) => a + u.held, 0)
      const fit = memoryFit(held, n, Math.max(0, Math.ceil(n / fleet.perProcess) - fleet.processes.length))
      let memoryLimit: string | undefined
      if (fit < n) {
        memoryLimit = `memory budget: ${n} connections would leave less than ${MEM_FLOOR_KIB / 1048576} GiB available (${(meminfo().availableKiB / 1048576).toFixed(1)} GiB now)`
        const rounded = Math.floor(fit / 10000) * 10000
        if (rounded < held + 10000) { limit = memoryLimit; break }
        n = rounded // the largest step that fits, then stop
      }
      if (secondsLeft() < WINDOW_S + 90) { limit = `time budget (--time-budget=${TIME_BUDGET_S} s)`; break }
      const r = await step(fleet, gens, ups, loads, n)
      if (r.row !== undefined) rows.push(r.row)
      if (r.limit !== undefined) { limit = r.limit; break }
      if (memoryLimit !== undefined) { limit = memoryLimit; break }
    }
    if (fleet.name === 'mosquitto' && rows.at(-1)?.broker === 'mosquitto' && limit.startsWith('none')) {
      limit = 'not measured past 15k: Mosquitto is one process (no multi-process mode), and a process may hold at most 20,000 descriptors here'
    }
  } catch (err) {
    limit = `error: ${(err as Error).message}`
  } finally {
    const finals = await Promise.all(gens.map((g) => g.stop()))
    await fleet.stop()
    raw.push({ broker: fleet.name, limit, finals: { pingsSent: finals.reduce((a, f) => a + (f?.pingsSent ?? 0), 0), pingrespMissing: finals.reduce((a, f) => a + (f?.pingrespMissing ?? 0), 0), lostWhileHeld: finals.reduce((a, f) => a + (f?.lostWhileHeld ?? 0), 0) } })
    process.stderr.write(`connections: ${fleet.name} stopped: ${limit}\n`)
    limits.push(`${fleet.name}: largest N held ${maxHeld(fleet.name)}; stopped by: ${limit}`)
  }
}

buildLoadgen()
const kernel = kernelLimits()
process.stdout.write(`kernel and process limits:\n${Object.entries(kernel).map(([k, v]) => `  ${k} = ${v}`).join('\n')}\n`)
for (const name of BROKERS) {
  if (name === 'mosquitto') await runFleet(await mosquittoFleet(PER_PROCESS), MOSQUITTO_STEPS)
  else if (name === 'gateway') await runFleet(await gatewayFleet(PER_PROCESS), STEPS)
  else throw new Error(`--brokers: unknown broker ${name} (gateway, mosquitto)`)
}
report('connections', rows, { flags: Object.fromEntries(flags), kernelLimits: kernel, limits, memAtStart, steps: raw })
process.stdout.write(`\n${limits.join('\n')}\nka cpu %: the broker processes' CPU (% of one core) over --window=${WINDOW_S} s of held connections pinging every ${KEEPALIVE_S} s; µs/ping: that CPU minus each process's idle CPU without connections, per PINGREQ\n`)
process.exit(0)
