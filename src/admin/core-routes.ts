import type { Aedes } from 'aedes'
import { z } from 'zod'
import { connectedClients, keepaliveOf, outboundFlowOf, type ConnectedClient } from '../aedes/internals.js'
import type { ClientInfoLookup } from '../client-info.js'
import { covers } from '../topic.js'
import { AdminError, defineRoute, type AdminRegistry } from './router.js'
import { clientDetails, clientsAnswer, clientsQuery, countAnswer, kickAnswer, nodeAnswer, reloadAnswer, subscriptionsAnswer, subscriptionsQuery, type clientSummary } from './schemas.js'

export interface ReloadOutcome { plugin: string, ok: boolean, error?: string }

export interface CoreAdminDeps {
  nodeId: string
  version: string
  startedAt: number
  broker: Aedes
  clients: ClientInfoLookup
  listeners: () => Array<{ name: string, host: string, port: number }>
  plugins: () => string[]
  persistence: { type: string, available: () => boolean }
  ready: () => boolean
  reload: () => Promise<ReloadOutcome[]>
}

const paginate = <T>(items: T[], page: number, limit: number): T[] => items.slice((page - 1) * limit, page * limit)

/** Connected clients, their subscriptions, the node: this node's own state (`node` scope). */
export function registerCoreRoutes (admin: AdminRegistry, deps: CoreAdminDeps): void {
  const { broker } = deps

  const summary = (client: ConnectedClient): z.input<typeof clientSummary> => {
    const info = deps.clients.get(client)
    return {
      clientId: client.id,
      username: info?.username ?? null,
      listener: info?.listener ?? 'unknown',
      address: info?.remoteAddress ?? '',
      port: info?.remotePort ?? 0,
      connectedAt: new Date(info?.connectedAt ?? 0).toISOString(),
      protocolVersion: info?.protocolVersion ?? null,
      clean: info?.clean ?? null
    }
  }
  const connected = (clientId: string): ConnectedClient => {
    const client = connectedClients(broker)[clientId]
    if (!client) throw new AdminError(404, `client ${clientId} is not connected to this node`)
    return client
  }
  const subscriptionsOf = (client: ConnectedClient): Array<{ filter: string, qos: number }> =>
    Object.entries(client.subscriptions).map(([filter, sub]) => ({ filter, qos: (sub as { qos?: number }).qos ?? 0 }))

  admin.route(defineRoute({
    method: 'GET', path: '/clients', scope: 'node', tag: 'clients',
    summary: 'Clients connected to this node, filtered and paged',
    query: clientsQuery,
    response: clientsAnswer,
    handler: ({ query }) => {
      const all = Object.values(connectedClients(broker)).map(summary).filter((c) =>
        (query.clientid === undefined || c.clientId.startsWith(query.clientid)) &&
        (query.username === undefined || c.username === query.username) &&
        (query.listener === undefined || c.listener === query.listener) &&
        (query.address === undefined || c.address === query.address))
      all.sort((a, b) => a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)
      return { node: deps.nodeId, page: query.page, limit: query.limit, total: all.length, data: paginate(all, query.page, query.limit) }
    }
  }))

  admin.route(defineRoute({
    method: 'GET', path: '/clients/{clientId}', scope: 'node', tag: 'clients',
    summary: 'One connected client: since when, protocol, keepalive, in flight, queued, subscriptions',
    response: clientDetails,
    errors: { 404: 'not connected to this node' },
    handler: ({ params }) => {
      const client = connected(params.clientId!)
      const flow = outboundFlowOf(client)
      return {
        ...summary(client),
        node: deps.nodeId,
        keepaliveS: keepaliveOf(client),
        superuser: deps.clients.get(client)?.superuser ?? false,
        inflight: flow?.inflight ?? null,
        queued: flow?.queued ?? null,
        subscriptions: subscriptionsOf(client)
      }
    }
  }))

  admin.route(defineRoute({
    method: 'DELETE', path: '/clients/{clientId}', scope: 'node', tag: 'clients',
    changesState: true,
    summary: 'Disconnects a client (its persistent session stays; its will is published)',
    response: kickAnswer,
    errors: { 404: 'not connected to this node' },
    handler: ({ params }) => {
      connected(params.clientId!).close()
      return { clientId: params.clientId!, kicked: true as const }
    }
  }))

  const matchingSubscriptions = (query: z.output<typeof subscriptionsQuery>): Array<{ clientId: string, filter: string, qos: number }> => {
    const topic = query.topic?.split('/')
    const out: Array<{ clientId: string, filter: string, qos: number }> = []
    const clients = query.clientid !== undefined ? [connectedClients(broker)[query.clientid]].filter((c) => c !== undefined) : Object.values(connectedClients(broker))
    for (const client of clients) {
      for (const s of subscriptionsOf(client)) {
        if (query.filter !== undefined && s.filter !== query.filter) continue
        if (topic !== undefined && !covers(s.filter.split('/'), topic)) continue
        out.push({ clientId: client.id, ...s })
      }
    }
    return out.sort((a, b) => a.clientId === b.clientId ? (a.filter < b.filter ? -1 : 1) : a.clientId < b.clientId ? -1 : 1)
  }

  admin.route(defineRoute({
    method: 'GET', path: '/subscriptions', scope: 'node', tag: 'subscriptions',
    summary: 'Subscriptions of the clients connected to this node, by client, exact filter or a topic they match',
    query: subscriptionsQuery,
    response: subscriptionsAnswer,
    handler: ({ query }) => {
      const all = matchingSubscriptions(query)
      return { node: deps.nodeId, page: query.page, limit: query.limit, total: all.length, data: paginate(all, query.page, query.limit) }
    }
  }))

  admin.route(defineRoute({
    method: 'GET', path: '/subscriptions/count', scope: 'node', tag: 'subscriptions',
    summary: 'How many subscriptions match (same filters as the list)',
    query: subscriptionsQuery.omit({ page: true, limit: true }),
    response: countAnswer,
    handler: ({ query }) => ({ node: deps.nodeId, count: matchingSubscriptions({ ...query, page: 1, limit: 1 }).length })
  }))

  admin.route(defineRoute({
    method: 'GET', path: '/node', scope: 'node', tag: 'node',
    summary: 'This node: version, uptime, listeners, plugins, persistence',
    response: nodeAnswer,
    handler: () => ({
      node: deps.nodeId,
      version: deps.version,
      startedAt: new Date(deps.startedAt).toISOString(),
      uptimeS: Math.round((Date.now() - deps.startedAt) / 100) / 10,
      listeners: deps.listeners(),
      plugins: deps.plugins(),
      persistence: { type: deps.persistence.type, available: deps.persistence.available() },
      connections: broker.connectedClients,
      ready: deps.ready()
    })
  }))

  admin.route(defineRoute({
    method: 'POST', path: '/reload', scope: 'node', tag: 'node',
    changesState: true,
    summary: 'Reloads the plugins\' files, as SIGHUP does; a plugin that fails keeps its previous state',
    response: reloadAnswer,
    handler: async () => {
      const plugins = await deps.reload()
      return { ok: plugins.every((p) => p.ok), plugins }
    }
  }))
}
