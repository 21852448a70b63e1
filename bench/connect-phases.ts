/**
 * CPU per CONNECT, cold and warm (issue #14): one broker process (as bench/compare starts it,
 * pinned to core 1) takes several phases of N connections in a row; each phase opens N raw
 * TCP connections (100 CONNECTs in flight, keepalive 60) from this process on core 0, waits
 * for every CONNACK, then closes them all. Per phase: the broker's user and system CPU
 * (/proc/PID/stat) per connection, and with --gc its scavenge and mark-compact pause time per
 * connection (gateway only: it runs with --trace-gc).
 *
 *   node dist/bench/connect-phases.js                                  gateway and node-floor
 *   node dist/bench/connect-phases.js --brokers=gateway --clients=10000 --phases=5 --gc
 *
 * Why: compare `idle` measures the first 10,000 CONNECTs of a fresh process, so its "µs per
 * connect" includes one-time costs (lazy compilation, optimisation, heap growth) that a
 * long-running node pays once; phase 1 here is that cold figure, later phases (after the
 * previous phase's clients left) the warm one. The connecting side is Node (raw sockets and
 * mqtt-packet), not the Go generator: connects/s here is the generator's limit, not the
 * broker's; read the CPU columns.
 */
import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { cpuTimes, pinSelf, startBroker, type BrokerName, type RunningBroker } from './brokers.js'
import { commandFlags, report } from './lib.js'

const { flags, num } = commandFlags()
const brokers = (flags.get('brokers') ?? 'gateway,node-floor').split(',') as BrokerName[]
const clients = num('clients', 10000)
const phases = Math.min(num('phases', 4), 20)
const withGc = flags.has('gc')
const INFLIGHT = 100
const CONNECT_TIMEOUT_MS = 10000
/** The whole run's bound; a phase that would start after it is skipped. */
const BUDGET_MS = num('budget-ms', 240000)


/** Pause milliseconds of each kind in the broker's --trace-gc lines so far. */
function gcPauses (broker: RunningBroker): { scavenge: number, markCompact: number } {
  let scavenge = 0
  let markCompact = 0
  for (const m of broker.output().matchAll(/(Scavenge|Mark-Compact)[^,\n]*, ([0-9.]+) \/ [0-9.]+ ms/g)) {
    if (m[1] === 'Scavenge') scavenge += Number(m[2])
    else markCompact += Number(m[2])
  }
  return { scavenge, markCompact }
}

let seq = 0
function connectOne (port: number, open: Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no CONNACK within 10 s')) }, CONNECT_TIMEOUT_MS)
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.once('data', () => { clearTimeout(timer); open.push(socket); resolve() })
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `phase-${process.pid}-${seq++}`, keepalive: 60 }))
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

pinSelf()
const started = Date.now()
const rows: Array<Record<string, string | number>> = []
for (const name of brokers) {
  if (withGc && name === 'gateway') process.env.BENCH_GATEWAY_NODE_ARGS = `${process.env.BENCH_GATEWAY_NODE_ARGS ?? ''} --trace-gc`
  const broker = await startBroker(name)
  try {
    for (let phase = 1; phase <= phases && Date.now() - started < BUDGET_MS; phase++) {
      const open: Socket[] = []
      await sleep(400) // the previous phase's closes are done
      const cpu0 = cpuTimes(broker.pid)
      const gc0 = gcPauses(broker)
      const t0 = performance.now()
      let next = 0
      await Promise.all(Array.from({ length: INFLIGHT }, async () => {
        while (next < clients) {
          next++
          await connectOne(broker.port, open)
        }
      }))
      const seconds = (performance.now() - t0) / 1000
      const cpu1 = cpuTimes(broker.pid)
      const gc1 = gcPauses(broker)
      const perConn = (s: number): number => s * 1e6 / clients
      rows.push({
        broker: name,
        phase: phase === 1 ? '1 (cold)' : String(phase),
        'connects/s': clients / seconds,
        'user µs/conn': perConn(cpu1.user - cpu0.user),
        'sys µs/conn': perConn(cpu1.sys - cpu0.sys),
        'CPU µs/conn': perConn(cpu1.user - cpu0.user + cpu1.sys - cpu0.sys),
        ...(withGc && name === 'gateway' ? { 'scavenge µs/conn': (gc1.scavenge - gc0.scavenge) * 1000 / clients, 'mark-compact µs/conn': (gc1.markCompact - gc0.markCompact) * 1000 / clients } : {})
      })
      for (const s of open) s.destroy()
    }
  } finally {
    await broker.stop()
  }
}
report('connect phases', rows, { clients, phases, inflight: INFLIGHT })
process.exit(0)
