import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Call { path: string, body: Record<string, unknown> }

/** What the test server does for one request: a JSON body, a status with raw text, or nothing (hang). */
export type Reply = { json: unknown, delayMs?: number } | { status: number, text: string } | { hang: true }

/** A real HTTP server on 127.0.0.1 standing in for a business service; it records every call. */
export async function startBusinessService (handler: (call: Call) => Reply): Promise<{ url: string, calls: Call[], close: () => Promise<void> }> {
  const calls: Call[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
    req.on('end', () => {
      const call = { path: req.url ?? '/', body: JSON.parse(raw || '{}') as Record<string, unknown> }
      calls.push(call)
      const reply = handler(call)
      if ('hang' in reply) return
      if ('status' in reply) {
        res.writeHead(reply.status, { 'content-type': 'application/json' }).end(reply.text)
        return
      }
      const send = (): void => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply.json)) }
      if (reply.delayMs) setTimeout(send, reply.delayMs)
      else send()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
