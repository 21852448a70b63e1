/**
 * Raw-socket load generator for bench/compare.bench.ts, run as its own process (pinned by the
 * caller). It speaks MQTT 3.1.1 over plain net sockets instead of MQTT.js so that it is cheap
 * enough not to be the bottleneck:
 *  - CONNECT and SUBSCRIBE are encoded once with mqtt-packet's generate();
 *  - PUBLISH packets are copied from a pre-encoded template into one buffer per batch (message id,
 *    publisher index, sequence number and a performance.now() timestamp patched in place), so a
 *    batch of N publishes is one socket.write();
 *  - incoming bytes are split into frames by a minimal fixed-header scanner (no packet objects);
 *    a subscriber's PUBACKs for one read are written back as one buffer.
 * With `ws` set (a path), every connection is MQTT over WebSocket instead (RFC 6455 framing by
 * hand, test/helpers/raw-ws.ts: the upgrade request, then each batch written as one masked binary
 * frame; the server's frames are split by a header scanner), and the result reports frames per
 * delivery. The masking key is random and non-zero, as a browser's: ws skips unmasking a frame
 * whose key is zero, which would spare the broker work that real clients cost it. Wire bytes per delivery
 * (counted subscribers' bytes read over the window / deliveries) are reported for both.
 * Publishers are closed-loop: a publisher may be at most `window` messages ahead of the slowest
 * of its subscribers (per-publisher sequence numbers, so a dropped message does not shrink the
 * window) and, at QoS 1, at most `inflight` messages without PUBACK. A watchdog reopens a window
 * that made no progress for 1 s (counted as `windowResets`: suspected drops).
 *
 *   node dist/bench/loadgen-scenarios.js '{"scenario":"fanin","port":1883,...}'
 *
 * Writes one JSON line per event on stdout ({"event":"ready"|"window-start"|"window-end"|
 * "connected"}) and a last line {"event":"result",...}. In the "idle" scenario it waits for a
 * line "release" on stdin (bounded by holdMs) before closing its connections. Every loop is
 * bounded in count and in time (timeLimitMs hard cap: the process exits 2).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { generate } from 'mqtt-packet'
import { clientFrame, connectRawWs, WsFrameReader } from '../test/helpers/raw-ws.js'

interface Common {
  port: number
  timeLimitMs: number
  /** MQTT over WebSocket at this path (on `port`), instead of MQTT over TCP. */
  ws?: string
}
interface Flow {
  warmupMs: number, windowMs: number, drainMs: number, payloadBytes: number
  /** Record end-to-end latency (qos1 and frozen always do). */
  latency?: boolean
  /**
   * Paced instead of closed-loop: the publishers together offer this many messages per second
   * (evenly split, sent every few ms; the window still caps each publisher); latency is measured
   * from each message's due time, not from when it left. Fan-in only.
   */
  rate?: number
}
export interface FaninJob extends Common, Flow { scenario: 'fanin', publishers: number, window: number, batch: number }
export interface Qos1Job extends Common, Flow { scenario: 'qos1', pairs: number, inflight: number }
export interface FanoutJob extends Common, Flow { scenario: 'fanout', subscribers: number, window: number, batch: number, connectConcurrency: number }
export interface FrozenJob extends Common, Flow { scenario: 'frozen', healthy: number, frozen: boolean, inflight: number, connectConcurrency: number }
export interface IdleJob extends Common { scenario: 'idle', clients: number, concurrency: number, keepalive: number, holdMs: number }
export type ScenarioJob = FaninJob | Qos1Job | FanoutJob | FrozenJob | IdleJob

const emit = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------- framing

type FrameHandler = (type: number, flags: number, buf: Buffer, start: number, end: number) => void

/** Splits a byte stream into MQTT frames (fixed header + remaining length) without decoding them. */
class FrameReader {
  #pending: Buffer | undefined
  constructor (private readonly onFrame: FrameHandler) {}

