import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { resolve } from 'node:path'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TlsOptions } from 'node:tls'
import { WebSocketServer } from 'ws'
import type { CoreConfig } from '../config/schema.js'
import { RateLimitedWarn, type Logger } from '../log.js'
import { TrustedProxies, readProxyHeader, type Peer } from './proxy-protocol.js'
import { UnauthenticatedConnections } from './pre-auth.js'
import type { SocketTracker } from './socket-tracker.js'
import { WsDuplex } from './ws-duplex.js'

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

/** The TLS options of a listener's files (paths relative to the config file's folder). */
export function tlsOptions (files: { cert: string, key: string, ca?: string | undefined, requestCert: boolean }, baseDir: string): TlsOptions {
  const read = (file: string): Buffer => readFileSync(resolve(baseDir, file))
  return {
    cert: read(files.cert),
    key: read(files.key),
    ...(files.ca ? { ca: read(files.ca) } : {}),
    requestCert: files.requestCert,
    rejectUnauthorized: files.requestCert
  }
}

/** What the listeners need of the broker: its 'connackSent' event ends the unauthenticated phase. */
export interface ConnackSource {
  on: (event: 'connackSent', listener: (packet: unknown, client: { conn: unknown, req?: IncomingMessage | undefined }) => void) => unknown
  removeListener: (event: 'connackSent', listener: (packet: unknown, client: { conn: unknown, req?: IncomingMessage | undefined }) => void) => unknown
}

export interface ListenerDeps {
  config: CoreConfig
  /** Directory relative cert/key paths are resolved against (the config file's). */
  baseDir: string
  tracker: SocketTracker
  log: Logger
  onRefused: (reason: string) => void
  /** ws/wss: writes dropped because their connection had closed (counted, never an Error each). */
  onWsWritesDropped?: (writes: number) => void
  handle: ConnectionHandler
  /** Without it unauthenticated connections are not counted per address (limits.maxUnauthenticatedPerAddress). */
  broker?: ConnackSource
}

/** The underlying TCP socket of a TLS socket (Node keeps it as `_parent`), else the socket itself. */
function tcpOf (socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket | null })._parent ?? socket
}

/**
 * Opens every enabled MQTT listener. A listener that fails to bind closes the ones
 * already opened and rejects, so the gateway never runs half-listening.
 *
 * Between accept and the moment Aedes owns the stream (TLS handshake, HTTP parsing, the
 * WebSocket upgrade, the PROXY header) every step handles its own errors and closes only
 * its own socket: a throw or an unhandled 'error' there would stop the whole process.
 */
