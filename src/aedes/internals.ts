import type { Aedes, Client, PublishPacket } from 'aedes'
import * as aedesModule from 'aedes'

/**
 * The one place that knows Aedes 1.2's internals. Every other module reaches them
 * through these typed accessors, and every change to Aedes' behaviour lives either here
 * (src/aedes/*.ts, installed at run time) or in patches/aedes+1.2.0.patch:
 *
 * | change                                   | where                                 |
 * |------------------------------------------|---------------------------------------|
 * | publish before PUBACK, ack without publish | patch: lib/handlers/publish.js      |
 * | outbound flow window on deliveries       | patch: lib/client.js, connect, puback |
 * | one subscription save per SUBSCRIBE      | patch: lib/handlers/subscribe.js      |
 * | packet size and UTF-8 guards in the parser | packet-guard.ts (methods on the LeanParser prototype, once); patch: lib/client.js LeanParser declares their fields |
 * | one socket write per turn (TCP/TLS; WS: one frame per turn, listeners/ws-duplex.ts) | write-batching.ts |
 * | flowing-mode reads ('data' from the read callback, not 'readable' + read()); a read arriving while the previous read's packets are handled is put back and the stream paused, and what waited is parsed as one chunk when they are done (issue #15); client.pause()/resume() hold the stream; the CONNECT holds reads until its emptyQueue's resume() (the stored queue's replay needs the client's PUBACKs) | patch: lib/read-turns.js, lib/client.js onData, handlers/index.js |
 * | at most 4 full socket reads per turn, then the other sockets (TCP, TLS, WebSocket) | patch: lib/read-turns.js countLargeRead |
 * | message id counter of a Redis node       | internals.ts `continuePacketCounter`  |
 * | mqemitter-redis' local matcher           | internals.ts `replaceLocalMatcher`    |
 * | packets received and sent ($SYS)         | patch: lib/client.js, lib/write.js; internals.ts `packetCounters` |
 * | lean idle client (memory, issue #14)     | patch: lib/client.js, handlers/subscribe.js, publish.js, pubrel.js |
 * | one keepalive timer wheel for all clients (100 ms resolution) | patch: lib/keepalive-wheel.js, handlers/connect.js, handlers/index.js |
 * | a failed delete of the previous will at CONNECT handled, not an unhandled rejection (which ends the CLI) | patch: handlers/connect.js storeWill; aedes-persistence-redis putWill/delWill await every command |
 * | a same-node takeover's old connection no longer deletes the stored will, which by then is its successor's | patch: aedes.js registerClient, lib/client.js close |
 * | Redis store: the CONNECT's delete of the client's previous will uses this node's key (was `will:undefined:<id>`); the will left on the node that held the id before goes too | patch: aedes-persistence-redis delWill; persistence/client-registry.ts |
 * | CONNECT's stored-queue replay reads the store's own stream (one Readable less) | patch: lib/handlers/connect.js emptyQueue |
 * | a field for the gateway's connection record on every client (was a WeakMap entry) | patch: lib/client.js `mqgwRecord`; internals.ts `clientRecordOf` |
 * | per connection no closure for the connect timer and no once('connected') wrapper (the CONNECT's queued packets are handled by handlers/connect.js before it emits 'connected') | patch: lib/client.js connectTimedOut, `_dequeueAfterConnect`; handlers/connect.js |
 * | the memory store's empty queue replayed without a stream (almost every CONNECT) | patch: aedes-persistence outgoingStream, lib/handlers/connect.js emptyQueue |
 * | how other nodes learn of a client's arrival and departure: `announceClient` / `announceClientGone` (Aedes: a publish on $SYS/<id>/new/clients / disconnect/clients) replaceable, `closeTakenOverClient` callable | patch: aedes.js; Redis mode: persistence/client-registry.ts; memory mode (published only when someone listens): persistence/memory-announcements.ts |
 * | parser allocation (issue #14 fan-in): mqtt-packet's debug() calls only when enabled, `enabled` read once per parse() | patches/mqtt-packet+9.0.2.patch |
 * | PUBLISH and PUB* acks encoded into one buffer, one write() each (bytes as mqtt-packet's); PINGRESP one shared 2-byte buffer; an MQTT 3.1/3.1.1 CONNACK one shared 4-byte buffer per (Session Present, return code) | patch: lib/wire.js, lib/write.js |
 * | parser input read in place (no Buffer view per read or consume; the gateway's parser no longer reads through bl) | patch: lib/lean-list.js, lib/client.js LeanParser |
 * | keepalive deadline from the time of the socket read (one Date.now() per read, not per packet) | patch: lib/keepalive-wheel.js readArrived, lib/client.js |
 * | flow-window writes defer no completion callback; no bound writeCallback per QoSPacket | patch: lib/client.js sendQueuedQoS, lib/write.js, lib/qos-packet.js |
 * | write completions of one turn run from one setImmediate, in order (not one Immediate each) | patch: lib/write.js deferCompletion |
 * | no store call for a QoS 1/2 message with no offline subscriber | patch: aedes.js DoEnqueues |
 * | memory store: no trie walk while it holds no offline subscription | patches/aedes-persistence+11.0.0.patch |
 * | no store call on a clean session's PUBACK (its deliveries are never stored) | patch: lib/handlers/puback.js |
 * | Redis store: no trie walk while the cluster holds no persistent subscription | patches/aedes-persistence-redis+12.0.0.patch `holdsNoOfflineSubscriptions` |
 * | Redis bus subscriber: a pushed message (`message`, `pmessage`) recognised by its type's bytes, no toString, debug call or listener-array copy per message | patches/ioredis+5.11.1.patch DataHandler handleSubscriberReply |
 * | PUBLISH topic: `#`, `+` and the level count checked in one pass (was two indexOf calls and topicLevelCount's loop) | patch: lib/handlers/publish.js |
 *
 * CPU per QoS 1 message (issue #14), `compare qos1` (10 pairs, 32 in flight, Go generator),
 * broker CPU µs per message, before -> after these rows, from profiles of the gateway process
 * (`BENCH_GATEWAY_NODE_ARGS="--cpu-prof ..."`): ~15 -> ~5. The parts removed, in % of the
 * broker's busy time before: mqtt-packet's disabled debug() ~5-7 (rest arguments and a getter per
 * call, ~15 calls per packet; the guard in patches/mqtt-packet+9.0.2.patch, from the fan-in work); bl's Buffer views per parser read/consume ~15; six or three
 * write() calls per packet plus a cork and a nextTick each ~8; prom-client's labelled inc() ~2;
 * the store's empty subscriptionsByTopic (promise, topic split, trie walk) ~4; Date.now() per
 * packet ~2-3. What remains is flat: writev syscalls ~11, GC ~7, mqtt-packet's parse loop ~4,
 * then the bus match, authorizePublish, Aedes' Packet/QoSPacket copies at 1-3 each.
 *
 * Lean idle client: what an idle connection keeps, measured with `npm run bench -- memory`
 * (`--heap`: heap snapshots by constructor, 10,000 idle connections, bytes per connection
 * after GC). Before: 6,780 B of JS heap per connection; after: 3,430 B. The largest items removed:
 *
 * | what (constructor in the snapshot)                                   | B/conn | change in the patch                                   |
 * |----------------------------------------------------------------------|-------:|-------------------------------------------------------|
 * | mqtt-packet's `bl` BufferListStream (+ Writable/ReadableState, bind) |   ~650 | parser buffers in a plain BufferList (LeanParser)     |
 * | stream.finished(): 8 closures (onend, onclose, ...) + context        |   ~550 | one shared 'end'/'close' listener (closeClient)       |
 * | null-prototype tables: subscriptions, duplicates, parser _events      |   ~600 | shared frozen empty table until the first SUBSCRIBE; parser emits to its client directly |
 * | 4 x Function#bind (emit 'error', close) + bound arguments              |   ~290 | shared listeners reading `this.client`                |
 * | deliver0, deliverQoS, getToForwardPacket closures + context            |   ~250 | made on first use (getter), none for an idle client    |
 * | the CONNECT packet kept as parser.settings                             |   ~250 | one shared {protocolVersion, bridgeMode} per kind     |
 * | Set (inbound QoS 2 ids), pending-drains array, parser state-name array |   ~300 | made on first use / shared                            |
 *
 * What remains (3,430 B): the socket (TCPSocketWrap 408, Socket 328, Writable/ReadableState 200,
 * its events table ~200, TCP 56), the Aedes Client 320 and parser 152, the flow window 128, the
 * connection record ~136. The keepalive Timeout (120) and its closure and context (~100) per
 * client became one entry in lib/keepalive-wheel.js.
 */