  push (chunk: Buffer): void {
    const b = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk])
    this.#pending = undefined
    let off = 0
    const n = b.length
    for (;;) {
      if (n - off < 2) break
      let i = off + 1
      let len = 0
      let mul = 1
      let byte = 0
      let complete = false
      for (let k = 0; k < 4; k++) {
        if (i >= n) break
        byte = b[i++]!
        len += (byte & 127) * mul
        mul *= 128
        if ((byte & 128) === 0) { complete = true; break }
      }
      if (!complete || n - i < len) break
      const h = b[off]!
      this.onFrame(h >> 4, h & 15, b, i, i + len)
      off = i + len
    }
    if (off < n) this.#pending = Buffer.from(b.subarray(off))
  }
}

function remainingLength (len: number): number[] {
  const out: number[] = []
  do {
    let byte = len % 128
    len = Math.floor(len / 128)
    if (len > 0) byte |= 128
    out.push(byte)
  } while (len > 0)
  return out
}

/** A PUBLISH packet template; the payload starts with u16 publisher, u32 seq, f64 timestamp. */
interface Template { buf: Buffer, midOffset: number, payloadOffset: number }

function publishTemplate (topic: string, qos: 0 | 1, payloadBytes: number): Template {
  const t = Buffer.from(topic)
  const body = 2 + t.length + (qos > 0 ? 2 : 0) + Math.max(14, payloadBytes)
  const header = [0x30 | (qos << 1), ...remainingLength(body)]
  const buf = Buffer.alloc(header.length + body, 0x78) // 'x' filler
  Buffer.from(header).copy(buf, 0)
  buf.writeUInt16BE(t.length, header.length)
  t.copy(buf, header.length + 2)
  const midOffset = header.length + 2 + t.length
  const payloadOffset = midOffset + (qos > 0 ? 2 : 0)
  return { buf, midOffset, payloadOffset }
}

// ---------------------------------------------------------------- clients

const READ_BUFFER = Buffer.alloc(256 * 1024)

interface Conn {
  socket: net.Socket
  closed: boolean
  closedAt?: number
  /** Writes MQTT bytes: as they are over TCP, as one binary frame over WebSocket. */
  send: (bytes: Buffer) => boolean
  /** WebSocket frames received (0 over TCP). */
  frames: number
}

/** The load generator's masking key: one per process, never zero (see the header). */
const MASK = ((): Buffer => { const m = randomBytes(4); m[0] = m[0]! | 1; return m })()

/**
 * Opens a socket (over WebSocket at path `ws` when given), sends CONNECT, resolves once CONNACK 0
 * arrives. `onFrame` gets every later frame. Rejects on a refusal, a socket error or after timeoutMs.
 */
function connectRaw (port: number, clientId: string, keepalive: number, onFrame: FrameHandler, timeoutMs = 10000, ws?: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    let connected = false
    let timer: NodeJS.Timeout | undefined
    let conn: Conn | undefined
    const fail = (err: Error): void => { if (!connected) { clearTimeout(timer); conn?.socket.destroy(); reject(err) } }
    const reader = new FrameReader((type, flags, buf, start, end) => {
      if (!connected) {
        clearTimeout(timer)
        if (type !== 2 || buf[start + 1] !== 0) {
          conn!.socket.destroy()
          reject(new Error(`CONNECT ${clientId}: ${type === 2 ? `CONNACK ${buf[start + 1]}` : `packet type ${type} before CONNACK`}`))
          return
        }
        connected = true
        resolve(conn!)
        return
      }
      onFrame(type, flags, buf, start, end)
    })
    /** The transport is up: watch it, send CONNECT. */
    const start = (c: Conn): void => {
      conn = c
      c.socket.on('error', (err) => fail(err))
      c.socket.on('close', () => { c.closed = true; c.closedAt = performance.now(); fail(new Error(`CONNECT ${clientId}: closed`)) })
      timer = setTimeout(() => fail(new Error(`CONNECT ${clientId}: no CONNACK in ${timeoutMs} ms`)), timeoutMs)
      c.send(connectPacket(clientId, keepalive))
    }
    if (ws === undefined) {
      // onread: reads go straight into one shared buffer and to the frame scanner (no stream
      // 'data' events); the scanner consumes it synchronously and copies only a partial frame.
      const socket = net.connect({ port, host: '127.0.0.1', onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => { reader.push((buf as Buffer).subarray(0, n)); return true } } })
      socket.setNoDelay(true)
      socket.once('error', (err) => fail(err))
      socket.once('connect', () => start({ socket, closed: false, frames: 0, send: (b) => socket.write(b) }))
      return
    }
    const wsReader = new WsFrameReader((f) => {
      // The server sends nothing before CONNECT, which start() sends once `conn` is set.
      if (conn !== undefined) conn.frames++
      if (f.opcode === 2 || f.opcode === 0) reader.push(f.payload)
    })
    connectRawWs(port, ws, (chunk) => wsReader.push(chunk), { protocol: 'mqtt', timeoutMs }).then(({ socket }) => {
      start({ socket, closed: false, frames: 0, send: (b) => socket.write(clientFrame(b, 2, MASK)) })
    }, (err: Error) => fail(new Error(`CONNECT ${clientId}: WebSocket: ${err.message}`)))
  })
}

