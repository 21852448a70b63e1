import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, it } from 'node:test'
import { InflightWindow, type OutboundClient, type OutboundPacket, type OverflowReason, type WindowEvents } from '../../../plugins/flow/inflight-window.js'
import type { FlowConfig } from '../../../plugins/flow/schema.js'

/** A socket stand-in: records writes; `full` plays a buffer above its high-water mark. */
class FakeConn extends EventEmitter {
  full = false
  readonly written: Buffer[] = []
  get writableNeedDrain (): boolean { return this.full }
  write (chunk: Buffer): boolean { this.written.push(chunk); return !this.full }
  drain (): void { this.full = false; this.emit('drain') }
}

/** The Aedes client under the window (unit-test fake): QoS 1/2 sends get consecutive ids. */
class FakeClient implements OutboundClient {
  readonly id = 'unit'
  readonly conn = new FakeConn()
  connected = true
  connecting = false
  closed = false
  nextId = 1
  readonly sent: Array<{ topic: string, qos: number, messageId: number }> = []
  sendQueuedQoS (packet: OutboundPacket, qos: number): number {
    const messageId = this.nextId++
    this.sent.push({ topic: packet.topic, qos, messageId })
    return messageId
  }
}

function setup (config: Partial<FlowConfig> = {}): { window: InflightWindow, client: FakeClient, dropped: Array<{ reason: OverflowReason, qos: number }>, overflows: OverflowReason[] } {
  const client = new FakeClient()
  const dropped: Array<{ reason: OverflowReason, qos: number }> = []
  const overflows: OverflowReason[] = []
  const events: WindowEvents = {
    dropped: (_w, reason, qos) => { dropped.push({ reason, qos }) },
    overflow: (_w, reason) => { overflows.push(reason) }
  }
  const full: FlowConfig = { inflightWindow: 2, maxQueued: 3, maxQueuedBytes: 1 << 20, overflow: 'drop-oldest', ...config }
  return { window: new InflightWindow(full, client, events), client, dropped, overflows }
}

const packet = (topic: string, payload = 'x'): OutboundPacket => ({ topic, payload: Buffer.from(payload), retain: false })