/** Aedes' client fields the gateway reads (not in Aedes' type declarations). */
interface ClientInternals {
  /** The CONNECT's will, until it is published or discarded. */
  _will?: PublishPacket | null
  /** Installed by the flow plugin (`installOutboundFlow`); the patch routes deliveries through it. */
  outboundFlow?: OutboundFlow
}

/** An Aedes client with the fields Aedes sets but does not declare. */
export type ConnectedClient = Client & {
  /** The client's subscriptions by filter. */
  readonly subscriptions: Readonly<Record<string, unknown>>
}

/** Aedes' map of this node's connected clients by client id. */
export function connectedClients (broker: Aedes): Readonly<Record<string, ConnectedClient>> {
  return (broker as unknown as { clients: Record<string, ConnectedClient> }).clients
}

/**
 * The embedding application's record of a connection, in a field the patch declares on every
 * Aedes client (`mqgwRecord`): one in-object slot instead of a WeakMap entry, which cost a set
 * and several hashed lookups per CONNECT (and an ephemeron table entry per connection).
 */
export function clientRecordOf<R extends object> (client: Client): R | undefined {
  return ((client as unknown as { mqgwRecord?: R | null }).mqgwRecord) ?? undefined
}

export function setClientRecord (client: Client, record: object): void {
  ;(client as unknown as { mqgwRecord: object }).mqgwRecord = record
}