/** CONNECT, MQTT 3.1.1, clean session, no credentials (what mqtt-packet's generate() produces, without its cost per client). */
function connectPacket (clientId: string, keepalive: number): Buffer {
  const id = Buffer.from(clientId)
  const body = 10 + 2 + id.length
  const head = remainingLength(body)
  const out = Buffer.allocUnsafe(1 + head.length + body)
  let o = 0
  out[o++] = 0x10
  for (const b of head) out[o++] = b
  out[o++] = 0; out[o++] = 4; o += out.write('MQTT', o, 'latin1')
  out[o++] = 4; out[o++] = 0x02; out[o++] = keepalive >> 8; out[o++] = keepalive & 255
  out[o++] = id.length >> 8; out[o++] = id.length & 255
  id.copy(out, o)
  return out
}

/** Sends SUBSCRIBE (message id 1) and waits for its SUBACK; `suback` is called by the client's frame handler. */
function subscribePacket (topic: string, qos: 0 | 1): Buffer {
  return generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] })
}

/** Runs `task(i)` for i < count with at most `concurrency` at once; stops starting new ones at the deadline. */
async function pool (count: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count && Date.now() < deadline) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

// ---------------------------------------------------------------- pub/sub engine

class Subscriber {
  conn!: Conn
  /** Highest sequence seen per publisher index. */
  readonly last: Uint32Array
  /** Messages received per publisher index (last - count = gaps: lost messages, as MQTT keeps per-publisher order). */
  readonly count: Uint32Array
  received = 0
  subacked: (() => void) | undefined
  subackCode = -1
  constructor (readonly engine: Engine, publishers: number, readonly counted: boolean) {
    this.last = new Uint32Array(publishers)
    this.count = new Uint32Array(publishers)
  }

  onFrame: FrameHandler = (type, flags, buf, start, end) => {
    if (type === 3) {
      const qos = (flags >> 1) & 3
      let p = start + 2 + ((buf[start]! << 8) | buf[start + 1]!)
      if (qos > 0) {
        this.engine.queuePuback(this, buf[p]!, buf[p + 1]!)
        p += 2
      }
      if (end - p >= 14) {
        const pub = buf.readUInt16LE(p)
        const seq = buf.readUInt32LE(p + 2)
        if (pub < this.last.length) {
          if (seq > this.last[pub]!) this.last[pub] = seq
          this.count[pub] = (this.count[pub] ?? 0) + 1
        }
        if (this.counted) this.engine.onDelivery(buf, p + 6, pub)
      }
      this.received++
      this.engine.schedulePump()
    } else if (type === 9) {
      this.subackCode = buf[end - 1]!
      this.subacked?.()
    }
  }
}

class Publisher {
  conn!: Conn
  sent = 0
  acked = 0
  mid = 0
  floor = 0
  lastProgress = 0
  lastSeen = 0
  lastReceived = 0
  readonly receivers: Subscriber[] = []
  constructor (readonly index: number, readonly template: Template, readonly qos: 0 | 1) {}

  onFrame: FrameHandler = (type) => {
    if (type === 4) { this.acked++; this.engine?.schedulePump() }
  }

  engine: Engine | undefined

