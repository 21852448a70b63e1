/**
 * Plain Aedes 1.2.0 with default options, for bench/compare.bench.ts (the "aedes" peer).
 *
 *   node dist/bench/plain-aedes.js PORT [AEDES_ENTRY [WS_PORT]]
 *
 * AEDES_ENTRY: the aedes.js to load (bench/brokers.ts passes an unpatched copy, see
 * pristineAedes()); default: the project's node_modules/aedes, which carries the patch.
 * Listens on 127.0.0.1:PORT, and with WS_PORT MQTT over WebSocket on 127.0.0.1:WS_PORT as Aedes'
 * docs (docs/Examples.md) show it: a ws WebSocketServer, each connection through ws'
 * createWebSocketStream. SIGTERM/SIGINT close the broker and exit 0.
 */
import { createServer as createHttpServer } from 'node:http'
import net from 'node:net'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { pathToFileURL } from 'node:url'

const port = Number(process.argv[2] ?? 1883)
const entry = process.argv[3]
const { Aedes } = (entry === undefined ? await import('aedes') : await import(pathToFileURL(entry).href)) as typeof import('aedes')
const broker = await Aedes.createBroker()
const server = net.createServer(broker.handle)
server.listen(port, '127.0.0.1')
const wsPort = process.argv[4]
const httpServer = createHttpServer()
if (wsPort !== undefined) {
  const wss = new WebSocketServer({ server: httpServer })
  wss.on('connection', (ws, req) => broker.handle(createWebSocketStream(ws), req))
  httpServer.listen(Number(wsPort), '127.0.0.1')
}

let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(0), 2000).unref()
  server.close()
  httpServer.close()
  broker.close(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
