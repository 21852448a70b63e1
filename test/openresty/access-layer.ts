/**
 * Runs the access layer the users deploy, openresty/nginx.conf with its upstreams.conf and
 * lua/, on the real stream Lua module, in front of test gateway processes. The tests change
 * only what must differ on this machine (openresty/README.md lists it):
 *   1. listen ports 1883, 8883, 8083, 8084, 8081 become 127.0.0.1:<free port>;
 *   2. the node lines of upstreams.conf name the test nodes (name, 127.0.0.1, their ports);
 *   3. lua_package_path points at openresty/lua/ of this checkout (not /etc/mqtt-access/lua/),
 *      after the lua-resty-core that matches the module when it is not OpenResty's own;
 *   4. with Debian's nginx (no OpenResty installed), two load_module lines at the top: the
 *      stream module and ngx_stream_lua_module.so, built by scripts/stream-lua.sh from
 *      ../shared/vendor into .cache/stream-lua/;
 *   5. "# tls: " lines are uncommented when TLS is asked for (the certificate goes to tls/).
 * Everything else (the Lua handlers, the ring, the readiness checks, preread limits and
 * timeouts, the proxy settings) is used as written.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import type { ClusterNode } from '../helpers/cluster.js'
import { pollUntil, sleep, waitFor } from '../helpers/mqtt.js'

export const OPENRESTY_DIR = join(process.cwd(), 'openresty')
const CACHE = join(process.cwd(), '.cache/stream-lua')
const INSTALL_HINT = 'the access-layer tests need OpenResty, or Debian\'s nginx with the stream Lua module built by `sh scripts/stream-lua.sh` (Debian packages nginx libnginx-mod-stream libluajit2-5.1-dev libpcre2-dev zlib1g-dev libssl-dev lua-resty-lrucache gcc make, and the sources in ../shared/vendor); `npm test` installs and builds them'

export interface StreamLua {
  /** The server binary: openresty, or Debian's nginx. */
  bin: string
  /** load_module lines to put first in nginx.conf (Debian's nginx only). */
  loadModules: string[]
  /** lua-resty-core's lib/ matching the module (Debian's nginx only; OpenResty bundles its own). */
  restyCoreLib?: string
}