  seenMin (): number {
    let min = 0xffffffff
    for (const r of this.receivers) { const s = r.last[this.index]!; if (s < min) min = s }
    if (this.receivers.length === 0) min = this.sent
    return Math.max(min, this.floor)
  }
}

class Engine {
  readonly subscribers: Subscriber[] = []
  readonly publishers: Publisher[] = []
  delivered = 0
  recordLatency = false
  latencies: number[] = []
  publishing = false
  publishingSince = 0
  windowResets = 0
  /** What each window reset saw (bounded): where the stalled publisher's messages were. */
  readonly stallDetails: object[] = []
  #pumpScheduled = false
  #pubacks = new Map<Subscriber, number[]>()
  #pubackScheduled = false

  /** MQTT over WebSocket at this path, else TCP. */
  ws: string | undefined

  constructor (readonly window: number, readonly inflight: number, readonly batch: number) {}

  /** Bytes read and WebSocket frames received by the counted subscribers so far. */
  wire (): { bytes: number, frames: number } {
    let bytes = 0
    let frames = 0
    for (const s of this.subscribers) {
      if (!s.counted) continue
      bytes += s.conn.socket.bytesRead
      frames += s.conn.frames
    }
    return { bytes, frames }
  }

  /** Per publisher index: when a counted subscriber last got one of its messages (during the window). */
  lastDeliveryAt = new Float64Array(0)
  /** Longest time, over the window, that a publisher went without a delivery at a counted subscriber, and gaps of >= 1 s. */
  maxDeliveryGapMs = 0
  deliveryGapsOver1s = 0
  /**
   * Longest time in the window without any delivery at all: when it is close to maxDeliveryGapMs
   * the broker (or the machine) paused as a whole; much shorter, one publisher was starved while others were served.
   */
  maxPauseMs = 0
  lastAnyDeliveryAt = 0
  /** Paced mode: messages per second per publisher (0: closed-loop). */
  ratePerPublisher = 0

  onDelivery (buf: Buffer, tsOffset: number, pub: number): void {
    this.delivered++
    if (!this.recordGaps) return
    const now = performance.now()
    if (this.recordLatency) this.latencies.push(now - buf.readDoubleLE(tsOffset))
    if (now - this.lastAnyDeliveryAt > this.maxPauseMs) this.maxPauseMs = now - this.lastAnyDeliveryAt
    this.lastAnyDeliveryAt = now
    if (pub < this.lastDeliveryAt.length) {
      this.#gap(now - this.lastDeliveryAt[pub]!)
      this.lastDeliveryAt[pub] = now
    }
  }

