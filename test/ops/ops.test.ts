/**
 * ops/: the Prometheus alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`, Debian's prometheus package; scripts/test.sh installs it), the
 * scrape config passes `promtool check config`, every dashboard query is valid PromQL, and
 * every metric the dashboard and the alerts name is exported by a running gateway (the real
 * CLI with Redis, flow, auth, ACL, Kafka and $SYS enabled). Also the compose wiring of
 * Prometheus and Grafana (no Docker engine here: parsed).
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parse as yamlParse, stringify as yamlStringify } from 'yaml'
import { connectClient, endClient, pollUntil } from '../helpers/mqtt.js'
import { freePort, run, spawnGateway, type GatewayProcess } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'

const ROOT = process.cwd()
const OPS = join(ROOT, 'ops')
const DASHBOARD = join(OPS, 'grafana/dashboards/mqtt-gateway.json')

interface Panel { type: string, title: string, gridPos: { x: number, y: number, w: number, h: number }, targets?: Array<{ expr: string }> }
interface Rule { alert?: string, record?: string, expr: string }

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string, panels: Panel[], templating: { list: Array<{ name: string, query?: unknown }> } }
const alerts = yamlParse(readFileSync(join(OPS, 'alerts.yml'), 'utf8')) as { groups: Array<{ name: string, rules: Rule[] }> }

const dashboardExprs = (): string[] => dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))
const alertExprs = (): string[] => alerts.groups.flatMap((g) => g.rules.map((r) => r.expr))
const metricNames = (exprs: string[]): Set<string> => new Set(exprs.flatMap((e) => e.match(/\bmqgw_[a-zA-Z0-9_]+/g) ?? []))

/** promtool, or a failure in one line saying how to get it. */
async function promtool (args: string[]): Promise<{ code: number | null, out: string }> {
  const result = await run('promtool', args, 30000, ROOT).catch(() => undefined)
  assert.ok(result, 'promtool not found: install Debian\'s "prometheus" package (scripts/test.sh does)')
  return { code: result.code, out: result.stdout + result.stderr }
}

describe('ops/ Prometheus rules and config (promtool)', () => {
  it('promtool check rules ops/alerts.yml', async () => {
    const { code, out } = await promtool(['check', 'rules', 'ops/alerts.yml'])
    assert.equal(code, 0, out)
    assert.match(out, /SUCCESS: \d+ rules found/)
  })

  it('promtool test rules ops/alerts.test.yml: every alert has a test that fires it', async () => {
    const { code, out } = await promtool(['test', 'rules', 'ops/alerts.test.yml'])
    assert.equal(code, 0, out)
    assert.match(out, /SUCCESS/)
    const tests = yamlParse(readFileSync(join(OPS, 'alerts.test.yml'), 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string, exp_alerts: unknown[] }> }> }
    const fired = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)))
    const defined = alerts.groups.flatMap((g) => g.rules.map((r) => r.alert!))
    assert.deepEqual(defined.filter((a) => !fired.has(a)), [], 'alerts without a firing test')
    for (const needed of ['MqttGatewayNotReady', 'MqttGatewayMessagesDropped', 'MqttGatewayQueueDropsRising', 'MqttGatewayKafkaConsumerLag', 'MqttGatewayEventLoopLag', 'MqttGatewayCallbackErrors']) {
      assert.ok(defined.includes(needed), needed)
    }
  })

  it('promtool check config ops/prometheus.yml', async () => {
    const { code, out } = await promtool(['check', 'config', 'ops/prometheus.yml'])
    assert.equal(code, 0, out)
  })

  it('a broken rule is caught (the check can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-ops-'))
    writeFileSync(join(dir, 'bad.yml'), yamlStringify({ groups: [{ name: 'x', rules: [{ alert: 'Bad', expr: 'sum by (instance (mqgw_ready)' }] }] }))
    const { code } = await promtool(['check', 'rules', join(dir, 'bad.yml')])
    assert.notEqual(code, 0)
  })
})

