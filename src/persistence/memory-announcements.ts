import type { Aedes, Client } from 'aedes'
import { replaceClientAnnouncement, replaceClientGoneAnnouncement, takeoverCheckOf } from '../aedes/internals.js'
import type { LocalBus } from '../bus/local-bus.js'

/**
 * Memory mode is one process: no other node announces a client or needs to hear of one.
 * Aedes still publishes `$SYS/<node>/new/clients` at every CONNECT and `disconnect/clients`
 * at every disconnect, for its takeover check on other nodes; here that check (which ignores
 * this node's own announcements) is removed, and each announcement is published only when a
 * listener would hear it (a client subscribed to `$SYS/+/new/clients`, a plugin). Otherwise
 * it cost a Packet, Aedes' publish series and a bus emit per CONNECT and per disconnect
 * (issue #14, connect rate). A same-node takeover is Aedes' registerClient, not this.
 */
export function announceOnlyWhenHeard (broker: Aedes, bus: LocalBus): void {
  const check = takeoverCheckOf(broker)
  bus.removeListener(check.filter, check.listener)
  const publishWhenHeard = (topic: string) => (client: Client): void => {
    if (bus.listenersOf(topic).length === 0) return
    broker.publish({ cmd: 'publish', topic, payload: Buffer.from(client.id, 'utf8'), qos: 0, retain: false, dup: false }, () => {})
  }
  replaceClientAnnouncement(broker, publishWhenHeard(`$SYS/${broker.id}/new/clients`))
  replaceClientGoneAnnouncement(broker, publishWhenHeard(`$SYS/${broker.id}/disconnect/clients`))
}
