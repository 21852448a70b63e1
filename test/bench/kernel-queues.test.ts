import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { readQueues, startQueueSampler, summariseQueues } from '../../bench/kernel-queues.js'
import { waitFor } from '../helpers/mqtt.js'

/**
 * bench/kernel-queues.ts reads what fanin-90 reports as "tail in kernel", on real loopback TCP
 * connections: a "publisher" whose bytes the server does not read (server Recv-Q, then the
 * client's Send-Q) and a "subscriber" that does not read what the server writes (client Recv-Q,
 * then the server's Send-Q); readQueues attributes each to the right end of the right
 * connection and summariseQueues tells the two apart and converts bytes to ms at the rate.
 */
describe('bench kernel-queues', () => {
  let server: net.Server
  let port: number
  const accepted: net.Socket[] = []
  let pub: net.Socket
  let sub: net.Socket

  const connect = async (): Promise<net.Socket> => {
    const n = accepted.length
    const c = net.connect(port, '127.0.0.1')
    // Destroyed with unread bytes at the end: the peer may see a reset, which is not this test's subject.
    c.on('error', () => {})
    await once(c, 'connect')
    await waitFor(() => accepted.length > n, 'the server accepted the connection', 2000)
    return c
  }

  before(async () => {
    server = net.createServer((s) => { s.on('error', () => {}); s.pause(); accepted.push(s) })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as net.AddressInfo).port
    pub = await connect()
    sub = await connect()
    sub.pause()
  })
  after(async () => {
    for (const s of [pub, sub, ...accepted]) s.destroy()
    server.close()
    await once(server, 'close')
  })

  it('unread bytes show at the end that did not read them, on the connection that carried them', async () => {
    // A paused socket's stream takes one high-water mark (16 KiB), the rest stays in the kernel.
    pub.write(Buffer.alloc(1 << 20, 1))
    accepted[1]!.write(Buffer.alloc(1 << 20, 2))
    const of = (c: net.Socket): [number, number, number, number, number] | undefined => readQueues(port).find((q) => q[0] === c.localPort)
    await waitFor(() => (of(pub)?.[2] ?? 0) > 32 * 1024 && (of(sub)?.[4] ?? 0) > 32 * 1024, 'both queues filled', 5000)
    const [, pubServerSend, pubServerRecv, pubClientSend, pubClientRecv] = of(pub)!
    const [, subServerSend, subServerRecv, subClientSend, subClientRecv] = of(sub)!
    assert.equal(readQueues(port).length, 2)
    assert.deepEqual([pubServerSend, pubClientRecv, subServerRecv, subClientSend], [0, 0, 0, 0])
    // Send-Q is what the peer has not acknowledged: it may include bytes already in the peer's Recv-Q.
    assert.ok(pubServerRecv > 32 * 1024 && pubServerRecv <= 1 << 20 && pubClientSend >= (1 << 20) - pubServerRecv - 64 * 1024 && pubClientSend <= 1 << 20, `publisher: server Recv-Q ${pubServerRecv}, client Send-Q ${pubClientSend}`)
    assert.ok(subClientRecv > 32 * 1024 && subClientRecv <= 1 << 20 && subServerSend >= (1 << 20) - subClientRecv - 64 * 1024 && subServerSend <= 1 << 20, `subscriber: client Recv-Q ${subClientRecv}, server Send-Q ${subServerSend}`)
  })

  it('the sampler records them and the summary tells publisher from subscriber, in ms at the rate', async () => {
    const t0 = Date.now()
    const sampler = startQueueSampler(port, 10)
    await waitFor(() => Date.now() - t0 >= 150, '150 ms of samples', 2000)
    const samples = sampler.stop()
    assert.ok(samples.length >= 5, `${samples.length} samples`)
    const last = samples[samples.length - 1]!.conns
    const pubRecv = last.find((q) => q[0] === pub.localPort)![2]
    const subRecv = last.find((q) => q[0] === sub.localPort)![4]
    // 1,000 msgs/s of 100 B over 2 publishers (the subscriber's connection is not one): 50 B per ms
    // per publisher, 100 B per ms for the subscriber. Nothing is read meanwhile, so the queues hold still.
    const s = summariseQueues(samples, t0, [1, 1], 1, 1000, 100, 2)
    assert.equal(s.pubRecvQ.max, pubRecv / 50)
    assert.equal(s.subRecvQ.max, subRecv / 100)
    assert.ok(s.pubRecvQ.meanInSlowSlices > 0 && s.subRecvQ.meanInSlowSlices > 0)
  })
})