describe('ops/ Grafana dashboard', () => {
  it('is a dashboard with the panels ops need, laid out without overlaps', () => {
    assert.equal(dashboard.uid, 'mqtt-gateway')
    const cells = new Set<string>()
    for (const p of dashboard.panels) {
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits in 24 columns`)
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel`)
          cells.add(`${x},${y}`)
        }
      }
      if (p.type !== 'row') assert.ok((p.targets ?? []).length > 0 && p.targets!.every((t) => t.expr.trim().length > 0), `${p.title} has queries`)
    }
    const used = metricNames(dashboardExprs())
    // connections, connects and refusals, messages by QoS, drops, queue depth, hook latency,
    // Redis/Kafka health and lag, event-loop lag, memory per connection.
    for (const m of ['mqgw_connections_current', 'mqgw_connections_total', 'mqgw_connections_refused_total', 'mqgw_messages_in_total', 'mqgw_messages_out_total',
      'mqgw_messages_dropped_total', 'mqgw_flow_dropped_total', 'mqgw_flow_queued_messages', 'mqgw_hook_duration_seconds_bucket', 'mqgw_ready_check',
      'mqgw_kafka_consumer_lag', 'mqgw_nodejs_eventloop_lag_p99_seconds', 'mqgw_process_resident_memory_bytes']) {
      assert.ok(used.has(m), `the dashboard shows ${m}`)
    }
  })

  it('every query is valid PromQL (promtool, with Grafana\'s variables filled in)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-ops-'))
    const fill = (e: string): string => e.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*')
    const rules = dashboardExprs().map((e, i) => ({ record: `dashboard:query_${i}`, expr: fill(e) }))
    writeFileSync(join(dir, 'queries.yml'), yamlStringify({ groups: [{ name: 'dashboard', rules }] }))
    const { code, out } = await promtool(['check', 'rules', join(dir, 'queries.yml')])
    assert.equal(code, 0, out)
    assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`))
  })
})

describe('metric names in the dashboard and the alerts are exported by a running gateway', () => {
  const redis = new TestRedis()
  let gw: GatewayProcess | undefined
  let exported: Set<string>
  let text: string

  before(async () => {
    await redis.start()
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-ops-gw-'))
    writeFileSync(join(dir, 'acl.yaml'), 'rules:\n  - { permission: allow, action: all, topics: ["#"] }\n')
    // Kafka on a closed port: the bridge registers its metrics at setup and keeps retrying.
    const kafkaPort = await freePort()
    writeFileSync(join(dir, 'gateway.yaml'), `
node: { id: ops-1 }
listeners: { ws: { enabled: false } }
persistence: { type: redis, redis: ${redis.configYaml} }
flow: {}
auth: { anonymous: true }
acl: { file: acl.yaml }
kafka: { brokers: ["127.0.0.1:${kafkaPort}"], routes: [{ mqtt: "k/#", kafkaTopic: k }], consume: [{ kafkaTopic: push }] }
sys: { intervalS: 1, prefix: "$SYS/brokers/\${node}" }
`)
    // Not ready (Kafka is unreachable): wait for /healthz.
    gw = await spawnGateway(['--config', join(dir, 'gateway.yaml')], {}, 'healthz')
    await pollUntil(async () => gw!.stdout(), (o) => o.includes('gateway started'), 10000)
    // Some traffic, so that labelled series exist too.
    const client = await connectClient(`mqtt://127.0.0.1:${gw.ports.mqtt}`, { clientId: 'ops-client' })
    await client.subscribeAsync('t/#', { qos: 1 })
    await client.publishAsync('t/1', 'x', { qos: 1 })
    await endClient(client)
    text = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text()
    exported = new Set<string>()
    for (const line of text.split('\n')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line)
      if (!m) continue
      const [, name, type] = m as unknown as [string, string, string]
      exported.add(name)
      // Prometheus' series of a histogram or summary.
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(name + s)
      if (type === 'summary') for (const s of ['_sum', '_count']) exported.add(name + s)
    }
  })

  after(async () => {
    if (gw && gw.child.exitCode === null) {
      gw.child.kill('SIGTERM')
      const code = await Promise.race([gw.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15000))])
      if (code === 'timeout') gw.child.kill('SIGKILL')
    }
    await redis.stop()
  })

  it('the gateway exports the gauges the dashboard needs, with what /readyz says', async () => {
    for (const m of ['mqgw_ready', 'mqgw_ready_check', 'mqgw_retained_messages', 'mqgw_kafka_consumer_lag', 'mqgw_offline_queue_dropped_total', 'mqgw_hook_duration_seconds_bucket']) {
      assert.ok(exported.has(m), `${m} exported`)
    }
    // Kafka is unreachable, Redis is up: /readyz is 503 and the gauges agree.
    const readyz = await fetch(`http://127.0.0.1:${gw!.ports.admin}/readyz`)
    assert.equal(readyz.status, 503)
    assert.match(text, /^mqgw_ready 0$/m)
    assert.match(text, /^mqgw_ready_check\{check="kafka"\} 0$/m)
    assert.match(text, /^mqgw_ready_check\{check="redis"\} 1$/m)
    assert.match(text, /^mqgw_ready_check\{check="listeners"\} 1$/m)
  })

  it('dashboard queries name only exported metrics', () => {
    const used = metricNames(dashboardExprs())
    assert.ok(used.size >= 30, `the dashboard uses ${used.size} metrics`)
    assert.deepEqual([...used].filter((m) => !exported.has(m)).sort(), [])
  })

  it('alert expressions name only exported metrics', () => {
    const used = metricNames(alertExprs())
    assert.ok(used.size >= 10, `the alerts use ${used.size} metrics`)
    assert.deepEqual([...used].filter((m) => !exported.has(m)).sort(), [])
    // The names are checked, not just found: a misspelt one is caught.
    assert.ok(!exported.has('mqgw_connection_current'))
  })
})