  #gap (ms: number): void {
    if (ms > this.maxDeliveryGapMs) this.maxDeliveryGapMs = ms
    if (ms >= 1000) this.deliveryGapsOver1s++
  }

  /** Gap tracking runs over the measurement window only. */
  recordGaps = false
  startGaps (): void {
    this.lastDeliveryAt = new Float64Array(this.publishers.length).fill(performance.now())
    this.lastAnyDeliveryAt = performance.now()
    this.recordGaps = true
  }

  /** Ends gap tracking: a publisher still waiting at the end counts its open gap too. */
  endGaps (): void {
    this.recordGaps = false
    const now = performance.now()
    for (const at of this.lastDeliveryAt) this.#gap(now - at)
    if (now - this.lastAnyDeliveryAt > this.maxPauseMs) this.maxPauseMs = now - this.lastAnyDeliveryAt
  }

  queuePuback (sub: Subscriber, hi: number, lo: number): void {
    let list = this.#pubacks.get(sub)
    if (list === undefined) { list = []; this.#pubacks.set(sub, list) }
    list.push(hi, lo)
    if (!this.#pubackScheduled) {
      this.#pubackScheduled = true
      queueMicrotask(() => this.#flushPubacks())
    }
  }

  #flushPubacks (): void {
    this.#pubackScheduled = false
    for (const [sub, ids] of this.#pubacks) {
      const out = Buffer.allocUnsafe(ids.length * 2)
      for (let i = 0, o = 0; i < ids.length; i += 2, o += 4) {
        out[o] = 0x40; out[o + 1] = 2; out[o + 2] = ids[i]!; out[o + 3] = ids[i + 1]!
      }
      if (!sub.conn.closed) sub.conn.send(out)
    }
    this.#pubacks.clear()
  }

  schedulePump (): void {
    if (this.#pumpScheduled || !this.publishing) return
    this.#pumpScheduled = true
    setImmediate(() => { this.#pumpScheduled = false; this.pumpAll() })
  }

  pumpAll (): void {
    if (!this.publishing) return
    for (const p of this.publishers) this.#pump(p)
  }

  #pump (p: Publisher): void {
    const socket = p.conn.socket
    if (p.conn.closed) return
    const seen = p.seenMin()
    for (;;) {
      let credit = this.window - (p.sent - seen)
      if (p.qos > 0) credit = Math.min(credit, this.inflight - (p.sent - p.acked))
      if (this.ratePerPublisher > 0) credit = Math.min(credit, Math.floor((performance.now() - this.publishingSince) * this.ratePerPublisher / 1000) - p.sent)
      if (credit <= 0 || socket.writableLength > 65536) return
      const n = Math.min(credit, this.batch)
      const t = p.template
      const len = t.buf.length
      const out = Buffer.allocUnsafe(n * len)
      const now = performance.now()
      for (let k = 0, o = 0; k < n; k++, o += len) {
        t.buf.copy(out, o)
        if (p.qos > 0) {
          p.mid = p.mid >= 65535 ? 1 : p.mid + 1
          out[o + t.midOffset] = p.mid >> 8
          out[o + t.midOffset + 1] = p.mid & 255
        }
        p.sent++
        out.writeUInt16LE(p.index, o + t.payloadOffset)
        out.writeUInt32LE(p.sent, o + t.payloadOffset + 2)
        // Paced: the message's due time (credit above), so a send held back by the broker, a full
        // socket or the generator's own pauses counts in its latency (no coordinated omission).
        out.writeDoubleLE(this.ratePerPublisher > 0 ? this.publishingSince + p.sent * 1000 / this.ratePerPublisher : now, o + t.payloadOffset + 6)
      }
      if (!p.conn.send(out)) return // 'drain' pumps again
    }
  }

  /**
   * Reopens the window of a publisher that is blocked on it while none of its receivers got any
   * of its messages for stallMs: the rest of the window was lost (QoS 0 drops).
   */
  watchdog (stallMs: number): void {
    const now = performance.now()
    for (const p of this.publishers) {
      let received = 0
      for (const r of p.receivers) received += r.count[p.index]!
      if (received !== p.lastReceived) { p.lastReceived = received; p.lastProgress = now; continue }
      const seen = p.seenMin()
      if (this.publishing && now - p.lastProgress > stallMs && p.sent - seen >= this.window) {
        if (this.stallDetails.length < 50) {
          const s = p.conn.socket
          this.stallDetails.push({ publisher: p.index, atMs: Math.round(now - this.publishingSince), sent: p.sent, seen, writableLength: s.writableLength, bytesWritten: s.bytesWritten, delivered: this.delivered })
        }
        p.floor = p.sent
        p.lastProgress = now
        this.windowResets++
        this.schedulePump()
      }
    }
  }

  async addSubscriber (port: number, clientId: string, topic: string, qos: 0 | 1, publishers: number, counted: boolean): Promise<Subscriber> {
    const sub = new Subscriber(this, publishers, counted)
    sub.conn = await connectRaw(port, clientId, 60, sub.onFrame, 10000, this.ws)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`SUBSCRIBE ${clientId}: no SUBACK in 10 s`)), 10000)
      sub.subacked = () => { clearTimeout(timer); resolve() }
      sub.conn.send(subscribePacket(topic, qos))
    })
    if (sub.subackCode === 0x80) throw new Error(`SUBSCRIBE ${clientId} ${topic}: refused`)
    this.subscribers.push(sub)
    return sub
  }

  async addPublisher (port: number, clientId: string, index: number, topic: string, qos: 0 | 1, payloadBytes: number): Promise<Publisher> {
    const pub = new Publisher(index, publishTemplate(topic, qos, payloadBytes), qos)
    pub.engine = this
    pub.conn = await connectRaw(port, clientId, 60, pub.onFrame, 10000, this.ws)
    pub.conn.socket.on('drain', () => this.schedulePump())
    this.publishers.push(pub)
    return pub
  }

  totalSent (): number { return this.publishers.reduce((a, p) => a + p.sent, 0) }
  totalAcked (): number { return this.publishers.reduce((a, p) => a + p.acked, 0) }
  /** Deliveries expected at the counted subscribers for what was sent. */
  expected (): number {
    let e = 0
    for (const p of this.publishers) e += p.sent * p.receivers.filter((r) => r.counted).length
    return e
  }

  /** Messages skipped in the per-publisher sequences at counted subscribers: certainly lost. */
  gaps (): number {
    let g = 0
    for (const s of this.subscribers) {
      if (!s.counted) continue
      for (let i = 0; i < s.last.length; i++) g += s.last[i]! - s.count[i]!
    }
    return g
  }

  close (): void {
    const disconnect = Buffer.from([0xe0, 0])
    for (const c of [...this.publishers.map((p) => p.conn), ...this.subscribers.map((s) => s.conn)]) {
      if (c === undefined || c.closed) continue
      c.send(disconnect)
      c.socket.end()
    }
  }
}