/**
 * Replaces how this node tells the other nodes that `client` connected (patch: Aedes'
 * `announceClient`, by default a broadcast on `$SYS/<node>/new/clients` to every node).
 */
export function replaceClientAnnouncement (broker: Aedes, announce: (client: Client) => void): void {
  (broker as unknown as { announceClient: (client: Client) => void }).announceClient = announce
}

/**
 * The patch's one-buffer encoder (lib/wire.js, exported by the patched aedes.js): PUBLISH and
 * PUBACK/PUBREC/PUBREL/PUBCOMP as mqtt-packet would write them (MQTT 3.1.1 framing), or null
 * for what it leaves to mqtt-packet (other packets, a topic over 65535 bytes, a payload that
 * is neither Buffer nor string).
 */
export const encodePacket = (aedesModule as unknown as { encodePacket: (packet: { cmd: string } & Record<string, unknown>) => Buffer | null }).encodePacket

/** Replaces how this node announces that `client` left (patch: Aedes' `announceClientGone`, by default a publish on `$SYS/<node>/disconnect/clients`). */
export function replaceClientGoneAnnouncement (broker: Aedes, announce: (client: Client) => void): void {
  (broker as unknown as { announceClientGone: (client: Client) => void }).announceClientGone = announce
}

/**
 * Aedes' check that closes this node's client when another node announces the same client id
 * on `$SYS/<node>/new/clients` (the listener the patch keeps as `_closeSameClients`), to be
 * removed where no other node can announce.
 */
export function takeoverCheckOf (broker: Aedes): { filter: string, listener: (packet: unknown, done: () => void) => void } {
  return { filter: '$SYS/+/new/clients', listener: (broker as unknown as { _closeSameClients: (packet: unknown, done: () => void) => void })._closeSameClients }
}

/** Closes this node's connection of `clientId` because another node took the id over (patch: Aedes' closeSameClients as a method). */
export function closeTakenOverClient (broker: Aedes, clientId: string, done: () => void): void {
  (broker as unknown as { closeTakenOverClient: (clientId: string, done: () => void) => void }).closeTakenOverClient(clientId, done)
}