describe('docker-compose.yml wires Prometheus and Grafana to ops/', () => {
  interface Service { image?: string, volumes?: string[], ports?: string[], environment?: Record<string, string> }
  const compose = yamlParse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> }
  const mounts = (s: Service): Map<string, string> => new Map((s.volumes ?? []).filter((v) => v.startsWith('./')).map((v) => {
    const [source = '', target = ''] = v.split(':')
    return [target, resolve(ROOT, source)]
  }))

  it('Prometheus gets ops/prometheus.yml with the alert rules beside it and scrapes both nodes on the admin port', () => {
    const prom = compose.services.prometheus!
    assert.match(prom.image!, /^prom\/prometheus:/)
    const m = mounts(prom)
    assert.equal(m.get('/etc/prometheus/prometheus.yml'), join(OPS, 'prometheus.yml'))
    assert.equal(m.get('/etc/prometheus/alerts.yml'), join(OPS, 'alerts.yml'))
    const config = yamlParse(readFileSync(join(OPS, 'prometheus.yml'), 'utf8')) as { rule_files: string[], scrape_configs: Array<{ job_name: string, static_configs: Array<{ targets: string[] }> }> }
    assert.deepEqual(config.rule_files, ['alerts.yml'])
    const job = config.scrape_configs.find((j) => j.job_name === 'mqtt-gateway')!
    // The alerts select job="mqtt-gateway".
    assert.ok(alertExprs().some((e) => e.includes('job="mqtt-gateway"')))
    const cluster = yamlParse(readFileSync(join(ROOT, 'config/cluster.yaml'), 'utf8')) as { listeners: { admin: { host: string, port: number } } }
    assert.equal(cluster.listeners.admin.host, '0.0.0.0')
    assert.deepEqual(job.static_configs.flatMap((s) => s.targets).sort(), ['gw-1', 'gw-2'].map((g) => `${g}:${cluster.listeners.admin.port}`))
    for (const g of ['gw-1', 'gw-2']) assert.ok(compose.services[g], g)
  })

  it('Grafana provisions the Prometheus data source and the dashboard from ops/grafana', () => {
    const grafana = compose.services.grafana!
    assert.match(grafana.image!, /^grafana\/grafana:/)
    const m = mounts(grafana)
    const provisioning = m.get('/etc/grafana/provisioning')!
    assert.equal(provisioning, join(OPS, 'grafana/provisioning'))
    const ds = yamlParse(readFileSync(join(provisioning, 'datasources/prometheus.yml'), 'utf8')) as { datasources: Array<{ type: string, url: string }> }
    assert.equal(ds.datasources[0]!.type, 'prometheus')
    assert.equal(ds.datasources[0]!.url, 'http://prometheus:9090')
    const providers = yamlParse(readFileSync(join(provisioning, 'dashboards/mqtt-gateway.yml'), 'utf8')) as { providers: Array<{ options: { path: string } }> }
    const path = providers.providers[0]!.options.path
    const hostDir = m.get(path)
    assert.ok(hostDir, `the provider's path ${path} is mounted`)
    assert.ok(existsSync(join(hostDir, 'mqtt-gateway.json')))
    for (const s of ['prometheus', 'grafana']) {
      for (const p of compose.services[s]!.ports ?? []) assert.match(p, /^127\.0\.0\.1:/, `${s} published on loopback only`)
    }
  })
})
