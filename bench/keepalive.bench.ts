/**
 * bench/keepalive: what keepalive and a process's background work cost one broker process
 * holding idle connections (issue #14: at ~1M connections in 56 processes CPU was the limit).
 *
 *   npm run bench -- keepalive [--conns=15000] [--keepalive=60] [--ping-period=5] [--window=20]
 *        [--modes=memory,redis] [--brokers=gateway,mosquitto] [--rounds=1]
 *
 * Per round, per broker (gateway in each of --modes, then Mosquitto), one fresh broker process:
 *  1. empty: its CPU over --window/2 s with no connections (after a 5 s settle);
 *  2. idle: --conns connections from one Go idle generator (bench/loadgen-go, mode idle,
 *     CONNECT keepalive --keepalive s) that never ping (-ping-period 0): the process's CPU
 *     over --window s (the timer wheel, $SYS, Redis heartbeats and sweeps, per held connection);
 *  3. pinging: the generator is stopped, a new one opens --conns connections that each send a
 *     PINGREQ every --ping-period s (shorter than the keepalive so a window holds many pings):
 *     the process's CPU over --window s; µs per PINGREQ = (this CPU - idle CPU rate x window)
 *     / PINGREQs answered in the window. The generator's CPU per ping is printed too.
 * Each line prints `uptime`'s load: the machine is shared. Writes bench/results/keepalive.json.
 * The projection: PINGREQs per second at N connections = N / 60 (keepalive 60 s), times µs per ping.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { commandFlags, report } from './lib.js'
import { startBroker } from './brokers.js'
import { buildLoadgen, cpuSeconds, gatewayFleet, Generator, rssKiB } from './connections-fleet.js'
import { spawnGateway } from '../test/helpers/process.js'
import { track } from './brokers.js'

const { flags, num } = commandFlags()
const CONNS = num('conns', 15000)
const KEEPALIVE_S = num('keepalive', 60)
const PING_PERIOD_S = num('ping-period', 5)
const WINDOW_S = num('window', 20)
const ROUNDS = num('rounds', 1)
const MODES = (flags.get('modes') ?? 'memory,redis').split(',')
const BROKERS = (flags.get('brokers') ?? 'gateway,mosquitto').split(',')
if (CONNS > 18000) throw new Error('--conns: one process holds at most ~18,000 connections here (20,000 descriptors)')
if (PING_PERIOD_S >= KEEPALIVE_S * 1.5) throw new Error('--ping-period must be below 1.5 x --keepalive (else the broker disconnects)')
// The idle phase must end before the broker's 1.5 x keepalive disconnects the silent connections.
if (5 + WINDOW_S + 30 >= KEEPALIVE_S * 1.5) throw new Error('--window too long for --keepalive: the idle phase must end within 1.5 x keepalive')

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

interface Target { name: string, pid: number, target: string, stop: () => Promise<void> }

async function start (broker: string, mode: string): Promise<Target> {
  if (broker === 'mosquitto') {
    const b = await startBroker('mosquitto')
    return { name: 'mosquitto', pid: b.pid, target: `127.0.0.1:${b.port}`, stop: () => b.stop() }
  }
  if (mode === 'redis') {
    // bench/connections' fleet: one Redis-mode gateway process on its own redis-server.
    const fleet = await gatewayFleet(18000)
    await fleet.grow(1)
    const p = fleet.processes[0]!
    return { name: 'gateway redis', pid: p.pid, target: p.target, stop: () => fleet.stop() }
  }
  if (mode !== 'memory') throw new Error(`--modes: unknown mode ${mode} (memory, redis)`)
  const gw = await spawnGateway(['--config', 'config/gateway.yaml'], {
    MQGW_LOG_LEVEL: 'warn',
    // The generator's connections all come from two addresses (see bench/connections-fleet.ts).
    MQGW_MAX_UNAUTHENTICATED_PER_ADDRESS: '0'
  }, 'readyz', 30000)
  track(gw.child)
  return {
    name: 'gateway memory',
    pid: gw.child.pid!,
    target: `127.0.0.1:${gw.ports.mqtt}`,
    stop: async () => {
      const timer = setTimeout(() => gw.child.kill('SIGKILL'), 15000)
      gw.child.kill('SIGTERM')
      await gw.exited
      clearTimeout(timer)
    }
  }
}

/** CPU seconds of `pid` over `seconds`, and the wall time it took. */
async function cpuOver (pid: number, seconds: number): Promise<{ cpu: number, wall: number }> {
  const c0 = cpuSeconds(pid)
  const t0 = performance.now()
  await sleep(seconds * 1000)
  return { cpu: cpuSeconds(pid) - c0, wall: (performance.now() - t0) / 1000 }
}