function percentile (sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]!
}

/** Warm-up, measurement window, then a bounded drain; returns the common measurements. */
async function measure (engine: Engine, job: Flow, latency: boolean, extra: () => object = () => ({})): Promise<Record<string, unknown>> {
  const watchdog = setInterval(() => engine.watchdog(1000), 100)
  emit({ event: 'ready' })
  engine.publishing = true
  engine.publishingSince = performance.now()
  // The watchdog measures a stall from here, not from the process start.
  for (const p of engine.publishers) p.lastProgress = engine.publishingSince
  // Paced: the timer sends what is due (deliveries and drains do not add credit beyond it).
  const pacer = engine.ratePerPublisher > 0 ? setInterval(() => engine.pumpAll(), 2) : undefined
  engine.pumpAll()
  await sleep(job.warmupMs)
  const d0 = engine.delivered
  const s0 = engine.totalSent()
  const a0 = engine.totalAcked()
  const w0 = engine.wire()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  engine.recordLatency = latency
  engine.startGaps()
  emit({ event: 'window-start' })
  // Deliveries per second of the window (the last bucket may be shorter if windowMs is not whole seconds).
  const timeline: number[] = []
  let last = d0
  for (let at = 1000; at < job.windowMs + 1000; at += 1000) {
    await sleep(Math.max(0, t0 + Math.min(at, job.windowMs) - performance.now()))
    timeline.push(engine.delivered - last)
    last = engine.delivered
  }
  engine.recordLatency = false
  engine.endGaps()
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const d1 = engine.delivered
  const s1 = engine.totalSent()
  const a1 = engine.totalAcked()
  const w1 = engine.wire()
  emit({ event: 'window-end' })
  engine.publishing = false
  clearInterval(watchdog)
  clearInterval(pacer)
  // Drain: wait (bounded) for everything sent to arrive at the counted subscribers.
  const drainStart = performance.now()
  const drainEnd = Date.now() + job.drainMs
  while (engine.delivered < engine.expected() && Date.now() < drainEnd) await sleep(20)
  const drainSeconds = (performance.now() - drainStart) / 1000
  const lat = Float64Array.from(engine.latencies).sort()
  const result: Record<string, unknown> = {
    seconds,
    deliveredPerSecond: (d1 - d0) / seconds,
    publishedPerSecond: (s1 - s0) / seconds,
    ackedPerSecond: (a1 - a0) / seconds,
    sentTotal: engine.totalSent(),
    ackedTotal: engine.totalAcked(),
    deliveredTotal: engine.delivered,
    expectedTotal: engine.expected(),
    missing: engine.expected() - engine.delivered,
    lost: engine.gaps(),
    // false: the drain cap passed with deliveries still outstanding (missing = not yet delivered).
    drainComplete: engine.delivered >= engine.expected(),
    drainSeconds,
    windowResets: engine.windowResets,
    maxDeliveryGapMs: engine.maxDeliveryGapMs,
    deliveryGapsOver1s: engine.deliveryGapsOver1s,
    maxPauseMs: engine.maxPauseMs,
    offeredPerSecond: engine.ratePerPublisher * engine.publishers.length,
    stallDetails: engine.stallDetails,
    loadgenCpuPercent: (cpu.user + cpu.system) / 1000 / (seconds * 1000) * 100,
    timelinePerSecond: timeline,
    transport: engine.ws === undefined ? 'tcp' : 'ws',
    // Bytes the counted subscribers read per message delivered to them (MQTT + TCP/WebSocket framing, not TCP/IP headers).
    wireBytesPerDelivery: (w1.bytes - w0.bytes) / Math.max(1, d1 - d0),
    framesPerDelivery: engine.ws === undefined ? null : (w1.frames - w0.frames) / Math.max(1, d1 - d0),
    ...extra()
  }
  if (latency) {
    result.latencyMs = {
      samples: lat.length,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat.length > 0 ? lat[lat.length - 1] : 0,
      mean: lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length)
    }
  }
  engine.close()
  return result
}

