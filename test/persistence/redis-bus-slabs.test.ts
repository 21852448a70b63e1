/**
 * src/persistence/redis-bus.ts' batch buffers (slabs), with a fake Redis connection that keeps
 * each batch it is given as the view it got and settles it when the test says. ioredis copies a
 * command's arguments when it writes them, but a command waiting in its offline queue (Redis
 * reconnecting) or for a Cluster slot holds the view until then: a slab may be reused only once
 * every batch written into it is settled. Here early batches stay unsettled while later turns
 * fill and retire many slabs; the early ones must still read as what was published. (Against a
 * real Redis, batches through a stopped or reconnecting Redis: redis-bus.test.ts.)
 */
import assert from 'node:assert/strict'
import { setImmediate as turn } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { decodeBusMessage } from '../../src/persistence/bus-codec.js'
import { localFirstBus } from '../../src/persistence/redis-bus.js'
import { noop } from '../../src/noop.js'

interface Held { batch: Buffer, settle: () => void }

/** The messages of a PUBLISH_PACKED batch: `[u16 channel length][channel][u32 length][payload]` each. */
function unpackBatch (batch: Buffer): Array<{ channel: string, payload: string }> {
  const out: Array<{ channel: string, payload: string }> = []
  for (let at = 0; at < batch.length;) {
    const channelEnd = at + 2 + batch.readUInt16BE(at)
    const end = channelEnd + 4 + batch.readUInt32BE(channelEnd)
    const msg = decodeBusMessage(batch.subarray(channelEnd + 4, end)).msg as { topic: string, payload?: Buffer }
    out.push({ channel: batch.toString('utf8', at + 2, channelEnd), payload: msg.payload?.toString() ?? '' })
    at = end
  }
  return out
}

function fakeBus (): { bus: { emit: (msg: object, done?: (err?: Error) => void) => void }, batches: Held[] } {
  const batches: Held[] = []
  const take = (batch: Buffer): Promise<number> => new Promise((resolve) => batches.push({ batch, settle: () => resolve(1) }))
  const bus = {
    pubConn: {
      defineCommand: noop,
      mqgwPublishPacked: take,
      // One message: a plain PUBLISH of views into the batch; kept as one batch of its own.
      publish: (channel: Buffer, payload: Buffer) => take(Buffer.concat([Buffer.from([channel.length >> 8, channel.length & 255]), channel, Buffer.from([0, 0, payload.length >> 8, payload.length & 255]), payload]))
    },
    subConn: { removeAllListeners: noop, on: noop },
    _matcher: { match: () => [] },
    _onError: noop,
    emit: noop as (msg: object, done?: (err?: Error) => void) => void
  }
  localFirstBus(bus, noop)
  return { bus, batches }
}

describe('Redis bus: batch buffers reused only when their batches are settled', () => {
  it('batches that Redis has not answered keep their bytes while later turns fill and retire many buffers (~6 MB)', async () => {
    const { bus, batches } = fakeBus()
    const payload = (t: number, i: number): string => `${t}.${i}:${String.fromCharCode(65 + ((t * 5 + i) % 26)).repeat(20000)}`
    const expected = (t: number): Array<{ channel: string, payload: string }> => Array.from({ length: 5 }, (_, i) => ({ channel: `slab/${t}`, payload: payload(t, i) }))
    const acked: string[] = []
    const turns = 60
    for (let t = 0; t < turns; t++) {
      for (let i = 0; i < 5; i++) {
        const p = payload(t, i)
        bus.emit({ cmd: 'publish', brokerId: 'node-a', brokerCounter: t * 5 + i, topic: `slab/${t}`, payload: Buffer.from(p), qos: 1, retain: false, dup: false, messageId: undefined, clientId: 'c' }, (err) => {
          assert.equal(err, undefined)
          acked.push(p)
        })
      }
      await turn()
      assert.equal(batches.length, t + 1, 'one batch per turn')
      assert.deepEqual(unpackBatch(batches[t]!.batch), expected(t), `turn ${t}'s batch as sent`)
      // The first 10 turns' batches stay unanswered; later ones are answered at once (their
      // bytes may then be reused).
      if (t >= 10) batches[t]!.settle()
      await turn()
    }
    for (let t = 0; t < 10; t++) assert.deepEqual(unpackBatch(batches[t]!.batch), expected(t), `unanswered turn ${t}'s batch, byte for byte`)
    assert.equal(acked.length, (turns - 10) * 5, 'answered batches acknowledged, the others not')
    for (let t = 0; t < 10; t++) batches[t]!.settle()
    await turn()
    assert.equal(acked.length, turns * 5)
  })
})