export async function openMqttListeners (deps: ListenerDeps): Promise<BoundListener[]> {
  const { config, tracker, log, onRefused, handle } = deps
  const bound: BoundListener[] = []
  const warn = new RateLimitedWarn(log)
  /** Counts a socket from accept against limits.maxConnections. */
  const admit = (listener: MqttListenerName, socket: Socket): boolean => {
    if (tracker.admit(listener, socket)) return true
    onRefused('max_connections')
    warn.warn('max_connections', { listener, remoteAddress: socket.remoteAddress }, 'connection refused: maxConnections reached')
    socket.destroy()
    return false
  }

  // Unauthenticated connections per client address. Released at CONNACK through the
  // broker's 'connackSent' (one listener for all clients: no per-connection closure or
  // timer; Aedes emits it once the CONNACK is written) and on close by the limiter.
  const unauthenticated = new UnauthenticatedConnections(deps.broker ? config.limits.maxUnauthenticatedPerAddress : 0)
  const onConnack = (_packet: unknown, client: { conn: unknown, req?: IncomingMessage | undefined }): void => {
    // The counted socket: the HTTP request's for WebSocket clients, else the stream itself.
    unauthenticated.release((client.req?.socket ?? client.conn) as Socket)
  }
  deps.broker?.on('connackSent', onConnack)
  const admitUnauthenticated = (listener: MqttListenerName, socket: Socket, address: string | undefined): boolean => {
    if (unauthenticated.admit(socket, address ?? 'unknown')) return true
    onRefused('max_unauthenticated_per_address')
    warn.warn('max_unauthenticated_per_address', { listener, remoteAddress: address, max: config.limits.maxUnauthenticatedPerAddress }, 'connection refused: too many connections from this address not yet past CONNACK')
    socket.destroy()
    return false
  }

  /** Shared by every socket not yet owned by Aedes or ws (`this` is the socket): a reset there is that socket's end, nothing more. */
  const onEarlyError = function (this: Socket, err: Error): void {
    log.debug({ remoteAddress: this.remoteAddress, err: err.message }, 'connection failed before MQTT started')
    this.destroy()
  }
  const handOver = (stream: Duplex, socket: Socket, listener: MqttListenerName, req?: IncomingMessage, peer?: Peer): void => {
    try {
      handle(stream, socket, listener, req, peer)
    } catch (err) {
      log.error({ listener, remoteAddress: socket.remoteAddress, err: (err as Error).message }, 'connection could not be handed to the broker; closing it')
      stream.destroy()
      socket.destroy()
    }
  }

  const trusted = new TrustedProxies(config.listeners.trustedProxies)
  /** Reads the PROXY header off an accepted TCP socket from a trusted proxy, then `next`. */
  const withProxyHeader = (name: MqttListenerName, socket: Socket, next: (peer: Peer | undefined) => void): void => {
    if (!trusted.has(socket.remoteAddress)) {
      onRefused('untrusted_proxy')
      warn.warn('untrusted_proxy', { listener: name, remoteAddress: socket.remoteAddress }, 'connection refused: PROXY protocol expected from a trusted proxy')
      socket.destroy()
      return
    }
    readProxyHeader(socket, config.listeners.proxyHeaderTimeoutMs).then((peer) => {
      if (!socket.destroyed) next(peer)
    }, (err: unknown) => {
      onRefused('proxy_protocol')
      warn.warn('proxy_protocol', { listener: name, remoteAddress: socket.remoteAddress, err: err instanceof Error ? err.message : String(err) }, 'connection refused: bad PROXY protocol header')
      socket.destroy()
    })
  }
  /**
   * With proxyProtocol, a TCP server in front of a TLS or HTTP(S) server: the PROXY header comes
   * first on the wire (nginx proxy_protocol, HAProxy send-proxy, cloud load balancers), before
   * TLS or HTTP. Each socket is admitted and counted at accept, its header read off it (bytes
   * read past it are put back), its peer kept in `peers`, then `handOff` gives it to the server.
   */
  const proxiedFront = (name: MqttListenerName, peers: WeakMap<Socket, Peer>, handOff: (socket: Socket) => void): NetServer =>
    createNetServer((socket) => {
      if (!admit(name, socket)) return
      socket.on('error', onEarlyError)
      withProxyHeader(name, socket, (peer) => {
        if (peer) peers.set(socket, peer)
        handOff(socket)
      })
    })

  const openStreamListener = async (name: 'mqtt' | 'mqtts', host: string, port: number, tls?: TlsOptions): Promise<void> => {
    const proxyProtocol = config.listeners[name].proxyProtocol
    const noDelay = config.listeners[name].tcpNoDelay
    /** The MQTT stream (TCP, or TLS once handshaken) goes to the broker. */
    const start = (socket: Socket, peer?: Peer): void => {
      if (!admitUnauthenticated(name, socket, peer?.address ?? socket.remoteAddress)) return
      handOver(socket, socket, name, undefined, peer)
      // Aedes listens for the socket's errors now.
      socket.removeListener('error', onEarlyError)
    }
    /** A TCP socket just accepted (and counted). */
    const onTcp = (socket: Socket, next: (peer: Peer | undefined) => void): void => {
      socket.on('error', onEarlyError)
      if (noDelay) socket.setNoDelay(true)
      if (proxyProtocol) withProxyHeader(name, socket, next)
      else next(undefined)
    }

    let server: NetServer
    if (tls) {
      // TLS listeners track the TCP socket, from accept: a handshake in progress holds a
      // connection slot too, and byte counts are wire bytes as for plain TCP. The handshake
      // is bounded like the CONNECT that must follow it (Node's default is 120 s).
      /** The PROXY protocol peer of each TCP socket handed to TLS, until its handshake ends. */
      const proxiedPeers = new WeakMap<Socket, Peer>()
      const tlsServer = createTlsServer({ ...tls, handshakeTimeout: config.limits.connectTimeoutMs }, (secure: Socket) => {
        secure.on('error', onEarlyError)
        start(secure, proxiedPeers.get(tcpOf(secure)))
      })
      tlsServer.on('tlsClientError', (err, socket) => {
        log.debug({ listener: name, remoteAddress: socket.remoteAddress, err: err.message }, 'TLS handshake failed')
        onRefused('tls_handshake')
      })
      if (proxyProtocol) {
        // The ClientHello read past the PROXY header was put back: TLS reads it first.
        server = proxiedFront(name, proxiedPeers, (socket) => {
          if (noDelay) socket.setNoDelay(true)
          tlsServer.emit('connection', socket)
        })
      } else {
        tlsServer.on('connection', (socket: Socket) => {
          if (admit(name, socket) && noDelay) socket.setNoDelay(true)
        })
        server = tlsServer
      }
    } else {
      server = createNetServer((socket) => {
        if (admit(name, socket)) onTcp(socket, (peer) => start(socket, peer))
      })
    }
    const address = await listen(server, host, port)
    bound.push({ name, host, port: address.port, close: () => closeServer(server) })
  }

  const upgradeTimeoutMs = config.listeners.wsUpgradeTimeoutMs
  /** TCP sockets of ws/wss listeners not upgraded yet, and the timer that closes them. */
  const upgradeTimers = new Map<Socket, NodeJS.Timeout>()
  const upgradeTimedOut = (socket: Socket): void => {
    upgradeTimers.delete(socket)
    log.debug({ remoteAddress: socket.remoteAddress, timeoutMs: upgradeTimeoutMs }, 'closing a WebSocket listener connection not upgraded in time')
    socket.destroy()
  }
  const clearUpgradeTimer = function (this: Socket): void {
    const timer = upgradeTimers.get(this)
    if (timer === undefined) return
    clearTimeout(timer)
    upgradeTimers.delete(this)
    this.removeListener('close', clearUpgradeTimer)
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
    const httpServer = tls ? createHttpsServer({ ...tls, handshakeTimeout: upgradeTimeoutMs }) : createHttpServer()
    // Counted from accept, not from the upgrade, and given upgradeTimeoutMs to upgrade
    // (Node's own header timeout is 60 s, checked every 30 s). For wss this is the TCP
    // socket under TLS (tracked for wire bytes, as for mqtts).
    const proxyProtocol = config.listeners[name].proxyProtocol
    /** With proxyProtocol: the peer each TCP socket's PROXY header named (read before HTTP or TLS). */
    const proxiedPeers = new WeakMap<Socket, Peer>()
    httpServer.on('connection', (socket: Socket) => {
      // With proxyProtocol the socket was admitted when accepted, before its PROXY header.
      if (!proxyProtocol && !admit(name, socket)) return
      upgradeTimers.set(socket, setTimeout(upgradeTimedOut, upgradeTimeoutMs, socket))
      socket.on('close', clearUpgradeTimer)
    })
    httpServer.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' })
      res.end(`MQTT over WebSocket: upgrade at ${path}\n`)
    })
    const reject = (duplex: Duplex, status: string): void => {
      const socket = duplex as Socket // what Node's HTTP server hands to 'upgrade'
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      // Closed once the answer is written, without waiting for the peer's FIN.
      socket.destroySoon()
    }
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      let pathname: string
      try {
        pathname = new URL(req.url ?? '/', 'http://gateway').pathname
      } catch {
        // `GET // HTTP/1.1`, `GET //[/../mqtt`: targets the WHATWG URL parser rejects.
        log.debug({ listener: name, remoteAddress: req.socket.remoteAddress, target: String(req.url).slice(0, 128) }, 'WebSocket upgrade refused: bad request target')
        reject(socket, '400 Bad Request')
        return
      }
      if (pathname !== path) {
        reject(socket, '404 Not Found')
        return
      }
      const tcp = req.socket
      let peer: Peer | undefined = proxiedPeers.get(tcpOf(tcp))
      if (!proxyProtocol && config.listeners[name].forwardedFor && trusted.has(tcp.remoteAddress)) {
        // The last hop was appended by our trusted proxy (nginx $proxy_add_x_forwarded_for).
        const hops = String(req.headers['x-forwarded-for'] ?? '').split(',').map((h) => h.trim()).filter((h) => h.length > 0)
        const last = hops.at(-1)
        if (last) peer = { address: last, port: 0 }
      }
      if (!admitUnauthenticated(name, tcp, peer?.address ?? tcp.remoteAddress)) return
      clearUpgradeTimer.call(tcpOf(tcp))
      wss.handleUpgrade(req, socket, head, (ws) => {
        // One binary frame per turn of writes; a text frame closes with 1003 (ws-duplex.ts).
        // ws reports protocol violations (oversized frames) on the socket; the stream's
        // error reaches Aedes, which closes that client only.
        const stream = new WsDuplex(ws, socket, { onDropped: deps.onWsWritesDropped })
        handOver(stream, tcp, name, req, peer)
        socket.removeListener('error', onEarlyError)
      })
    }
    httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Node's HTTP server stops listening for the socket's errors before 'upgrade'; until
      // ws owns it, a reset would be an unhandled 'error'.
      socket.on('error', onEarlyError)
      try {
        upgrade(req, socket, head)
      } catch (err) {
        log.warn({ listener: name, remoteAddress: req.socket.remoteAddress, err: (err as Error).message }, 'WebSocket upgrade failed; closing that connection')
        socket.destroy()
      }
    })
    // The access layer routes WebSocket as a TCP stream, with a PROXY header first.
    const server = proxyProtocol
      ? proxiedFront(name, proxiedPeers, (socket) => {
        // The HTTP(S) server handles the socket's errors from here (and 'upgrade' again).
        socket.removeListener('error', onEarlyError)
        httpServer.emit('connection', socket)
      })
      : httpServer
    const address = await listen(server, host, port)
    bound.push({
      name,
      host,
      port: address.port,
      close: async () => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        await closeServer(httpServer)
        if (server !== httpServer) await closeServer(server)
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
    deps.broker?.removeListener('connackSent', onConnack)
    throw err
  }
  return bound
}

export { listen, closeServer }