/** The keepalive a connected client asked for, seconds (Aedes keeps only its timer interval). */
export function keepaliveOf (client: Client): number | null {
  const interval = (client as unknown as { _keepaliveInterval?: number })._keepaliveInterval
  return typeof interval === 'number' && interval > 0 ? Math.round((interval - 1) / 1500) : null
}

/** The promise API of an aedes-persistence store (memory or Redis), as far as the gateway uses it. */
export interface SessionStore {
  subscriptionsByClient: (client: { id: string }) => Promise<Array<{ topic: string, qos: number }>>
  cleanSubscriptions: (client: { id: string }) => Promise<unknown>
  outgoingStream: (client: { id: string }) => AsyncIterable<unknown>
  outgoingUpdate: (client: { id: string }, packet: object) => Promise<unknown>
  outgoingClearMessageId: (client: { id: string }, packet: { messageId: number }) => Promise<unknown>
  createRetainedStream: (pattern: string) => AsyncIterable<unknown>
  storeRetained: (packet: PublishPacket) => Promise<unknown>
  delWill: (client: { id: string, brokerId: string }) => Promise<unknown>
}

/** The broker's store behind Aedes' callback wrapper (both aedes-persistence stores keep it there). */
export function sessionStore (broker: Aedes): SessionStore {
  return (broker as unknown as { persistence: { asyncPersistence: SessionStore } }).persistence.asyncPersistence
}

/**
 * Publishes a message of the broker's own (no client), e.g. one consumed from Kafka;
 * resolves once Aedes stored and dispatched it. Aedes' declaration lacks this overload.
 */
export function publishAsBroker (broker: Aedes, packet: PublishPacket): Promise<void> {
  const publish = broker.publish as unknown as (p: PublishPacket, done: (err?: Error) => void) => void
  return new Promise((resolve, reject) => publish.call(broker, packet, (err) => err ? reject(err) : resolve()))
}

/** Errors of Aedes' background work (the dead-node will sweep); Aedes' typings list no 'error' event. */
export function onBrokerError (broker: Aedes, listener: (err: Error) => void): void {
  ;(broker as unknown as NodeJS.EventEmitter).on('error', listener)
}

/** The will a connecting client carries (read while its CONNECT is authorized). */
export function willOf (client: Client): PublishPacket | undefined {
  return (client as unknown as ClientInternals)._will ?? undefined
}

/**
 * The callback of Aedes' authorizePublish, as the patch extends it: `(null, false)`
 * acknowledges the PUBLISH (QoS 1/2) or drops the will without publishing it.
 */
export type AuthorizePublishDone = (error: Error | null, publish?: boolean) => void

/** Aedes' own error (patch): a QoS 1 PUBLISH whose publish failed is not acknowledged. */
export const PUBLISH_NOT_STORED = 'PUBLISH_NOT_STORED'

/** A connection under an outbound flow (the Aedes client's socket). */
export interface FlowConnection {
  /** True while the socket's buffer is above its high-water mark. */
  readonly writableNeedDrain: boolean
  write: (chunk: Buffer) => boolean
  once: (event: 'drain', listener: () => void) => unknown
}

/** A delivery as Aedes hands it to a client (an Aedes packet); read only. */
export interface OutboundPacket {
  topic: string
  payload?: Buffer | Uint8Array | string | null
  retain?: boolean
}

/** The Aedes client under an outbound flow (the patch adds sendQueuedQoS). */
export interface OutboundClient {
  readonly id: string
  readonly conn: FlowConnection
  readonly connected: boolean
  readonly connecting: boolean
  /** Set by Aedes once the client is closing: nothing more is sent. */
  readonly closed: boolean
  /** Sends a QoS 1/2 PUBLISH (message id, session store, write); returns its message id. */
  sendQueuedQoS: (packet: OutboundPacket, qos: number) => number
}