describe('InflightWindow (unit, fake socket)', () => {
  it('writes QoS 0 at once, one shared buffer for the same packet', () => {
    const a = setup()
    const b = setup()
    const p = packet('t/0')
    a.window.deliver(p, 0)
    b.window.deliver(p, 0)
    assert.equal(a.client.conn.written.length, 1)
    assert.equal(a.client.conn.written[0], b.client.conn.written[0], 'encoded once, written to both')
    assert.equal(a.window.queued, 0)
  })

  it('keeps exactly inflightWindow QoS 1 messages unacknowledged and releases the next on each ack, in order', () => {
    const { window, client } = setup({ inflightWindow: 2, maxQueued: 10 })
    for (let i = 0; i < 5; i++) window.deliver(packet(`t/${i}`), 1)
    assert.deepEqual(client.sent.map((s) => s.topic), ['t/0', 't/1'])
    assert.equal(window.inflight, 2)
    assert.equal(window.queued, 3)
    window.acked(999) // unknown id: nothing moves
    assert.equal(client.sent.length, 2)
    window.acked(1)
    assert.deepEqual(client.sent.map((s) => s.topic), ['t/0', 't/1', 't/2'])
    window.acked(2)
    window.acked(3)
    window.acked(4)
    assert.deepEqual(client.sent.map((s) => s.topic), ['t/0', 't/1', 't/2', 't/3', 't/4'])
    assert.equal(window.queued, 0)
  })

  it('QoS 0 behind queued QoS 1 waits its turn (order kept)', () => {
    const { window, client } = setup({ inflightWindow: 1, maxQueued: 10 })
    window.deliver(packet('q1-a'), 1)
    window.deliver(packet('q1-b'), 1)
    window.deliver(packet('q0-c'), 0)
    assert.equal(client.conn.written.length, 0, 'the QoS 0 message does not overtake the queued QoS 1')
    window.acked(1)
    // q1-b takes the free slot; q0-c needs no slot and follows it at once.
    assert.deepEqual(client.sent.map((s) => s.topic), ['q1-a', 'q1-b'])
    assert.equal(client.conn.written.length, 1)
    assert.equal(window.queued, 0)
  })

  it('drop-oldest drops QoS 0 first, then the oldest QoS 1, and counts each', () => {
    const { window, client, dropped } = setup({ inflightWindow: 1, maxQueued: 3 })
    window.deliver(packet('sent'), 1)
    window.deliver(packet('q1-old'), 1)
    window.deliver(packet('q0'), 0)
    window.deliver(packet('q1-mid'), 1)
    window.deliver(packet('q1-new'), 1) // full: the QoS 0 one goes
    assert.deepEqual(dropped, [{ reason: 'queue_full', qos: 0 }])
    window.deliver(packet('q1-newer'), 1) // full, no QoS 0 left: the oldest QoS 1 goes
    assert.deepEqual(dropped, [{ reason: 'queue_full', qos: 0 }, { reason: 'queue_full', qos: 1 }])
    for (let id = 1; id <= 4; id++) window.acked(id)
    assert.deepEqual(client.sent.map((s) => s.topic), ['sent', 'q1-mid', 'q1-new', 'q1-newer'])
  })

  it('drop-new refuses the newcomer; disconnect reports the overflow once and sends nothing more', () => {
    const dropNew = setup({ inflightWindow: 1, maxQueued: 1, overflow: 'drop-new' })
    dropNew.window.deliver(packet('a'), 1)
    dropNew.window.deliver(packet('b'), 1)
    dropNew.window.deliver(packet('c'), 1)
    assert.deepEqual(dropNew.dropped, [{ reason: 'queue_full', qos: 1 }])
    dropNew.window.acked(1)
    assert.deepEqual(dropNew.client.sent.map((s) => s.topic), ['a', 'b'])

    const disconnect = setup({ inflightWindow: 1, maxQueued: 1, overflow: 'disconnect' })
    disconnect.window.deliver(packet('a'), 1)
    disconnect.window.deliver(packet('b'), 1)
    disconnect.window.deliver(packet('c'), 1)
    disconnect.window.deliver(packet('d'), 0)
    assert.deepEqual(disconnect.overflows, ['queue_full'])
    disconnect.window.acked(1)
    assert.deepEqual(disconnect.client.sent.map((s) => s.topic), ['a'], 'nothing is sent after the overflow')
    assert.equal(disconnect.client.conn.written.length, 0)
  })

  it('bounds queued bytes; a message larger than the whole budget is dropped on its own', () => {
    const { window, dropped } = setup({ inflightWindow: 1, maxQueued: 100, maxQueuedBytes: 100 })
    window.deliver(packet('t', 'x'), 1)
    window.deliver(packet('t', 'y'.repeat(50)), 1)
    window.deliver(packet('t', 'z'.repeat(50)), 1) // 50 + 50 + 2 x (topic + 8) > 100: the oldest goes
    assert.deepEqual(dropped, [{ reason: 'queue_bytes', qos: 1 }])
    assert.equal(window.queued, 1)
    window.deliver(packet('t', 'w'.repeat(200)), 1)
    assert.equal(dropped.length, 3, 'the queue was emptied trying to make room, then the newcomer dropped too')
    assert.equal(window.queued, 0)
    assert.equal(window.queuedBytes, 0)
  })

  it('holds messages while the socket is above its high-water mark and resumes on drain', () => {
    const { window, client } = setup({ inflightWindow: 10, maxQueued: 10 })
    client.conn.full = true
    window.deliver(packet('a'), 0)
    window.deliver(packet('b'), 1)
    assert.equal(client.conn.written.length, 0)
    assert.equal(client.sent.length, 0)
    client.conn.drain()
    assert.equal(client.conn.written.length, 1)
    assert.deepEqual(client.sent.map((s) => s.topic), ['b'])
  })

  it('sends nothing once Aedes closed the client, and nothing QoS 0 when not connected', () => {
    const { window, client } = setup()
    client.closed = true
    window.deliver(packet('a'), 1)
    window.deliver(packet('b'), 0)
    assert.equal(client.sent.length, 0)
    assert.equal(client.conn.written.length, 0)
    const other = setup()
    other.client.connected = false
    other.window.deliver(packet('c'), 0)
    assert.equal(other.client.conn.written.length, 0)
  })

  it('replays stored messages first, through the window', () => {
    const { window, client } = setup({ inflightWindow: 1, maxQueued: 10 })
    const replayed: number[] = []
    window.deliverStored(100, () => replayed.push(100))
    window.deliverStored(101, () => replayed.push(101))
    window.deliver(packet('live'), 1)
    assert.deepEqual(replayed, [100])
    window.acked(100)
    assert.deepEqual(replayed, [100, 101])
    assert.equal(client.sent.length, 0)
    window.acked(101)
    assert.deepEqual(client.sent.map((s) => s.topic), ['live'])
  })

  it('compacts its queue array over a long backlog without losing order', () => {
    const { window, client } = setup({ inflightWindow: 1, maxQueued: 5000 })
    for (let i = 0; i < 4000; i++) window.deliver(packet(`t/${i}`), 1)
    for (let id = 1; id <= 4000; id++) window.acked(id)
    assert.equal(client.sent.length, 4000)
    assert.ok(client.sent.every((s, i) => s.topic === `t/${i}`))
  })
})