function onPath (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

let found: StreamLua | undefined
/**
 * OpenResty if installed, else Debian's nginx with the module of .cache/stream-lua/ (built by
 * scripts/stream-lua.sh if missing: idempotent). Throws one line saying what to install.
 */
export function streamLua (): StreamLua {
  if (found) return found
  if (onPath('openresty')) return (found = { bin: 'openresty', loadModules: [] })
  const so = join(CACHE, 'ngx_stream_lua_module.so')
  const stream = '/usr/lib/nginx/modules/ngx_stream_module.so'
  const build = spawnSync('sh', ['scripts/stream-lua.sh'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 110000 })
  if (build.status !== 0 || !existsSync(so) || !existsSync(stream)) {
    throw new Error(`no stream Lua module: ${INSTALL_HINT}${build.stderr ? ` (${build.stderr.trim().split('\n').at(-1)})` : ''}`)
  }
  return (found = { bin: 'nginx', loadModules: [`load_module ${stream};`, `load_module ${so};`], restyCoreLib: join(CACHE, 'lua-resty-core/lib') })
}

export function enableTls (conf: string): string {
  return conf.replace(/^(\s*)# tls: /gm, '$1')
}

export function rewriteListen (conf: string, ports: Record<number, number>): string {
  return conf.replace(/^(\s*listen\s+)(\d+)\b/gm, (_whole, prefix: string, port: string) => {
    const to = ports[Number(port)]
    if (to === undefined) throw new Error(`no test port for listen ${port}`)
    return `${prefix}127.0.0.1:${to}`
  })
}

export interface NodeLine { name: string, host: string, mqtt: number, ws: number, admin: number }

const NODE_LINE = /^(\s*)\{ name = "[^"]*", host = "[^"]*", mqtt = \d+, ws = \d+, admin = \d+ \},$/

/** The node lines of upstreams.conf as written (the compose test checks them). */
export function nodeLines (upstreams: string): NodeLine[] {
  return [...upstreams.matchAll(/\{ name = "([^"]*)", host = "([^"]*)", mqtt = (\d+), ws = (\d+), admin = (\d+) \},/g)]
    .map((m) => ({ name: m[1]!, host: m[2]!, mqtt: Number(m[3]), ws: Number(m[4]), admin: Number(m[5]) }))
}

/** Replaces the node lines of upstreams.conf by one per node, keeping everything else. */
export function rewriteNodes (upstreams: string, nodes: NodeLine[]): string {
  const lines = upstreams.split('\n')
  const at = lines.findIndex((l) => NODE_LINE.test(l))
  if (at < 0) throw new Error('no node line in upstreams.conf')
  const indent = NODE_LINE.exec(lines[at]!)![1]!
  const kept = lines.filter((l) => !NODE_LINE.test(l))
  kept.splice(at, 0, ...nodes.map((n) => `${indent}{ name = "${n.name}", host = "${n.host}", mqtt = ${n.mqtt}, ws = ${n.ws}, admin = ${n.admin} },`))
  return kept.join('\n')
}

export interface AccessPorts { mqtt: number, ws: number, health: number, mqtts?: number, wss?: number }

export interface AccessConfigOptions {
  dir: string
  ports: AccessPorts
  nodes: NodeLine[]
  /** PEM files for the "# tls:" listeners; TLS stays off without them. */
  tls?: { cert: string, key: string }
}

/** Writes the prefix directory: nginx.conf, upstreams.conf, tls/, logs/. */
export function writeAccessConfig (opts: AccessConfigOptions, lua: StreamLua = streamLua()): string {
  const { dir } = opts
  mkdirSync(join(dir, 'logs'), { recursive: true })
  chmodSync(dir, 0o755)
  let conf = readFileSync(join(OPENRESTY_DIR, 'nginx.conf'), 'utf8')
  const ports: Record<number, number> = { 1883: opts.ports.mqtt, 8083: opts.ports.ws, 8081: opts.ports.health }
  if (opts.tls) {
    conf = enableTls(conf)
    mkdirSync(join(dir, 'tls'), { recursive: true })
    copyFileSync(opts.tls.cert, join(dir, 'tls/server.crt'))
    copyFileSync(opts.tls.key, join(dir, 'tls/server.key'))
    if (opts.ports.mqtts === undefined || opts.ports.wss === undefined) throw new Error('TLS needs mqtts and wss ports')
    ports[8883] = opts.ports.mqtts
    ports[8084] = opts.ports.wss
  }
  conf = rewriteListen(conf, ports)
  const luaPath = `${lua.restyCoreLib ? `${lua.restyCoreLib}/?.lua;` : ''}${join(OPENRESTY_DIR, 'lua')}/?.lua;;`
  const before = conf
  conf = conf.replace('lua_package_path "/etc/mqtt-access/lua/?.lua;;";', `lua_package_path "${luaPath}";`)
  if (conf === before) throw new Error('lua_package_path "/etc/mqtt-access/lua/?.lua;;" not found in nginx.conf')
  if (lua.loadModules.length > 0) conf = lua.loadModules.join('\n') + '\n' + conf
  writeFileSync(join(dir, 'nginx.conf'), conf)
  writeUpstreams(dir, opts.nodes)
  return join(dir, 'nginx.conf')
}

export function writeUpstreams (dir: string, nodes: NodeLine[]): void {
  writeFileSync(join(dir, 'upstreams.conf'), rewriteNodes(readFileSync(join(OPENRESTY_DIR, 'upstreams.conf'), 'utf8'), nodes))
}

/** The access layer as a child process (the master; its workers are its own children). */
export class AccessLayer {
  #child: ChildProcess | undefined
  #err = ''

  constructor (readonly dir: string, readonly ports: AccessPorts, readonly lua: StreamLua = streamLua()) {}

  /** nginx's error log (stderr) so far. */
  stderr (): string { return this.#err }

  /** Its access log (stdout: one line per connection, client id and node address). */
  accessLog (): string {
    return readFileSync(join(this.dir, 'logs/stdout.log'), 'utf8')
  }

  async start (): Promise<void> {
    // stdout is a file: nginx opens "/dev/stdout" for its access log, which fails on a socket
    // (Node's pipes); in a container it is a pipe or a file.
    const accessLog = openSync(join(this.dir, 'logs/stdout.log'), 'a')
    const child = spawn(this.lua.bin, ['-p', this.dir + '/', '-c', 'nginx.conf', '-e', 'stderr', '-g', 'daemon off; pid nginx.pid;'], { stdio: ['ignore', accessLog, 'pipe'] })
    closeSync(accessLog)
    this.#child = child
    child.stderr!.on('data', (c: Buffer) => { this.#err += c.toString() })
    if (process.env.TEST_LOG) child.stderr!.pipe(process.stderr)
    const spawnError = new Promise<never>((_resolve, reject) => child.once('error', (e) => reject(new Error(`${this.lua.bin} could not start: ${e.message}: ${INSTALL_HINT}`))))
    const up = await pollUntil(async () => {
      if (child.exitCode !== null) throw new Error(`${this.lua.bin} exited with ${child.exitCode}: ${this.#err}`)
      return await Promise.race([spawnError, fetch(`http://127.0.0.1:${this.ports.health}/healthz`).then((r) => r.status === 200, () => false)])
    }, (ok) => ok, 10000, 50)
    if (!up) throw new Error(`${this.lua.bin} did not answer within 10 s: ${this.#err}`)
  }

  /** The pids of the running worker processes, from "start worker process N" minus those that exited. */
  workers (): number[] {
    const started = [...this.#err.matchAll(/start worker process (\d+)/g)].map((m) => Number(m[1]))
    const exited = new Set([...this.#err.matchAll(/worker process (\d+) exited/g)].map((m) => Number(m[1])))
    return started.filter((p) => !exited.has(p))
  }

  /**
   * SIGHUP (what `openresty -s reload` sends): the master reads the files again (the node
   * list, and init_by_lua builds the ring again), starts new workers and lets the old ones
   * finish; resolves once every old worker has exited, so new connections meet the new ring.
   */
  async reload (): Promise<void> {
    const old = this.workers()
    const child = this.#child!
    child.kill('SIGHUP')
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`${this.lua.bin} exited on reload: ${this.#err}`)
      const now = this.workers()
      return old.every((p) => !now.includes(p)) && now.length > 0
    }, 'the old worker processes to exit after the reload', 15000)
  }

  async stop (): Promise<void> {
    const child = this.#child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    if (!await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) {
      child.kill('SIGKILL')
      await exited
    }
  }
}

/**
 * Which node logged "client connected" for a user name: unique per connection, except for a
 * persistent session, which only its user may resume (so its connections are counted).
 */
export class Landings {
  readonly #offsets = new Map<ClusterNode, number>()
  readonly #byUser = new Map<string, string[]>()
  readonly #addressOf = new Map<string, string>()
  constructor (private readonly nodes: ClusterNode[]) {}

  #poll (): void {
    for (const node of this.nodes) {
      const out = node.stdout()
      const from = this.#offsets.get(node) ?? 0
      const end = out.lastIndexOf('\n') + 1
      if (end <= from) continue
      for (const line of out.slice(from, end).split('\n')) {
        if (!line.includes('"client connected"')) continue
        const entry = JSON.parse(line) as { username?: string, remoteAddress?: string }
        if (entry.username) {
          const seen = this.#byUser.get(entry.username) ?? []
          seen.push(node.id)
          this.#byUser.set(entry.username, seen)
          if (entry.remoteAddress) this.#addressOf.set(entry.username, entry.remoteAddress)
        }
      }
      this.#offsets.set(node, end)
    }
  }

  /** The client address the node logged (from nginx's PROXY protocol header). */
  addressOf (username: string): string | undefined {
    return this.#addressOf.get(username)
  }

  /** The node of the `nth` connection of `username` (1 = its first). */
  async nodeOf (username: string, nth = 1): Promise<string> {
    await waitFor(() => { this.#poll(); return (this.#byUser.get(username)?.length ?? 0) >= nth }, `a node to log connection ${nth} of ${username}`, 5000)
    return this.#byUser.get(username)![nth - 1]!
  }
}
