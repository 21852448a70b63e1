import type { Logger } from '../log.js'
import type { RouteTable } from './route-table.js'

interface Bus {
  on: (topic: string, cb: unknown, done?: () => void) => unknown
  removeListener: (topic: string, cb: unknown, done?: () => void) => unknown
}

/**
 * The bus's on()/removeListener are the seam: Aedes calls on() for each new filter of the
 * node (clients' subscriptions, its own `$SYS` listeners) and sends the SUBACK after its
 * `done`, which now also waits for the route to be known cluster-wide.
 */
export function routeBus (mq: object, routes: RouteTable, log: Logger): void {
  const bus = mq as Bus
  const on = bus.on.bind(bus)
  const removeListener = bus.removeListener.bind(bus)
  bus.on = (topic, cb, done) => {
    const subscribed = new Promise<void>((resolve) => { on(topic, cb, resolve) })
    const finish = (): void => { if (done !== undefined) done() }
    routes.added(topic, subscribed).then(finish, (err: Error) => {
      log.warn({ topic, err: err.message }, 'route announcement failed')
      finish()
    })
    return bus
  }
  bus.removeListener = (topic, cb, done) => {
    removeListener(topic, cb, done)
    routes.removed(topic)
    return bus
  }
}
