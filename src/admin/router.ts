import type { IncomingMessage, ServerResponse } from 'node:http'
import { z } from 'zod'
import type { Logger } from '../log.js'
import { bearerMatches } from './auth.js'
import { formatPath } from '../config/zod-issues.js'

/** Whether an answer is about this node only or the whole cluster (shared Redis data). */
export type AdminScope = 'node' | 'cluster'

export type AdminMethod = 'GET' | 'POST' | 'DELETE'

/** An answer other than 200 + body: the status and a JSON body. */
export class AdminError extends Error {
  constructor (readonly status: number, message: string, readonly field?: string) {
    super(message)
  }
}

export interface AdminRequest<Q, B> {
  /** Path parameters by name (`/clients/{clientId}` → `clientId`), URL-decoded. */
  params: Readonly<Record<string, string>>
  query: Q
  body: B
}

/**
 * One endpoint under /api/v1. Query, body and response are zod schemas: requests are
 * validated against them (400 naming the field), responses too (a handler answering
 * outside its schema is a bug: 500, logged), and the OpenAPI document is generated from
 * the same schemas (src/admin/openapi.ts).
 */
export interface AdminRoute<Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  method: AdminMethod
  /** Relative to /api/v1, OpenAPI style parameters: `/clients/{clientId}`. */
  path: string
  scope: AdminScope
  summary: string
  /** Section of the API (OpenAPI tag), e.g. `clients`. */
  tag: string
  query?: Q
  body?: B
  response: R
  /** Changes state (kick, delete, reload): each success is logged with the parameters, for audit. */
  changesState?: boolean
  /** Other answers the handler may give (status → description), for the document. */
  errors?: Readonly<Record<number, string>>
  handler: (req: AdminRequest<z.output<Q>, z.output<B>>) => Promise<z.input<R>> | z.input<R>
}

/** Keeps the schemas' types attached to the handler. */
export function defineRoute<Q extends z.ZodType = z.ZodUndefined, B extends z.ZodType = z.ZodUndefined, R extends z.ZodType = z.ZodType> (route: AdminRoute<Q, B, R>): AdminRoute {
  return route as unknown as AdminRoute
}

/** What plugins get (`ctx.admin`): they add endpoints without src/ knowing them. */
export interface AdminRegistry {
  route: (route: AdminRoute) => void
}

export const API_PREFIX = '/api/v1'
const MAX_BODY = 64 * 1024

interface CompiledRoute { route: AdminRoute, pattern: RegExp, names: string[] }

function compile (route: AdminRoute): CompiledRoute {
  const names: string[] = []
  const source = route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{([A-Za-z]+)\\?\}/g, (_m, name: string) => {
    names.push(name)
    return '([^/]+)'
  })
  return { route, pattern: new RegExp(`^${source}$`), names }
}

function send (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body) + '\n')
}

/** The first issue of a failed validation as `where.path.to[0].field` (the config loader's formatPath). */
function fieldOf (where: string, error: z.ZodError): { field: string, message: string } {
  const issue = error.issues[0]
  const path: PropertyKey[] = [where, ...(issue?.path ?? [])]
  // An unknown key is the field at fault itself.
  if (issue?.code === 'unrecognized_keys' && issue.keys[0] !== undefined) path.push(issue.keys[0])
  return { field: formatPath(path), message: issue?.message ?? 'invalid' }
}

async function readBody (req: IncomingMessage): Promise<string> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY) throw new AdminError(413, `request body over ${MAX_BODY} bytes`, 'body')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * The /api/v1 router of the admin listener. Off (404 for everything under /api/v1) without
 * a token; with one, every request needs `Authorization: Bearer <token>`, so nothing in the
 * API reads or changes anything for a caller without it.
 */
export class AdminRouter implements AdminRegistry {
  readonly #routes: CompiledRoute[] = []
  readonly #token: string | undefined
  readonly #log: Logger
  /** The OpenAPI document, built per request from the routes registered by then; set once the core's routes are mounted. */
  openapi: (() => unknown) | undefined

