/**
 * src/persistence/route-table.ts on real gateway processes and a real redis-server:
 *  - exact across SUBACK: a message published on node A right after a subscriber on node B
 *    has its SUBACK reaches it (50 fresh filters, exact and wildcard);
 *  - a SUBSCRIBE of 100 fresh filters: its route changes go out in few script calls, each
 *    acknowledged once by each other node, and are exact across the SUBACK;
 *  - a message no other node subscribes to is delivered locally and makes no Redis command
 *    naming its topic (seen in MONITOR, in order, up to a marker on a routed topic);
 *  - wildcard filters route and a non-matching topic does not; an unsubscribed filter stops
 *    routing (a later SUBACK proves the node applied the removal: changes apply in order);
 *  - a topic whose "no other node" answer is cached is routed once another node subscribes to
 *    it exactly or by a wildcard (an exact filter drops only its own topic's cached answer);
 *  - a SIGKILLed node's routes go with the sweep; its persistent subscriber, resumed on
 *    another node, gets every message published meanwhile (from the store's queue);
 *  - a restarted node loads the others' routes and announces its own.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { connectClient, connectCollecting, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

const MEMBERS_KEY = 'mqgw:{routes}:members'

describe('cluster route table (real redis-server, three gateway processes)', () => {
  const redis = new TestRedis()
  let a: ClusterNode
  let b: ClusterNode
  let c: ClusterNode
  let db: Redis
  let monitor: Redis
  /** Every command Redis ran while the test watched: its arguments as strings. */
  const commands: string[][] = []
  // sessionExpiryS 2: the janitor sweeps every 500 ms and a dead node's heartbeat lapses after 1.5 s.
  const persistence = { sessionExpiryS: 2 }

  before(async () => {
    await redis.start()
    ;[a, b, c] = await Promise.all([startNode(redis, 'rt-a', { persistence }), startNode(redis, 'rt-b', { persistence }), startNode(redis, 'rt-c', { persistence })])
    db = redis.client()
    monitor = await redis.monitor((args) => { commands.push(args) })
  })
  after(async () => {
    monitor.disconnect()
    db.disconnect()
    await Promise.all([a.stop(), b.stop(), c.stop()])
    await redis.stop()
  })

  /** Bus commands since `from` that name `topic` (a PUBLISH's channel, or an argument of the batch script). */
  const naming = (from: number, topic: string): string[][] => commands.slice(from).filter((args) => /^(publish|evalsha|eval)$/i.test(args[0] ?? '') && args.includes(topic))
  /** Waits until MONITOR has shown a command naming `topic`; returns the index after it. */
  const seen = async (topic: string): Promise<number> => {
    await waitFor(() => commands.some((args) => args.includes(topic)), `a Redis command naming ${topic}`)
    let last = commands.length - 1
    while (last >= 0 && !commands[last]!.includes(topic)) last--
    return last + 1
  }

  it('a message published on A and C right after a subscriber on B has its SUBACK reaches it (50 fresh filters)', async () => {
    const sub = await connectCollecting(b.url, { clientId: 'rt-exact-sub' })
    const pubA = await connectClient(a.url, { clientId: 'rt-exact-pub-a' })
    const pubC = await connectClient(c.url, { clientId: 'rt-exact-pub-c' })
    const missed: string[] = []
    try {
      for (let i = 0; i < 50; i++) {
        const filter = i % 2 === 0 ? `rt/exact/${i}` : `rt/exact/${i}/+`
        const topic = i % 2 === 0 ? filter : `rt/exact/${i}/x`
        await sub.client.subscribeAsync(filter, { qos: 1 })
        // The PUBLISHes go out the moment the SUBACK is in, on connections already open to A and C.
        await Promise.all([pubA.publishAsync(topic, `a${i}`, { qos: 1 }), pubC.publishAsync(topic, `c${i}`, { qos: 1 })])
        for (const m of [`a${i}`, `c${i}`]) {
          try {
            await waitFor(() => sub.received.some((r) => r.payload === m), `${m} on B`, 2000)
          } catch {
            missed.push(m)
          }
        }
      }
      assert.deepEqual(missed, [], 'every message published after its SUBACK is delivered')
      assert.equal(sub.received.length, 100, 'each once')
    } finally {
      await Promise.all([endClient(sub.client), endClient(pubA), endClient(pubC)])
    }
  })

  it('a storm of fresh filters (one SUBSCRIBE of 100, as a reconnect storm of per-user inboxes) goes out in few script calls, acknowledged once per call, and is exact across its SUBACK', async () => {
    const sub = await connectCollecting(b.url, { clientId: 'rt-storm-sub' })
    const pubA = await connectClient(a.url, { clientId: 'rt-storm-pub-a' })
    const pubC = await connectClient(c.url, { clientId: 'rt-storm-pub-c' })
    try {
      const filters = Array.from({ length: 100 }, (_, i) => i % 4 === 3 ? `rt/storm/${i}/+` : `rt/storm/${i}`)
      const from = commands.length
      await sub.client.subscribeAsync(filters, { qos: 1 })
      await Promise.all(filters.map((f, i) => Promise.all([
        pubA.publishAsync(f.replace('+', 'x'), `a${i}`, { qos: 1 }),
        pubC.publishAsync(f.replace('+', 'x'), `c${i}`, { qos: 1 })
      ])))
      await waitFor(() => sub.received.length >= 200, 'the 200 messages on B')
      assert.deepEqual(sub.received.map((m) => m.payload).sort(), filters.flatMap((_, i) => [`a${i}`, `c${i}`]).sort(), 'each once')
      const scriptCalls = commands.slice(from).filter((args) => /^(evalsha|eval)$/i.test(args[0] ?? '') && args[3] === MEMBERS_KEY && args.some((x) => x.startsWith('rt/storm/')))
      const acks = commands.slice(from).filter((args) => /^publish$/i.test(args[0] ?? '') && (args[1] ?? '').endsWith('\0rt-b') && (args[2] ?? '').startsWith('a:'))
      // One call per filter before batching (100, and 200 acknowledgements).
      assert.ok(scriptCalls.length >= 1 && scriptCalls.length <= 20, `route changes of one SUBSCRIBE in few script calls (${scriptCalls.length})`)
      assert.ok(acks.length <= 2 * scriptCalls.length, `one acknowledgement per call from each other node (${acks.length} for ${scriptCalls.length} calls)`)
    } finally {
      await Promise.all([endClient(sub.client), endClient(pubA), endClient(pubC)])
    }
  })

  it('a message with no subscriber on another node is delivered locally and makes no Redis command; a marker proves the path', async () => {
    const local = await connectCollecting(a.url, { clientId: 'rt-local-sub' })
    const remote = await connectCollecting(b.url, { clientId: 'rt-local-remote' })
    const pub = await connectClient(a.url, { clientId: 'rt-local-pub' })
    try {
      await local.client.subscribeAsync('rt/local/only', { qos: 1 })
      await remote.client.subscribeAsync('rt/local/marker', { qos: 1 })
      const from = commands.length
      await Promise.all(Array.from({ length: 100 }, (_, i) => pub.publishAsync('rt/local/only', `l${i}`, { qos: 1 })))
      // Also a topic nobody subscribes to at all (upstream-only telemetry), and a retained one:
      // retained messages are the store's, not the bus's (read by a later subscriber below).
      await pub.publishAsync('rt/local/nobody', 'n', { qos: 1 })
      await pub.publishAsync('rt/local/retained', 'kept', { qos: 1, retain: true })
      await pub.publishAsync('rt/local/marker', 'marker', { qos: 1 })
      await waitFor(() => remote.received.some((m) => m.payload === 'marker'), 'the marker on B')
      const upTo = await seen('rt/local/marker')
      // Two subscribers' sockets: the marker on B's may overtake A's local deliveries (Nagle
      // holds a write while the subscriber's delayed ACK of its SUBACK is out, up to 40 ms).
      await waitFor(() => local.received.length >= 100, 'the 100 local deliveries on A')
      assert.deepEqual(local.received.map((m) => m.payload), Array.from({ length: 100 }, (_, i) => `l${i}`), 'all delivered locally, in order')
      assert.deepEqual(naming(from, 'rt/local/only'), [], 'no PUBLISH or script call for a topic no other node wants')
      assert.deepEqual(naming(from, 'rt/local/nobody'), [])
      assert.ok(upTo > from, 'MONITOR saw the marker after the messages')
      assert.deepEqual(remote.received.map((m) => m.payload), ['marker'])
      await remote.client.subscribeAsync('rt/local/retained', { qos: 1 })
      await waitFor(() => remote.received.some((m) => m.payload === 'kept' && m.retain), 'the retained message on B')
    } finally {
      await Promise.all([endClient(local.client), endClient(remote.client), endClient(pub)])
    }
  })

  it('wildcard filters route what they match only; an unsubscribed filter stops routing', async () => {
    const sub = await connectCollecting(b.url, { clientId: 'rt-wild-sub' })
    const pub = await connectClient(a.url, { clientId: 'rt-wild-pub' })
    try {
      await sub.client.subscribeAsync({ 'rt/wild/+/temp': { qos: 1 }, 'rt/deep/#': { qos: 1 } })
      let from = commands.length
      for (const t of ['rt/wild/x/temp', 'rt/wild/x/hum', 'rt/deep', 'rt/deep/a/b/c', 'rt/wild/x/temp/more']) await pub.publishAsync(t, t, { qos: 1 })
      await pub.publishAsync('rt/deep/marker', 'marker1', { qos: 1 })
      await waitFor(() => sub.received.some((m) => m.payload === 'marker1'), 'marker1')
      await seen('rt/deep/marker')
      assert.deepEqual(sub.received.map((m) => m.topic), ['rt/wild/x/temp', 'rt/deep', 'rt/deep/a/b/c', 'rt/deep/marker'])
      assert.deepEqual(naming(from, 'rt/wild/x/hum'), [], 'not matched by any filter of B')
      assert.deepEqual(naming(from, 'rt/wild/x/temp/more'), [])
      assert.equal(naming(from, 'rt/wild/x/temp').length, 1)

      await sub.client.unsubscribeAsync('rt/wild/+/temp')
      // Route changes of one node apply in order everywhere: once this SUBACK is in, A has
      // applied the removal before it.
      await sub.client.subscribeAsync('rt/after-unsub', { qos: 1 })
      from = commands.length
      await pub.publishAsync('rt/wild/y/temp', 'gone', { qos: 1 })
      await pub.publishAsync('rt/after-unsub', 'marker2', { qos: 1 })
      await waitFor(() => sub.received.some((m) => m.payload === 'marker2'), 'marker2')
      await seen('rt/after-unsub')
      assert.deepEqual(naming(from, 'rt/wild/y/temp'), [], 'no longer routed after UNSUBSCRIBE')
      assert.equal(sub.received.filter((m) => m.payload === 'gone').length, 0)
    } finally {
      await Promise.all([endClient(sub.client), endClient(pub)])
    }
  })

  it('a topic cached as wanted by no other node is routed once another node subscribes to it, exactly or by a wildcard; an exact unsubscribe stops it', async () => {
    const sub = await connectCollecting(b.url, { clientId: 'rt-cache-sub' })
    const pub = await connectClient(a.url, { clientId: 'rt-cache-pub' })
    try {
      await sub.client.subscribeAsync('rt/cache/marker', { qos: 1 })
      // A answers "no other node" for these and caches the answers (no Redis command names them).
      let from = commands.length
      for (const t of ['rt/cache/exact', 'rt/cache/wild/x', 'rt/cache/other']) await pub.publishAsync(t, `early ${t}`, { qos: 1 })
      await pub.publishAsync('rt/cache/marker', 'm1', { qos: 1 })
      await waitFor(() => sub.received.some((m) => m.payload === 'm1'), 'm1')
      await seen('rt/cache/marker')
      for (const t of ['rt/cache/exact', 'rt/cache/wild/x', 'rt/cache/other']) assert.deepEqual(naming(from, t), [], `${t} not routed yet`)
      // An exact filter drops only its own topic's answer, a wildcard filter every answer.
      await sub.client.subscribeAsync('rt/cache/exact', { qos: 1 })
      await sub.client.subscribeAsync('rt/cache/wild/+', { qos: 1 })
      for (const t of ['rt/cache/exact', 'rt/cache/wild/x', 'rt/cache/other']) await pub.publishAsync(t, `late ${t}`, { qos: 1 })
      await pub.publishAsync('rt/cache/marker', 'm2', { qos: 1 })
      await waitFor(() => sub.received.some((m) => m.payload === 'm2'), 'm2')
      await waitFor(() => sub.received.filter((m) => m.payload.startsWith('late ')).length >= 2, 'the two late messages')
      assert.deepEqual(sub.received.map((m) => m.payload).filter((p) => p.includes('rt/cache/')).sort(), ['late rt/cache/exact', 'late rt/cache/wild/x'])
      await sub.client.unsubscribeAsync('rt/cache/exact')
      await sub.client.subscribeAsync('rt/cache/after', { qos: 1 })
      from = commands.length
      await pub.publishAsync('rt/cache/exact', 'gone', { qos: 1 })
      await pub.publishAsync('rt/cache/marker', 'm3', { qos: 1 })
      await waitFor(() => sub.received.some((m) => m.payload === 'm3'), 'm3')
      await seen('rt/cache/marker')
      assert.deepEqual(naming(from, 'rt/cache/exact'), [], 'no longer routed after the exact UNSUBSCRIBE')
    } finally {
      await Promise.all([endClient(sub.client), endClient(pub)])
    }
  })

  it('a node that does not acknowledge (SIGSTOPped): the SUBACK waits out its lease, no longer once it is silent; then its messages reach the subscriber', async () => {
    // Its own heartbeat outlives the stop (sessionExpiryS 8: lapses 6 s after the last one), so it stays a member.
    const d = await startNode(redis, 'rt-d', { persistence: { sessionExpiryS: 8 } })
    // D's ticks (to itself, on its reply channel): when its last one went through Redis.
    const ticks = redis.client()
    let lastTickOfD = 0
    ticks.on('message', (_channel: string, message: string) => { if (message.startsWith('t:')) lastTickOfD = Date.now() })
    await ticks.subscribe('mqgw\0routes\0rt-d')
    const sub = await connectCollecting(b.url, { clientId: 'rt-stop-sub' })
    const pubD = await connectClient(d.url, { clientId: 'rt-stop-pub-d' })
    const pubA = await connectClient(a.url, { clientId: 'rt-stop-pub-a' })
    try {
      await waitFor(() => lastTickOfD > 0, 'a tick of D')
      process.kill(d.child.pid!, 'SIGSTOP')
      const started = Date.now()
      try {
        await sub.client.subscribeAsync('rt/stopped', { qos: 1 })
        const subackAt = Date.now()
        // D's lease comes from its own ticks: it may skip Redis until 2000 ms (LEASE_MS) after its last one.
        assert.ok(subackAt - lastTickOfD >= 2000, `SUBACK ${subackAt - lastTickOfD} ms after D's last tick`)
        assert.ok(subackAt - started < 5000, `SUBACK after ${subackAt - started} ms`)
        // D has now been silent for longer than its lease: a new route does not wait for it (it
        // would wait 2.2 s if the wait were counted from the change rather than from D's last tick).
        const second = Date.now()
        await sub.client.subscribeAsync('rt/stopped-2', { qos: 1 })
        assert.ok(Date.now() - second < 2000, `second SUBACK after ${Date.now() - second} ms with D silent`)
        await pubA.publishAsync('rt/stopped', 'from-a', { qos: 1 })
        // Written while D is stopped; D reads them, and the route changes, once continued.
        pubD.publish('rt/stopped', 'from-d', { qos: 1 })
        pubD.publish('rt/stopped-2', 'from-d-2', { qos: 1 })
      } finally {
        process.kill(d.child.pid!, 'SIGCONT')
      }
      await waitFor(() => sub.received.some((m) => m.payload === 'from-d') && sub.received.some((m) => m.payload === 'from-d-2'), 'the stopped node\'s messages')
      assert.deepEqual(sub.received.map((m) => m.payload).sort(), ['from-a', 'from-d', 'from-d-2'])
    } finally {
      ticks.disconnect()
      await Promise.all([endClient(sub.client), endClient(pubD), endClient(pubA)])
      await d.stop()
    }
  })

  it('a SIGKILLed node: routed to until the sweep, not after; its persistent subscriber resumed elsewhere gets every message', async () => {
    const persistent = { clientId: 'rt-kill-sub', clean: false }
    const first = await connectClient(c.url, persistent)
    await first.subscribeAsync('rt/kill/#', { qos: 1 })
    const pub = await connectClient(a.url, { clientId: 'rt-kill-pub' })
    try {
      await c.crash()
      // Before the sweep: still routed to the dead node (a useless PUBLISH, nothing lost).
      await pub.publishAsync('rt/kill/1', 'k1', { qos: 1 })
      const members = await pollUntil(() => db.hkeys(MEMBERS_KEY), (m) => !m.includes('rt-c'), 10000)
      assert.ok(!members.includes('rt-c'), 'the sweep removed the dead node from the table')
      // A learns of the removal through the control channel; a SUBACK on B after it proves it
      // (A acknowledged B's later change after applying the removal).
      const probe = await connectClient(b.url, { clientId: 'rt-kill-probe' })
      await probe.subscribeAsync('rt/kill-probe', { qos: 0 })
      const from = commands.length
      for (let i = 2; i <= 10; i++) await pub.publishAsync(`rt/kill/${i}`, `k${i}`, { qos: 1 })
      await pub.publishAsync('rt/kill-probe', 'marker', { qos: 1 })
      await seen('rt/kill-probe')
      for (let i = 2; i <= 10; i++) assert.deepEqual(naming(from, `rt/kill/${i}`), [], `rt/kill/${i} not routed to the dead node`)
      await endClient(probe)
      // Nothing lost: the session resumes on B with every message (queued by the store at A).
      const resumed = await connectCollecting(b.url, persistent)
      await waitFor(() => resumed.received.length >= 10, 'the 10 queued messages', 10000)
      assert.deepEqual(resumed.received.map((m) => m.payload).sort(), Array.from({ length: 10 }, (_, i) => `k${i + 1}`).sort())
      await endClient(resumed.client)
    } finally {
      await endClient(first, true)
      await endClient(pub)
    }
  })

  it('a restarted node loads the others\' routes and announces its own', async () => {
    c = await startNode(redis, 'rt-c', { persistence })
    const onB = await connectCollecting(b.url, { clientId: 'rt-re-b' })
    await onB.client.subscribeAsync('rt/restart/to-b', { qos: 1 })
    const onC = await connectCollecting(c.url, { clientId: 'rt-re-c' })
    await onC.client.subscribeAsync('rt/restart/to-c', { qos: 1 })
    const pubC = await connectClient(c.url, { clientId: 'rt-re-pub-c' })
    const pubA = await connectClient(a.url, { clientId: 'rt-re-pub-a' })
    try {
      const from = commands.length
      await pubC.publishAsync('rt/restart/to-b', 'c-to-b', { qos: 1 })
      await pubC.publishAsync('rt/restart/nobody', 'n', { qos: 1 })
      await pubA.publishAsync('rt/restart/to-c', 'a-to-c', { qos: 1 })
      await waitFor(() => onB.received.some((m) => m.payload === 'c-to-b'), 'C routes to B after its restart')
      await waitFor(() => onC.received.some((m) => m.payload === 'a-to-c'), 'A routes to the restarted C')
      await seen('rt/restart/to-c')
      assert.deepEqual(naming(from, 'rt/restart/nobody'), [], 'the restarted node skips Redis for a topic nobody else wants')
    } finally {
      await Promise.all([endClient(onB.client), endClient(onC.client), endClient(pubC), endClient(pubA)])
    }
  })
})