// ---------------------------------------------------------------- scenarios

/** TCP state (hex, '01' = ESTABLISHED) of the IPv4 socket localPort -> remotePort, or 'gone'. */
function tcpState (localPort: number, remotePort: number): string {
  const l = `:${localPort.toString(16).toUpperCase().padStart(4, '0')}`
  const r = `:${remotePort.toString(16).toUpperCase().padStart(4, '0')}`
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(l) === true && f[2]?.endsWith(r) === true) return f[3] ?? 'gone'
  }
  return 'gone'
}

async function fanin (job: FaninJob): Promise<object> {
  const engine = new Engine(job.window, Infinity, job.batch)
  engine.ws = job.ws
  if (job.rate !== undefined) engine.ratePerPublisher = job.rate / job.publishers
  const sub = await engine.addSubscriber(job.port, 'fanin-sub', 'bench/fanin/#', 0, job.publishers, true)
  for (let i = 0; i < job.publishers; i++) {
    const p = await engine.addPublisher(job.port, `fanin-pub-${i}`, i, `bench/fanin/${i}`, 0, job.payloadBytes)
    p.receivers.push(sub)
  }
  return measure(engine, job, job.latency === true)
}

async function qos1 (job: Qos1Job): Promise<object> {
  const engine = new Engine(job.inflight, job.inflight, job.inflight)
  engine.ws = job.ws
  for (let i = 0; i < job.pairs; i++) {
    const sub = await engine.addSubscriber(job.port, `q1-sub-${i}`, `bench/q1/${i}`, 1, job.pairs, true)
    const p = await engine.addPublisher(job.port, `q1-pub-${i}`, i, `bench/q1/${i}`, 1, job.payloadBytes)
    p.receivers.push(sub)
  }
  return measure(engine, job, true)
}

async function fanout (job: FanoutJob): Promise<object> {
  const engine = new Engine(job.window, Infinity, job.batch)
  engine.ws = job.ws
  const deadline = Date.now() + job.timeLimitMs / 2
  const started = performance.now()
  await pool(job.subscribers, job.connectConcurrency, deadline, async (i) => { await engine.addSubscriber(job.port, `fo-sub-${i}`, 'bench/fanout', 0, 1, true) })
  if (engine.subscribers.length !== job.subscribers) throw new Error(`only ${engine.subscribers.length} subscribers set up`)
  const setupSeconds = (performance.now() - started) / 1000
  const p = await engine.addPublisher(job.port, 'fo-pub', 0, 'bench/fanout', 0, job.payloadBytes)
  p.receivers.push(...engine.subscribers)
  return measure(engine, job, job.latency === true, () => ({ subscribers: engine.subscribers.length, setupSeconds }))
}

