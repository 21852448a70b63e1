import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { resolve } from 'node:path'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TlsOptions } from 'node:tls'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { CoreConfig } from '../config/schema.js'
import type { Logger } from '../log.js'
import { ProxyProtocolError, TrustedProxies, readProxyHeader, type Peer } from './proxy-protocol.js'
import type { SocketTracker } from './socket-tracker.js'

export type MqttListenerName = 'mqtt' | 'mqtts' | 'ws' | 'wss'

/** Hands a transport stream to the broker. `socket` is the TCP socket underneath; `peer` the client's address when a trusted proxy told it. */
export type ConnectionHandler = (stream: Duplex, socket: Socket, listener: MqttListenerName, req?: IncomingMessage, peer?: Peer) => void

export interface BoundListener {
  name: MqttListenerName
  host: string
  port: number
  close: () => Promise<void>
}

/** MQTT subprotocols a WebSocket client may offer: "mqtt" for 3.1.1, "mqttv3.1" for 3.1. */
const MQTT_SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

function listen (server: NetServer | HttpServer, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolvePromise, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen({ port, host }, () => {
      server.off('error', onError)
      resolvePromise(server.address() as AddressInfo)
    })
  })
}

function closeServer (server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolvePromise) => {
    server.close(() => resolvePromise())
    // HTTP keep-alive connections would hold close() open until they time out.
    if ('closeAllConnections' in server) server.closeAllConnections()
  })
}

function tlsOptions (files: { cert: string, key: string, ca?: string | undefined, requestCert: boolean }, baseDir: string): TlsOptions {
  const read = (file: string): Buffer => readFileSync(resolve(baseDir, file))
  return {
    cert: read(files.cert),
    key: read(files.key),
    ...(files.ca ? { ca: read(files.ca) } : {}),
    requestCert: files.requestCert,
    rejectUnauthorized: files.requestCert
  }
}

export interface ListenerDeps {
  config: CoreConfig
  /** Directory relative cert/key paths are resolved against (the config file's). */
  baseDir: string
  tracker: SocketTracker
  log: Logger
  onRefused: (reason: string) => void
  handle: ConnectionHandler
}

/**
 * Opens every enabled MQTT listener. A listener that fails to bind closes the ones
 * already opened and rejects, so the gateway never runs half-listening.
 */
export async function openMqttListeners (deps: ListenerDeps): Promise<BoundListener[]> {
  const { config, tracker, log, onRefused, handle } = deps
  const bound: BoundListener[] = []
  const admit = (listener: MqttListenerName, socket: Socket): boolean => {
    if (tracker.admit(listener, socket)) return true
    onRefused('max_connections')
    log.warn({ listener, remoteAddress: socket.remoteAddress }, 'connection refused: maxConnections reached')
    socket.destroy()
    return false
  }

  const trusted = new TrustedProxies(config.listeners.trustedProxies)
  const openStreamListener = async (name: 'mqtt' | 'mqtts', host: string, port: number, tls?: TlsOptions): Promise<void> => {
    const proxyProtocol = config.listeners[name].proxyProtocol
    const noDelay = config.listeners[name].tcpNoDelay
    const onSocket = (socket: Socket): void => {
      if (!admit(name, socket)) return
      if (noDelay) socket.setNoDelay(true)
      if (!proxyProtocol) {
        handle(socket, socket, name)
        return
      }
      if (!trusted.has(socket.remoteAddress)) {
        onRefused('untrusted_proxy')
        log.warn({ listener: name, remoteAddress: socket.remoteAddress }, 'connection refused: PROXY protocol expected from a trusted proxy')
        socket.destroy()
        return
      }
      readProxyHeader(socket, config.listeners.proxyHeaderTimeoutMs).then((peer) => handle(socket, socket, name, undefined, peer), (err: Error) => {
        onRefused('proxy_protocol')
        log.warn({ listener: name, remoteAddress: socket.remoteAddress, err: err instanceof ProxyProtocolError ? err.message : String(err) }, 'connection refused: bad PROXY protocol header')
        socket.destroy()
      })
    }
    let server: NetServer
    if (tls) {
      const tlsServer = createTlsServer(tls, onSocket)
      tlsServer.on('tlsClientError', (err, socket) => {
        log.debug({ listener: name, remoteAddress: socket.remoteAddress, err: err.message }, 'TLS handshake failed')
        onRefused('tls_handshake')
      })
      server = tlsServer
    } else {
      server = createNetServer(onSocket)
    }
    const address = await listen(server, host, port)
    bound.push({ name, host, port: address.port, close: () => closeServer(server) })
  }

  const openWsListener = async (name: 'ws' | 'wss', host: string, port: number, path: string, tls?: TlsOptions): Promise<void> => {
    const wss = new WebSocketServer({
      noServer: true,
      // A WebSocket message may carry one MQTT packet plus the start of the next; the
      // packet guard enforces the exact MQTT limit, this bounds ws' own buffering.
      maxPayload: config.limits.maxPacketSize + 8,
      perMessageDeflate: false,
      handleProtocols: (offered) => MQTT_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false
    })
    const httpServer = tls ? createHttpsServer(tls) : createHttpServer()
    httpServer.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' })
      res.end(`MQTT over WebSocket: upgrade at ${path}\n`)
    })
    httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://gateway')
      if (url.pathname !== path) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
        return
      }
      const tcp = req.socket
      if (!admit(name, tcp)) return
      let peer: Peer | undefined
      if (config.listeners[name].forwardedFor && trusted.has(tcp.remoteAddress)) {
        // The last hop was appended by our trusted proxy (nginx $proxy_add_x_forwarded_for).
        const hops = String(req.headers['x-forwarded-for'] ?? '').split(',').map((h) => h.trim()).filter((h) => h.length > 0)
        const last = hops.at(-1)
        if (last) peer = { address: last, port: 0 }
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws)
        // ws reports protocol violations (oversized or text frames) on the socket; the
        // stream's error reaches Aedes, which closes that client only.
        handle(stream, tcp, name, req, peer)
      })
    })
    const address = await listen(httpServer, host, port)
    bound.push({
      name,
      host,
      port: address.port,
      close: async () => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        await closeServer(httpServer)
      }
    })
  }

  const l = config.listeners
  try {
    if (l.mqtt.enabled) await openStreamListener('mqtt', l.mqtt.host, l.mqtt.port)
    if (l.mqtts.enabled) await openStreamListener('mqtts', l.mqtts.host, l.mqtts.port, tlsOptions(l.mqtts, deps.baseDir))
    if (l.ws.enabled) await openWsListener('ws', l.ws.host, l.ws.port, l.ws.path)
    if (l.wss.enabled) await openWsListener('wss', l.wss.host, l.wss.port, l.wss.path, tlsOptions(l.wss, deps.baseDir))
  } catch (err) {
    await Promise.all(bound.map((b) => b.close()))
    throw err
  }
  return bound
}

export { listen, closeServer }
