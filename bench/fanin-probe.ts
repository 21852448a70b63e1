/**
 * Bench-only probe of where fan-in latency sits inside the gateway (issue #14, fanin-90). Loaded
 * into the gateway process, never by the product:
 *
 *   FANIN_PROBE_OUT=/tmp/probe.jsonl BENCH_GATEWAY_NODE_ARGS="--import ./dist/bench/fanin-probe.js" \
 *     node --expose-gc dist/bench/compare.bench.js fanin-90 --brokers=gateway --rounds=1
 *
 * Every 100 ms (wall clock) it appends one JSON line: event-loop utilisation and the longest
 * event-loop delay (monitorEventLoopDelay, 1 ms resolution: how long a turn kept a due timer
 * waiting), the socket reads (count, bytes, largest) and writes (syscalls, bytes), and the age
 * of the bytes each write carried: reads and writes of a fan-in carry the same PUBLISH bytes in
 * the same order (QoS 0, one subscriber), so the n-th byte written was read at the time the n-th
 * byte was read; "age" is the time from that read to the write call (parse, routing, the flow
 * queue, the per-turn cork). It patches net.Socket's push / _write / _writev (per chunk cost: an
 * array push and a clock read), so it measures a slightly slower gateway. Also samples the
 * largest Node-side buffered bytes (writableLength) and the time sockets spent needing 'drain'.
 */
import net from 'node:net'
import { appendFileSync } from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'


interface Bucket {
  reads: number, readBytes: number, maxRead: number
  writes: number, writeBytes: number, chunks: number
  ageMax: number, ageSum: number, ageBytes: number
  maxWritable: number
}
const empty = (): Bucket => ({ reads: 0, readBytes: 0, maxRead: 0, writes: 0, writeBytes: 0, chunks: 0, ageMax: 0, ageSum: 0, ageBytes: 0, maxWritable: 0 })

function install (file: string): void {
  let b = empty()
  // FIFO of reads: cumulative end offset and time. Only sockets that carry PUBLISHes in (publishers).
  const readEnd: number[] = []
  const readAt: number[] = []
  let head = 0
  let readTotal = 0
  let writeTotal = 0
  const proto = net.Socket.prototype as unknown as Record<string, (...a: unknown[]) => unknown>
  const push = proto.push!
  const write = proto._write!
  const writev = proto._writev!
  proto.push = function (this: net.Socket, chunk: unknown, enc?: unknown): unknown {
    if (chunk instanceof Buffer && chunk.length > 0) {
      const now = performance.now()
      readTotal += chunk.length
      readEnd.push(readTotal)
      readAt.push(now)
      b.reads++
      b.readBytes += chunk.length
      b.maxRead = Math.max(b.maxRead, chunk.length)
    }
    return push.call(this, chunk, enc)
  }
  const wrote = (n: number, chunks: number): void => {
    const now = performance.now()
    // The oldest byte of this write: the read holding offset writeTotal.
    while (head < readEnd.length && readEnd[head]! <= writeTotal) head++
    const at = readAt[head]
    writeTotal += n
    if (head > 100_000) { readEnd.splice(0, head); readAt.splice(0, head); head = 0 }
    b.writes++
    b.writeBytes += n
    b.chunks += chunks
    if (at !== undefined && writeTotal <= readTotal + 4096) {
      const age = now - at
      b.ageMax = Math.max(b.ageMax, age)
      b.ageSum += age * n
      b.ageBytes += n
    }
  }
  proto._write = function (this: net.Socket, chunk: unknown, enc: unknown, cb: unknown): unknown {
    wrote((chunk as Buffer).length ?? 0, 1)
    return write.call(this, chunk, enc, cb)
  }
  proto._writev = function (this: net.Socket, chunks: unknown, cb: unknown): unknown {
    let n = 0
    const list = chunks as Array<{ chunk: Buffer }>
    for (const c of list) n += c.chunk.length
    wrote(n, list.length)
    return writev.call(this, chunks, cb)
  }
  const eld = monitorEventLoopDelay({ resolution: 1 })
  eld.enable()
  let elu = performance.eventLoopUtilization()
  let needDrainMs = 0
  // Every 10 ms: the largest buffered bytes of any socket and whether one needs 'drain'.
  const fine = setInterval(() => {
    for (const s of writers()) {
      b.maxWritable = Math.max(b.maxWritable, s.writableLength)
      if (s.writableNeedDrain) needDrainMs += 10
    }
  }, 10)
  fine.unref()
  const all = new Set<net.Socket>()
  const server = net.Server.prototype as unknown as { emit: (this: net.Server, ev: string | symbol, ...a: unknown[]) => boolean }
  const emit = server.emit
  server.emit = function (this: net.Server, ev: string | symbol, ...a: unknown[]): boolean {
    if (ev === 'connection' && a[0] instanceof net.Socket) all.add(a[0])
    return emit.call(this, ev, ...a)
  }
  function * writers (): Iterable<net.Socket> {
    for (const s of all) {
      if (s.destroyed) all.delete(s)
      else yield s
    }
  }
  const tick = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const u = performance.eventLoopUtilization(now, elu)
    elu = now
    const line = {
      t: Date.now(), elu: +u.utilization.toFixed(3), eldMaxMs: +(eld.max / 1e6).toFixed(1), eldP99Ms: +(eld.percentile(99) / 1e6).toFixed(1),
      reads: b.reads, readBytes: b.readBytes, maxRead: b.maxRead, writes: b.writes, writeBytes: b.writeBytes, chunks: b.chunks,
      ageMaxMs: +b.ageMax.toFixed(2), ageMeanMs: b.ageBytes === 0 ? 0 : +(b.ageSum / b.ageBytes).toFixed(2), maxWritable: b.maxWritable, needDrainMs,
      backlogBytes: readTotal - writeTotal
    }
    eld.reset()
    needDrainMs = 0
    b = empty()
    if (line.reads > 0 || line.writes > 0) appendFileSync(file, JSON.stringify(line) + '\n')
  }, 100)
  tick.unref()
}

// Last: install() uses the module's consts above.
const out = process.env.FANIN_PROBE_OUT
if (out !== undefined && out !== '') install(out)
