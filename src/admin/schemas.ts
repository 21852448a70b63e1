import { z } from 'zod'

/** Request and answer schemas of the core's /api/v1 endpoints (plugins bring their own). */

const limit = z.coerce.number().int().min(1).max(1000).default(100).describe('items per page (1-1000)')
const page = z.coerce.number().int().min(1).default(1).describe('page number, from 1')

export const clientsQuery = z.strictObject({
  page,
  limit,
  clientid: z.string().min(1).optional().describe('client id prefix'),
  username: z.string().min(1).optional().describe('exact user name'),
  listener: z.string().min(1).optional().describe('listener name: mqtt, mqtts, ws, wss'),
  address: z.string().min(1).optional().describe('exact client address (after PROXY protocol / X-Forwarded-For)')
})

export const clientSummary = z.object({
  clientId: z.string(),
  username: z.string().nullable(),
  listener: z.string(),
  address: z.string(),
  port: z.number().int(),
  connectedAt: z.iso.datetime(),
  protocolVersion: z.number().int().nullable(),
  clean: z.boolean().nullable()
})

export const clientsAnswer = z.object({
  node: z.string(),
  page: z.number().int(),
  limit: z.number().int(),
  /** Clients matching the filters on this node, all pages. */
  total: z.number().int(),
  data: z.array(clientSummary)
})

export const subscriptionItem = z.object({ clientId: z.string(), filter: z.string(), qos: z.number().int().min(0).max(2) })

export const clientDetails = clientSummary.extend({
  node: z.string(),
  keepaliveS: z.number().int().nullable(),
  superuser: z.boolean(),
  /** Unacknowledged QoS 1/2 messages sent to it (the flow plugin's window; null without it). */
  inflight: z.number().int().nullable(),
  /** Messages waiting behind the window (null without the flow plugin). */
  queued: z.number().int().nullable(),
  subscriptions: z.array(z.object({ filter: z.string(), qos: z.number().int() }))
})

export const kickAnswer = z.object({ clientId: z.string(), kicked: z.literal(true) })

export const subscriptionsQuery = z.strictObject({
  page,
  limit,
  clientid: z.string().min(1).optional().describe('exact client id'),
  filter: z.string().min(1).optional().describe('exact topic filter as subscribed'),
  topic: z.string().min(1).optional().describe('a topic name: the subscriptions that match it')
})

export const subscriptionsAnswer = z.object({ node: z.string(), page: z.number().int(), limit: z.number().int(), total: z.number().int(), data: z.array(subscriptionItem) })
export const countAnswer = z.object({ node: z.string(), count: z.number().int() })

export const sessionAnswer = z.object({
  clientId: z.string(),
  /** Connected now (on any node in Redis mode). */
  online: z.boolean(),
  /** The node it is connected to, when online and known. */
  node: z.string().nullable(),
  subscriptions: z.array(z.object({ filter: z.string(), qos: z.number().int() })),
  /** Messages queued in the store for it. */
  queued: z.number().int()
})
export const sessionDeleted = z.object({ clientId: z.string(), deleted: z.literal(true), droppedMessages: z.number().int() })

export const retainedQuery = z.strictObject({
  filter: z.string().min(1).default('#').describe('MQTT topic filter the topics must match'),
  limit,
  cursor: z.string().min(1).optional().describe('`next` of the previous page')
})
export const retainedItem = z.object({
  topic: z.string(),
  qos: z.number().int(),
  bytes: z.number().int(),
  /** The payload as base64 (payloads are opaque bytes). */
  payload: z.string()
})
export const retainedAnswer = z.object({
  data: z.array(retainedItem),
  /** Pass as `cursor` for the next page; absent on the last page. */
  next: z.string().optional()
})
export const retainedDeleted = z.object({ topic: z.string(), deleted: z.literal(true) })

export const nodeAnswer = z.object({
  node: z.string(),
  version: z.string(),
  startedAt: z.iso.datetime(),
  uptimeS: z.number(),
  listeners: z.array(z.object({ name: z.string(), host: z.string(), port: z.number().int() })),
  plugins: z.array(z.string()),
  persistence: z.object({ type: z.string(), available: z.boolean() }),
  connections: z.number().int(),
  ready: z.boolean()
})

export const reloadAnswer = z.object({
  ok: z.boolean(),
  plugins: z.array(z.object({ plugin: z.string(), ok: z.boolean(), error: z.string().optional() }))
})