let serial = 0
async function connect (t: Target, pingPeriodS: number): Promise<Generator> {
  const g = serial++
  const gen = new Generator({ n: CONNS, targets: [t.target], sources: [`127.21.${g % 250}.2`, `127.21.${g % 250}.3`], prefix: `ka-${g}`, keepaliveS: KEEPALIVE_S, inflight: 100, upTimeoutS: 120, holdMaxS: 600 }, ['-ping-period', String(pingPeriodS)])
  const up = await gen.up
  if (up.held < CONNS) {
    await gen.stop()
    throw new Error(`${t.name}: ${up.held} of ${CONNS} connections up (${JSON.stringify(up.failedBy)})`)
  }
  return gen
}

type Row = Record<string, string | number>
const rows: Row[] = []

async function measure (broker: string, mode: string, round: number): Promise<void> {
  const t = await start(broker, mode)
  try {
    await sleep(5000) // start-up work (JIT, first $SYS publish, first sweep)
    const empty = await cpuOver(t.pid, WINDOW_S / 2)
    const rssEmpty = rssKiB(t.pid)
    const quiet = await connect(t, 0)
    await sleep(5000) // the connect burst's garbage and the sessions' writes
    const idle = await cpuOver(t.pid, WINDOW_S)
    const rssIdle = rssKiB(t.pid)
    await quiet.stop()
    await sleep(3000)
    const pinging = await connect(t, PING_PERIOD_S)
    await sleep(5000)
    const s0 = await pinging.stats()
    const genCpu0 = cpuSeconds(pinging.child.pid!)
    const busy = await cpuOver(t.pid, WINDOW_S)
    const s1 = await pinging.stats()
    const genCpu = cpuSeconds(pinging.child.pid!) - genCpu0
    await pinging.stop()
    const answered = s1.pingresps - s0.pingresps
    const idleRate = idle.cpu / idle.wall
    const row: Row = {
      round,
      broker: t.name,
      conns: CONNS,
      'empty % core': empty.cpu / empty.wall * 100,
      'idle % core': idleRate * 100,
      'idle µs/conn/s': (idleRate - empty.cpu / empty.wall) * 1e6 / CONNS,
      'pings/s': answered / busy.wall,
      'ping % core': busy.cpu / busy.wall * 100,
      'µs/ping': Math.max(0, busy.cpu - idleRate * busy.wall) * 1e6 / Math.max(1, answered),
      'gen µs/ping': genCpu * 1e6 / Math.max(1, s1.pingsSent - s0.pingsSent),
      'missing': s1.pingrespMissing,
      'KiB/conn': (rssIdle - rssEmpty) / CONNS,
      load: load()
    }
    rows.push(row)
    process.stderr.write(`keepalive: ${JSON.stringify(row)}\n`)
  } finally {
    await t.stop()
  }
}

buildLoadgen()
process.stderr.write(`keepalive: node ${process.version}, ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores, load ${load()}\n`)
for (let round = 1; round <= ROUNDS; round++) {
  for (const broker of BROKERS) {
    if (broker === 'gateway') for (const mode of MODES) await measure('gateway', mode, round)
    else if (broker === 'mosquitto') await measure('mosquitto', '', round)
    else throw new Error(`--brokers: unknown broker ${broker} (gateway, mosquitto)`)
  }
}
report('keepalive', rows, { flags: Object.fromEntries(flags) })
process.stdout.write(`\nµs/ping: the broker's CPU while every connection pings every ${PING_PERIOD_S} s, minus its idle CPU (same connections, no pings), per PINGREQ answered; projected keepalive cores at 1M connections pinging every 60 s = 1e6 / 60 x µs/ping / 1e6\n`)
for (const r of rows) process.stdout.write(`  ${r.broker} round ${r.round}: 1M at 60 s -> ${(1e6 / 60 * Number(r['µs/ping']) / 1e6).toFixed(3)} cores for PINGREQs\n`)
process.exit(0)