  constructor (opts: { token: string | undefined, log: Logger }) {
    this.#token = opts.token
    this.#log = opts.log
  }

  get enabled (): boolean { return this.#token !== undefined }
  get routes (): readonly AdminRoute[] { return this.#routes.map((r) => r.route) }

  route (route: AdminRoute): void {
    if (this.#routes.some((r) => r.route.method === route.method && r.route.path === route.path)) {
      throw new Error(`admin route ${route.method} ${route.path} registered twice`)
    }
    this.#routes.push(compile(route))
  }

  /** Answers a request whose path starts with /api/v1. */
  async handle (req: IncomingMessage, res: ServerResponse, path: string, search: URLSearchParams): Promise<void> {
    if (!this.enabled) {
      send(res, 404, { error: 'not found' })
      return
    }
    if (!bearerMatches(req.headers.authorization, this.#token!)) {
      send(res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer realm="mqtt-gateway"' })
      return
    }
    // The admin port answers while the broker starts; the API needs the broker.
    if (!this.openapi) {
      send(res, 503, { error: 'starting' }, { 'retry-after': '1' })
      return
    }
    const sub = path.slice(API_PREFIX.length) || '/'
    if (sub === '/openapi.json' && req.method === 'GET') {
      send(res, 200, this.openapi())
      return
    }
    const matching = this.#routes.map((r) => ({ r, m: r.pattern.exec(sub) })).filter((x) => x.m !== null)
    if (matching.length === 0) {
      send(res, 404, { error: 'not found' })
      return
    }
    const found = matching.find((x) => x.r.route.method === req.method)
    if (!found) {
      send(res, 405, { error: 'method not allowed' }, { allow: [...new Set(matching.map((x) => x.r.route.method))].join(', ') })
      return
    }
    const { route, names } = found.r
    try {
      const params: Record<string, string> = {}
      names.forEach((name, i) => {
        try {
          params[name] = decodeURIComponent(found.m![i + 1]!)
        } catch {
          throw new AdminError(400, 'not a valid URL-encoded value', `path.${name}`)
        }
      })
      let query: unknown
      if (route.query) {
        const parsed = route.query.safeParse(Object.fromEntries(search))
        if (!parsed.success) {
          const { field, message } = fieldOf('query', parsed.error)
          throw new AdminError(400, message, field)
        }
        query = parsed.data
      }
      let body: unknown
      if (route.body) {
        const text = await readBody(req)
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          throw new AdminError(400, 'body is not JSON', 'body')
        }
        const parsed = route.body.safeParse(json)
        if (!parsed.success) {
          const { field, message } = fieldOf('body', parsed.error)
          throw new AdminError(400, message, field)
        }
        body = parsed.data
      }
      const answer = await route.handler({ params, query, body })
      const checked = route.response.safeParse(answer)
      if (!checked.success) {
        const { field, message } = fieldOf('response', checked.error)
        this.#log.error({ route: `${route.method} ${route.path}`, field, err: message }, 'admin API answer does not match its schema')
        send(res, 500, { error: 'internal error' })
        return
      }
      if (route.changesState) this.#log.info({ route: `${route.method} ${route.path}`, params }, 'admin API change')
      send(res, 200, checked.data)
    } catch (err) {
      if (err instanceof AdminError) {
        // Bad input: one line, a 4xx answer, nothing else.
        if (err.status < 500) this.#log.info({ route: `${route.method} ${route.path}`, status: err.status, field: err.field, err: err.message }, 'admin API request refused')
        send(res, err.status, { error: err.message, ...(err.field !== undefined ? { field: err.field } : {}) })
        return
      }
      this.#log.error({ route: `${route.method} ${route.path}`, err: (err as Error).message }, 'admin API request failed')
      send(res, 500, { error: 'internal error' })
    }
  }
}
