import { isValidTopicFilter } from '../topic.js'
import { InvalidCursorError, SessionOnlineError, type StoreInspector } from '../persistence/inspect.js'
import { AdminError, defineRoute, type AdminRegistry, type AdminScope } from './router.js'
import { retainedAnswer, retainedDeleted, retainedQuery, sessionAnswer, sessionDeleted } from './schemas.js'

/**
 * Persistent sessions and retained messages, read through the session store: in Redis mode
 * every node shares them, so the answers are cluster-wide.
 */
export function registerStoreRoutes (admin: AdminRegistry, inspector: StoreInspector, scope: AdminScope): void {
  admin.route(defineRoute({
    method: 'GET', path: '/sessions/{clientId}', scope, tag: 'sessions',
    summary: 'A persistent session (also one held by another node): subscriptions, queue length, online',
    response: sessionAnswer,
    errors: { 404: 'no persistent session for this client id' },
    handler: async ({ params }) => {
      const session = await inspector.session(params.clientId!)
      if (!session) throw new AdminError(404, `no persistent session for ${params.clientId}`)
      return session
    }
  }))

  admin.route(defineRoute({
    method: 'DELETE', path: '/sessions/{clientId}', scope, tag: 'sessions',
    changesState: true,
    summary: 'Deletes an offline persistent session: subscriptions, queued messages, owner',
    response: sessionDeleted,
    errors: { 404: 'no persistent session for this client id', 409: 'the session is connected (kick the client on its node first)' },
    handler: async ({ params }) => {
      const clientId = params.clientId!
      if (!await inspector.session(clientId)) throw new AdminError(404, `no persistent session for ${clientId}`)
      try {
        return { clientId, deleted: true as const, droppedMessages: await inspector.deleteSession(clientId) }
      } catch (err) {
        if (err instanceof SessionOnlineError) throw new AdminError(409, err.message)
        throw err
      }
    }
  }))

  admin.route(defineRoute({
    method: 'GET', path: '/retained', scope, tag: 'retained',
    summary: 'Retained messages whose topic matches a filter, paged by cursor',
    query: retainedQuery.refine((q) => isValidTopicFilter(q.filter), { message: 'not a valid MQTT topic filter', path: ['filter'] }),
    response: retainedAnswer,
    handler: async ({ query }) => {
      let page
      try {
        page = await inspector.retained(query.filter, query.limit, query.cursor)
      } catch (err) {
        if (err instanceof InvalidCursorError) throw new AdminError(400, err.message, 'query.cursor')
        throw err
      }
      return {
        data: page.items.map((m) => ({ topic: m.topic, qos: m.qos, bytes: m.payload.length, payload: m.payload.toString('base64') })),
        ...(page.next !== undefined ? { next: page.next } : {})
      }
    }
  }))

  admin.route(defineRoute({
    method: 'DELETE', path: '/retained/{topic}', scope, tag: 'retained',
    changesState: true,
    summary: 'Deletes the retained message of one topic (URL-encode the topic: a/b is a%2Fb)',
    response: retainedDeleted,
    errors: { 404: 'no retained message on this topic' },
    handler: async ({ params }) => {
      const topic = params.topic!
      if (topic.includes('+') || topic.includes('#')) throw new AdminError(400, 'a topic name, not a filter', 'path.topic')
      if (!await inspector.deleteRetained(topic)) throw new AdminError(404, `no retained message on ${topic}`)
      return { topic, deleted: true as const }
    }
  }))
}
