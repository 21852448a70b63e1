/**
 * log.format: readable lines (pino-pretty) when stdout is a terminal, JSON otherwise. The
 * real CLI runs under a pseudo-terminal (util-linux `script`) and on a pipe. RateLimitedWarn: one
 * warn line per kind per interval.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { RateLimitedWarn, createLogger } from '../src/log.js'
import { CLI, freePort, spawnGateway } from './helpers/process.js'
import { connectClient, endClient, pollUntil } from './helpers/mqtt.js'

function configFile (format?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-log-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `listeners: { ws: { enabled: false } }\n${format ? `log: { format: ${format} }\n` : ''}`)
  return file
}

/** The CLI under a pseudo-terminal: its stdout is a TTY. Resolves with everything it printed. */
async function runOnTerminal (file: string, clientId?: string): Promise<string> {
  const [mqtt, admin] = [await freePort(), await freePort()]
  // `script` runs the command on a new pty and copies its output to our pipe; on SIGTERM it
  // ends the command too (its last lines may not be copied, so nothing is asserted on them).
  const child = spawn('script', ['-qec', `exec ${process.execPath} ${CLI} --config ${file}`, '/dev/null'], {
    env: { ...process.env, MQGW_MQTT_HOST: '127.0.0.1', MQGW_MQTT_PORT: String(mqtt), MQGW_ADMIN_PORT: String(admin) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1))
    child.once('exit', (code) => resolve(code))
  })
  try {
    const ready = await pollUntil(() => fetch(`http://127.0.0.1:${admin}/readyz`).then((r) => r.ok, () => false), (ok) => ok, 15000, 50)
    assert.ok(ready, `gateway under a pty did not become ready: ${out}`)
    await pollUntil(async () => out, (o) => o.includes('gateway started'), 5000)
    if (clientId !== undefined) {
      // A second event: a client's connect line.
      await endClient(await connectClient(`mqtt://127.0.0.1:${mqtt}`, { clientId }))
      await pollUntil(async () => out, (o) => o.includes(clientId), 5000)
    }
  } finally {
    child.kill('SIGTERM')
    await exited
  }
  return out
}

describe('log.format', () => {
  it('auto on a terminal: readable lines, one per event, no JSON', async () => {
    const out = await runOnTerminal(configFile(), 'pty-client')
    const lines = out.split(/\r?\n/).filter((l) => l.length > 0)
    const started = lines.find((l) => l.includes('gateway started'))
    assert.ok(started, out)
    // "[2026-01-01 12:00:00.000] INFO: gateway started {...}" (with colour codes on a terminal)
    const plain = started.replace(/\x1b\[[0-9;]*m/g, '')
    assert.match(plain, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: gateway started \{.*"node":/)
    assert.notEqual(plain, started, 'coloured on a terminal')
    assert.ok(!lines.some((l) => l.startsWith('{"level"')), out)
    const connected = lines.find((l) => l.includes('client connected'))?.replace(/\x1b\[[0-9;]*m/g, '')
    assert.match(connected ?? out, /INFO: client connected \{.*"clientId":"pty-client"/)
  })

  it('json on a terminal: JSON lines', async () => {
    const out = await runOnTerminal(configFile('json'))
    const started = out.split(/\r?\n/).find((l) => l.includes('gateway started'))!
    assert.equal((JSON.parse(started) as { msg: string }).msg, 'gateway started')
  })

  it('auto on a pipe: JSON lines; pretty on a pipe: readable lines without colours', async () => {
    for (const [format, json] of [[undefined, true], ['pretty', false]] as const) {
      const gw = await spawnGateway(['--config', configFile(format)])
      await pollUntil(async () => gw.stdout(), (o) => o.includes('gateway started'), 5000)
      gw.child.kill('SIGTERM')
      assert.equal(await gw.exited, 0)
      const lines = gw.stdout().split('\n').filter((l) => l.length > 0)
      assert.ok(lines.length >= 2)
      if (json) {
        for (const l of lines) assert.equal(typeof (JSON.parse(l) as { level: number }).level, 'number')
      } else {
        assert.ok(lines.some((l) => /^\[[\d :.-]+\] INFO: gateway started \{/.test(l)), gw.stdout())
        assert.ok(!gw.stdout().includes('\x1b['), 'no colour codes on a pipe')
      }
    }
  })

  it('rejects an unknown format with the key', async () => {
    const { parseConfig } = await import('../src/config/load.js')
    assert.throws(() => parseConfig('log: { format: fancy }', { plugins: [], env: {} }), /log\.format/)
    const config = parseConfig('', { plugins: [], env: { MQGW_LOG_FORMAT: 'pretty' } })
    assert.equal(config.log.format, 'pretty')
  })
})

describe('RateLimitedWarn', () => {
  it('writes the first line of a kind at once, counts the rest of its interval, and reports them with the next line', async () => {
    const lines: Array<Record<string, unknown>> = []
    const sink = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
    const warnings = new RateLimitedWarn(createLogger('warn', sink), 200)
    warnings.warn('a', { n: 1 }, 'kind a')
    warnings.warn('a', { n: 2 }, 'kind a')
    warnings.warn('a', { n: 3 }, 'kind a')
    // Another kind is not hidden behind the first.
    warnings.warn('b', { n: 4 }, 'kind b')
    assert.deepEqual(lines.map((l) => [l.msg, l.n, l.suppressed]), [['kind a', 1, undefined], ['kind b', 4, undefined]])
    await new Promise((resolve) => setTimeout(resolve, 250))
    warnings.warn('a', { n: 5 }, 'kind a')
    assert.deepEqual(lines.map((l) => [l.msg, l.n, l.suppressed]), [['kind a', 1, undefined], ['kind b', 4, undefined], ['kind a', 5, 2]])
  })
})
