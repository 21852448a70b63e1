/**
 * Builds the nginx (Debian: nginx + libnginx-mod-stream + libnginx-mod-stream-js) test
 * configuration from the OpenResty one, openresty/nginx.conf, by exactly these changes
 * (openresty/README.md lists them):
 *   1. every block between "# >>> openresty-only" and "# <<< openresty-only" is replaced by
 *      its "# njs: " lines, uncommented (Lua directives out; load_module, js_import and
 *      js_preread in);
 *   2. "# tls: " lines are uncommented when TLS is asked for (the certificate goes to tls/);
 *   3. listen ports 1883, 8883, 8083, 8084 become 127.0.0.1:<free port>;
 *   4. the server lines of upstreams.conf / upstreams-ws.conf get the test nodes' addresses,
 *      keeping their parameters (max_fails, fail_timeout); everything else is kept.
 * Everything else (the hash, preread limits and timeouts, proxy settings, maps, the
 * WebSocket server) is used as written.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'

export const OPENRESTY_DIR = join(process.cwd(), 'openresty')

export function njsVariant (conf: string): string {
  const out: string[] = []
  let inBlock = false
  for (const line of conf.split('\n')) {
    if (/^\s*# >>> openresty-only/.test(line)) {
      if (inBlock) throw new Error('nested openresty-only block')
      inBlock = true
      continue
    }
    if (/^\s*# <<< openresty-only/.test(line)) {
      if (!inBlock) throw new Error('openresty-only block closed without being opened')
      inBlock = false
      continue
    }
    if (!inBlock) {
      out.push(line)
      continue
    }
    const njs = /^(\s*)# njs: (.*)$/.exec(line)
    if (njs) out.push(njs[1]! + njs[2]!)
  }
  if (inBlock) throw new Error('unterminated openresty-only block')
  return out.join('\n')
}

export function enableTls (conf: string): string {
  return conf.replace(/^(\s*)# tls: /gm, '$1')
}

export function rewriteListen (conf: string, ports: Record<number, number>): string {
  return conf.replace(/^(\s*listen\s+)(\d+)\b/gm, (whole, prefix: string, port: string) => {
    const to = ports[Number(port)]
    if (to === undefined) throw new Error(`no test port for listen ${port}`)
    return `${prefix}127.0.0.1:${to}`
  })
}

/** Replaces the upstream's server lines by one per address, with the first line's parameters. */
export function rewriteUpstream (conf: string, addresses: string[]): string {
  const lines = conf.split('\n')
  const serverLines = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*server\s+\S+/.test(l))
  if (serverLines.length === 0) throw new Error('no server line in upstream file')
  const [first, firstIndex] = serverLines[0]!
  const m = /^(\s*)server\s+\S+(.*)$/.exec(first)!
  const replacement = addresses.map((a) => `${m[1]!}server ${a}${m[2]!}`)
  const kept = lines.filter((l, i) => i === firstIndex || !/^\s*server\s+\S+/.test(l))
  const at = kept.indexOf(first)
  kept.splice(at, 1, ...replacement)
  return kept.join('\n')
}

export interface NjsConfigOptions {
  dir: string
  ports: { mqtt: number, ws: number, mqtts?: number, wss?: number }
  tcpNodes: string[]
  wsNodes: string[]
  /** PEM files for the "# tls:" listeners; TLS stays off without them. */
  tls?: { cert: string, key: string }
}

/** Writes the test prefix directory: nginx.conf, upstreams, njs module, tls/, logs/. */
export function writeNjsConfig (opts: NjsConfigOptions): string {
  const { dir } = opts
  mkdirSync(join(dir, 'logs'), { recursive: true })
  mkdirSync(join(dir, 'njs'), { recursive: true })
  chmodSync(dir, 0o755)
  let conf = njsVariant(readFileSync(join(OPENRESTY_DIR, 'nginx.conf'), 'utf8'))
  const ports: Record<number, number> = { 1883: opts.ports.mqtt, 8083: opts.ports.ws }
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
  writeFileSync(join(dir, 'nginx.conf'), conf)
  writeFileSync(join(dir, 'upstreams.conf'), rewriteUpstream(readFileSync(join(OPENRESTY_DIR, 'upstreams.conf'), 'utf8'), opts.tcpNodes))
  writeFileSync(join(dir, 'upstreams-ws.conf'), rewriteUpstream(readFileSync(join(OPENRESTY_DIR, 'upstreams-ws.conf'), 'utf8'), opts.wsNodes))
  copyFileSync(join(OPENRESTY_DIR, 'njs/mqtt_connect.js'), join(dir, 'njs/mqtt_connect.js'))
  return join(dir, 'nginx.conf')
}
