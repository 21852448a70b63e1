/**
 * The WebSocket scenarios of bench/compare.bench.ts (issue #18): fan-in, QoS 1 pairs and fan-out
 * exactly as the TCP ones (same job parameters), with every client speaking MQTT over WebSocket
 * (the load generator frames by hand, bench/loadgen-scenarios.ts), run against
 *   - gateway ws:  the gateway's ws listener (src/listeners/ws-duplex.ts),
 *   - gateway tcp: the same scenario over TCP, the reference the WebSocket path is held to,
 *   - aedes ws:    plain Aedes 1.2.0 with ws' createWebSocketStream, as Aedes' docs show it.
 * Each row: deliveries/s, p99 latency (timestamp in the payload), bytes the counted subscribers
 * read per message delivered (MQTT plus WebSocket or nothing else; not TCP/IP headers) and, over
 * WebSocket, frames per message. Mosquitto is not run here.
 */
import type { BrokerName, RunningBroker } from './brokers.js'

export type Row = Record<string, string | number>

/** What the WebSocket scenarios read of a flow run (compare.bench.ts' FlowRun). */
export interface WsFlowRun {
  deliveredPerSecond: number
  publishedPerSecond: number
  latencyMs?: { p50: number, p99: number }
  wireBytesPerDelivery?: number
  framesPerDelivery?: number | null
  timelinePerSecond: number[]
  windowResets: number
  loadgenCpuPercent: number
}

export interface WsMeasured { row: Row, raw: unknown, notes: string[], primary: number, disturbed: boolean }

/** A peer of a WebSocket scenario: the table row's name, the broker process, the transport. */
export interface WsPeer { row: string, broker: BrokerName, ws: boolean }
export const WS_PEERS: readonly WsPeer[] = [
  { row: 'gateway ws', broker: 'gateway', ws: true },
  { row: 'gateway tcp', broker: 'gateway', ws: false },
  { row: 'aedes ws', broker: 'aedes', ws: true }
]
/** Ratio rows: gateway over WebSocket against its own TCP, and against plain Aedes over WebSocket. */
export const WS_RATIOS: ReadonlyArray<readonly [string, string]> = [['gateway ws', 'gateway tcp'], ['gateway ws', 'aedes ws']]

/** The harness functions of compare.bench.ts the scenarios run on. */
export interface WsHarness<R extends WsFlowRun> {
  flowRun: (name: BrokerName, job: (port: number, broker: RunningBroker) => object & { timeLimitMs: number }) => Promise<R>
  checks: (name: string, r: R) => string[]
  disturbed: (r: R) => boolean
  diag: (r: R) => Row
  missing: (r: R) => string | number
}

/** The TCP scenarios' job builders (one definition for both transports). */
export interface TcpJobs {
  fanin: (port: number) => object & { timeLimitMs: number }
  qos1: (port: number) => object & { timeLimitMs: number }
  fanout: (port: number) => object & { timeLimitMs: number }
}

export interface WsScenario {
  title: string
  ratioColumns: string[]
  peers: readonly WsPeer[]
  ratios: ReadonlyArray<readonly [string, string]>
  runPeer: (peer: WsPeer) => Promise<WsMeasured>
}

const WS_PATH = '/mqtt'

export function wsScenarios<R extends WsFlowRun> (h: WsHarness<R>, jobs: TcpJobs, titles: { fanin: string, qos1: string, fanout: string }): Record<string, WsScenario> {
  /** Runs the TCP job over WebSocket when the peer says so, latency recorded for every peer alike. */
  const run = (peer: WsPeer, job: (port: number) => object & { timeLimitMs: number }): Promise<R> =>
    h.flowRun(peer.broker, (port, broker) => {
      if (!peer.ws) return { ...job(port), latency: true }
      if (broker.wsPort === undefined) throw new Error(`${peer.broker} has no WebSocket listener`)
      return { ...job(broker.wsPort), ws: WS_PATH, latency: true }
    })
  const row = (peer: WsPeer, r: R, rate: string): Row => ({
    broker: peer.row,
    [rate]: r.deliveredPerSecond,
    'p99 ms': r.latencyMs?.p99 ?? NaN,
    'wire B/msg': r.wireBytesPerDelivery ?? NaN,
    'frames/msg': r.framesPerDelivery ?? '-',
    ...h.diag(r)
  })
  const scenario = (title: string, rate: string, job: (port: number) => object & { timeLimitMs: number }, timeline: boolean): WsScenario => ({
    title: `${title}; over WebSocket (${WS_PATH}) unless the row says tcp`,
    ratioColumns: [rate, 'p99 ms', 'wire B/msg'],
    peers: WS_PEERS,
    ratios: WS_RATIOS,
    runPeer: async (peer) => {
      const r = await run(peer, job)
      const notes = h.checks(peer.row, r)
      if (timeline) notes.push(`${peer.row}: deliveries per second of the window (k): ${r.timelinePerSecond.map((v) => (v / 1000).toFixed(0)).join(' ')}`)
      return { raw: r, notes, primary: r.deliveredPerSecond, disturbed: h.disturbed(r), row: { ...row(peer, r, rate), missing: h.missing(r), '1 s stalls': r.windowResets } }
    }
  })
  return {
    'fanin-ws': scenario(titles.fanin, 'delivered msgs/s', jobs.fanin, false),
    'qos1-ws': scenario(titles.qos1, 'msgs/s', jobs.qos1, false),
    'fanout-ws': scenario(titles.fanout, 'deliveries/s', jobs.fanout, true)
  }
}
