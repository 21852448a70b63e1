import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TlsOptions } from 'node:tls'
import { API_PREFIX, type AdminRouter } from '../admin/router.js'
import type { Logger } from '../log.js'
import type { Readiness } from '../readiness.js'
import { closeServer, listen } from './listeners.js'

/** What /metrics needs: a prom-client Registry, or anything that renders one (the workers' primary aggregates its workers'). */
export interface MetricsSource { metrics: () => Promise<string>, contentType: string }

/** The admin listener: HTTP, or HTTPS with `tls` (listeners.admin.tls). */
export async function openAdminListener (opts: { host: string, port: number, registry: MetricsSource, readiness: Readiness, log: Logger, api?: AdminRouter, tls?: TlsOptions | undefined }): Promise<{ port: number, close: () => Promise<void> }> {
  const handler: RequestListener<typeof IncomingMessage> = (req, res) => {
    const [path = '/', search = ''] = (req.url ?? '/').split('?', 2)
    // The REST API (src/admin/): its own methods, bearer token, 404 while no token is configured.
    if (opts.api && (path === API_PREFIX || path.startsWith(API_PREFIX + '/'))) {
      opts.api.handle(req, res, path, new URLSearchParams(search)).catch((err: Error) => {
        opts.log.error({ err: err.message }, 'admin API request failed')
        if (!res.headersSent) res.writeHead(500).end()
      })
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n')
    } else if (path === '/readyz') {
      const report = opts.readiness.report()
      res.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ status: report.ready ? 'ready' : 'not ready', ...report }) + '\n')
    } else if (path === '/metrics') {
      opts.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text)
      }, (err: Error) => {
        opts.log.error({ err: err.message }, 'metrics collection failed')
        res.writeHead(500).end()
      })
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    }
  }
  const server: Server = opts.tls === undefined ? createServer(handler) : createHttpsServer(opts.tls, handler)
  if (opts.tls !== undefined) {
    // A failed handshake (plain HTTP to this port, an unknown client certificate) is that
    // connection's problem: one debug line, the listener serves on.
    server.on('tlsClientError', (err: Error) => opts.log.debug({ err: err.message }, 'admin TLS handshake failed'))
  }
  const address: AddressInfo = await listen(server, opts.host, opts.port)
  return { port: address.port, close: () => closeServer(server) }
}