/**
 * What patches/aedes+1.2.0.patch calls on a client that has one (lib/client.js deliver
 * paths, lib/handlers/connect.js stored-queue replay, lib/handlers/puback.js).
 */
export interface OutboundFlow {
  /** A live delivery at its (already downgraded) QoS. */
  deliver: (packet: OutboundPacket, qos: number) => void
  /** A stored QoS 1/2 message replayed on reconnect; `send` writes it. */
  deliverStored: (messageId: number, send: () => void) => void
  /** The client acknowledged `messageId` (PUBACK). */
  acked: (messageId: number) => void
  /** Unacknowledged QoS 1/2 messages (for the admin API), when the flow keeps count. */
  readonly inflight?: number
  /** Messages waiting behind the window, when the flow keeps count. */
  readonly queued?: number
}

/** Installs a flow on a client before Aedes delivers anything to it. */
export function installOutboundFlow (client: Client, flow: OutboundFlow): void {
  ;(client as unknown as ClientInternals).outboundFlow = flow
}

export function outboundFlowOf (client: Client): OutboundFlow | undefined {
  return (client as unknown as ClientInternals).outboundFlow
}

/** The Aedes client as an outbound flow sees it. */
export function asOutboundClient (client: Client): OutboundClient {
  return client as unknown as OutboundClient
}

/**
 * Declared by a bus (Aedes' `mq`) whose listeners may call `done` before they return;
 * the patch then completes deliveries synchronously instead of deferring each one.
 */
export interface SyncDoneBus {
  readonly toleratesSyncDone: true
}

/**
 * Marks an mqemitter bus as tolerating a synchronous `done` (see SyncDoneBus). Only valid
 * for a bus without a concurrency limit: mqemitter's overflow queue is what recurses.
 */
export function declareSyncDone (mq: object): void {
  if ((mq as { concurrency?: number }).concurrency !== 0) throw new Error('declareSyncDone: the bus has a concurrency limit; its overflow queue would recurse on a synchronous done')
  ;(mq as { toleratesSyncDone?: boolean }).toleratesSyncDone = true
}

/**
 * Aedes numbers the packets it publishes from `broker.counter`, starting at 0 on every
 * start; with a shared store a restarted node would reuse ids it already used. Continue
 * from a value this node cannot have used before.
 */
export function continuePacketCounter (broker: Aedes, from: number): void {
  ;(broker as unknown as { counter: number }).counter = from
}

/** The matcher mqemitter uses for local listeners: it calls only add, remove and match. */
export interface LocalMatcher {
  add: (topic: string, value: object) => unknown
  remove: (topic: string, value: object) => unknown
  match: (topic: string) => unknown
}

/** Replaces mqemitter's own matcher (qlobber) of an mqemitter-redis bus. */
export function replaceLocalMatcher (mq: object, matcher: LocalMatcher): void {
  ;(mq as { _matcher: LocalMatcher })._matcher = matcher
}

/** mqemitter-redis' connection state emitter (its connection errors are emitted there). */
export function busStateOf (mq: object): NodeJS.EventEmitter {
  return (mq as { state: NodeJS.EventEmitter }).state
}

/** MQTT packets of any type received from and sent to clients since the counters were installed. */
export interface PacketCounts {
  received: number
  sent: number
}

/**
 * Installs (once) and returns the broker's packet counters, which the patch increments in
 * lib/client.js (each parsed packet) and lib/write.js (each packet Aedes writes). Without
 * this call nothing is counted (for $SYS/broker/messages/received and sent).
 */
export function packetCounters (broker: Aedes): PacketCounts {
  const b = broker as unknown as { mqgwPacketCounts?: PacketCounts }
  b.mqgwPacketCounts ??= { received: 0, sent: 0 }
  return b.mqgwPacketCounts
}

/** A packet written to a client without Aedes' write() (the flow window's QoS 0 path). */
export function countPacketSent (client: OutboundClient): void {
  const counts = (client as unknown as { broker?: { mqgwPacketCounts?: PacketCounts } }).broker?.mqgwPacketCounts
  if (counts !== undefined) counts.sent++
}