async function frozen (job: FrozenJob): Promise<object> {
  const engine = new Engine(job.inflight, job.inflight, job.inflight)
  engine.ws = job.ws
  const deadline = Date.now() + job.timeLimitMs / 2
  await pool(job.healthy, job.connectConcurrency, deadline, async (i) => { await engine.addSubscriber(job.port, `fz-sub-${i}`, 'bench/frozen', 1, 1, true) })
  if (engine.subscribers.length !== job.healthy) throw new Error(`only ${engine.subscribers.length} subscribers set up`)
  const healthy = [...engine.subscribers]
  let frozenSub: Subscriber | undefined
  if (job.frozen) {
    // Subscribes like the others, then stops reading its socket: no PUBACKs, the kernel buffers fill.
    frozenSub = await engine.addSubscriber(job.port, 'fz-frozen', 'bench/frozen', 1, 1, false)
    frozenSub.conn.socket.pause()
  }
  // A paused socket never sees the broker's FIN (it is queued behind data the client does not
  // read), so watch the broker's end of the connection in /proc/net/tcp: it leaves ESTABLISHED
  // (FIN_WAIT1, orphaned) when the broker closes it.
  let frozenClosedAt: number | undefined
  const frozenPort = frozenSub?.conn.socket.localPort
  const stateWatch = setInterval(() => {
    if (frozenPort === undefined || frozenClosedAt !== undefined) return
    const state = tcpState(job.port, frozenPort)
    if (state !== '01') frozenClosedAt = performance.now()
  }, 500)
  const p = await engine.addPublisher(job.port, 'fz-pub', 0, 'bench/frozen', 1, job.payloadBytes)
  p.receivers.push(...healthy)
  const r = await measure(engine, job, true, () => ({
    healthySubscribers: healthy.length,
    frozenSubscriber: job.frozen,
    // When the broker closed the frozen client (its TCP state left ESTABLISHED), in ms after
    // publishing began (the warm-up start), ±500 ms; null: still open at the end of the window.
    frozenClosedByBrokerAfterMs: frozenClosedAt !== undefined ? frozenClosedAt - engine.publishingSince : null
  }))
  clearInterval(stateWatch)
  return r
}

async function idle (job: IdleJob): Promise<object> {
  const conns: Conn[] = []
  const latencies: number[] = []
  let failed = 0
  const errors = new Map<string, number>()
  const deadline = Date.now() + job.timeLimitMs / 2
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  await pool(job.clients, job.concurrency, deadline, async (i) => {
    const t = performance.now()
    try {
      conns.push(await connectRaw(job.port, `idle-${i}`, job.keepalive, () => {}))
      latencies.push(performance.now() - t)
    } catch (err) {
      failed++
      const key = (err as Error).message.replace(/idle-\d+/, 'idle-N')
      errors.set(key, (errors.get(key) ?? 0) + 1)
    }
  })
  const seconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpu0)
  emit({ event: 'connected', connected: conns.length })
  // Hold the connections until the caller has read the broker's RSS (bounded by holdMs).
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, job.holdMs)
    let buf = ''
    process.stdin.on('data', (c: Buffer) => {
      buf += c.toString()
      if (buf.includes('release')) { clearTimeout(timer); resolve() }
    })
  })
  const stillOpen = conns.filter((c) => !c.closed).length
  latencies.sort((a, b) => a - b)
  for (const c of conns) c.socket.destroy()
  return {
    connected: conns.length,
    failed,
    errors: Object.fromEntries(errors),
    stillOpenAtRelease: stillOpen,
    seconds,
    connectsPerSecond: conns.length / seconds,
    connectP50ms: percentile(latencies, 50),
    connectP99ms: percentile(latencies, 99),
    loadgenCpuPercent: (cpu.user + cpu.system) / 1000 / (seconds * 1000) * 100
  }
}

const job = JSON.parse(process.argv[2] ?? '{}') as ScenarioJob
setTimeout(() => { process.stderr.write(`loadgen-scenarios: time limit ${job.timeLimitMs} ms reached\n`); process.exit(2) }, job.timeLimitMs).unref()
try {
  let result: object
  switch (job.scenario) {
    case 'fanin': result = await fanin(job); break
    case 'qos1': result = await qos1(job); break
    case 'fanout': result = await fanout(job); break
    case 'frozen': result = await frozen(job); break
    case 'idle': result = await idle(job); break
    default: throw new Error(`unknown scenario ${(job as { scenario: string }).scenario}`)
  }
  emit({ event: 'result', ...result })
  process.exit(0)
} catch (err) {
  process.stderr.write(`loadgen-scenarios: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
