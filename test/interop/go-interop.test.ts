import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'

const execFileAsync = promisify(execFile)
const ROOT = process.cwd()
const BIN = join(ROOT, '.cache/go/bin/mqgw-interop')

/**
 * The Go toolchain's caches live under .cache/go (kept by CI between runs): modules come
 * from the Go module proxy once, at the versions go.sum pins; later builds are offline.
 */
function goEnv (): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: join(ROOT, '.cache/go/mod'),
    GOCACHE: join(ROOT, '.cache/go/build'),
    GOFLAGS: '-mod=mod',
    GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? 'local'
  }
}

async function runInterop (url: string, prefix: string): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(BIN, ['-url', url, '-prefix', prefix], { timeout: 60000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) }
  }
}

describe('interop with Eclipse Paho Go (paho.mqtt.golang), a real process: QoS 0/1/2 with downgrade, retained, Will, persistent session, unsubscribe', () => {
  before(async () => {
    // Builds test/interop/go (a no-op when nothing changed: the build cache is under .cache/go).
    await execFileAsync('go', ['build', '-o', BIN, '.'], { cwd: join(ROOT, 'test/interop/go'), env: goEnv(), timeout: 300000 })
  })

  for (const withFlow of [false, true]) {
    describe(withFlow ? 'with the flow plugin' : 'without plugins', () => {
      let gw: TestGateway
      before(async () => {
        gw = await startTestGateway(withFlow ? 'flow: { inflightWindow: 8 }' : '', { plugins: withFlow ? [flowPlugin] : [] })
      })
      after(async () => { await gw.stop() })

      for (const transport of ['tcp', 'ws'] as const) {
        it(`over ${transport === 'tcp' ? 'TCP' : 'WebSocket'}`, async () => {
          const url = transport === 'tcp' ? `tcp://127.0.0.1:${gw.gateway.ports.mqtt}` : gw.wsUrl
          const result = await runInterop(url, `go-${transport}-${withFlow ? 'flow' : 'plain'}`)
          assert.equal(result.code, 0, result.stdout + result.stderr)
          const report = JSON.parse(result.stdout) as { ok: boolean, failures: string[] }
          assert.deepEqual(report.failures, [])
          assert.equal(report.ok, true)
        })
      }
    })
  }
})
