import { z } from 'zod'
import { API_PREFIX, type AdminRoute } from './router.js'

type JsonSchema = Record<string, unknown>

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  // OpenAPI 3.1 uses JSON Schema 2020-12 as is; the $schema key is left out of embedded schemas.
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema
  return rest
}

const errorSchema: JsonSchema = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'string' }, field: { type: 'string', description: 'the request field at fault, e.g. query.limit or body.topic' } }
}

const errorResponse = (description: string): JsonSchema => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } })

/**
 * The OpenAPI 3.1 document of /api/v1, generated from the routes' zod schemas (the same
 * ones that validate requests and answers). `x-mqgw-scope` on each operation says whether
 * its answer covers this node only (`node`) or the cluster (`cluster`: data shared in Redis).
 */
export function openApiDocument (routes: readonly AdminRoute[], info: { version: string }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const route of routes) {
    const parameters: JsonSchema[] = []
    for (const m of route.path.matchAll(/\{([A-Za-z]+)\}/g)) {
      parameters.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })
    }
    if (route.query) {
      const q = toSchema(route.query, 'input') as { properties?: Record<string, JsonSchema>, required?: string[] }
      for (const [name, schema] of Object.entries(q.properties ?? {})) {
        const { description, ...rest } = schema as { description?: string }
        parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema: rest, ...(description ? { description } : {}) })
      }
    }
    const responses: Record<string, unknown> = {
      200: { description: 'OK', content: { 'application/json': { schema: toSchema(route.response, 'output') } } },
      401: errorResponse('missing or wrong bearer token'),
      503: errorResponse('the node is starting (waiting for its store)')
    }
    if (route.query || route.body || parameters.length > 0) responses[400] = errorResponse('bad request: `field` names the field at fault')
    for (const [status, description] of Object.entries(route.errors ?? {})) responses[status] = errorResponse(description)
    const operation: Record<string, unknown> = {
      operationId: route.method.toLowerCase() + route.path.split('/').map((seg) => {
        const param = /^\{([A-Za-z]+)\}$/.exec(seg)?.[1]
        const word = param !== undefined ? `By${param.charAt(0).toUpperCase()}${param.slice(1)}` : seg
        return word.charAt(0).toUpperCase() + word.slice(1)
      }).join(''),
      summary: route.summary,
      tags: [route.tag],
      'x-mqgw-scope': route.scope,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(route.body, 'input') } } } } : {}),
      responses
    }
    ;(paths[API_PREFIX + route.path] ??= {})[route.method.toLowerCase()] = operation
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'mqtt-gateway admin API',
      version: info.version,
      description: 'Served on the admin listener. Every operation needs `Authorization: Bearer <listeners.admin.apiToken>`. ' +
        '`x-mqgw-scope`: `node` answers cover this node only (connected clients, live subscriptions); ' +
        '`cluster` answers cover every node sharing the Redis store (persistent sessions, retained messages; in memory mode the one node).'
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorSchema }
    },
    paths
  }
}
