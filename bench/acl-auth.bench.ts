/**
 * Access-control costs (issue: ACL plugin):
 *  1. ACL decision per PUBLISH with 1,000 rules: µs per check, p50/p99, for the
 *     first-level index and for a plain top-to-bottom scan of the same rules.
 *  2. End to end: QoS 1 publish rate through a gateway process with those 1,000 rules
 *     and auth, against the same gateway without auth/ACL (load generator in its own process).
 *  3. CONNECT rate with the auth HTTP callback: uncached (first connect of each client)
 *     vs cached (the same clients again), against no authentication.
 */
import { createServer } from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AclRules, type AclIdentity } from '../plugins/acl/rules.js'
import type { AclRuleSpec } from '../plugins/acl/schema.js'
import { TopicTemplate } from '../plugins/acl/topic-template.js'
import { hashPassword } from '../plugins/auth/password-hash.js'
import { loadgen, percentiles, report, spawnGateway, stopGateway } from './lib.js'
import { seededInt } from '../test/helpers/seeded-random.js'

const RULES = 1000
const CHECKS = 200000

function ruleSpecs (): AclRuleSpec[] {
  const specs: AclRuleSpec[] = []
  for (let i = 0; i < RULES - 1; i++) {
    // Mostly per-service subtrees keyed by identity; every 25th rule starts with a wildcard.
    const topic = i % 25 === 0 ? `+/\${clientid}/svc${i}` : `svc${i}/\${username}/#`
    specs.push({ permission: 'allow', action: i % 3 === 0 ? 'subscribe' : 'all', topics: [topic] })
  }
  specs.push({ permission: 'deny', action: 'all', topics: ['#'] })
  return specs
}

function microbench (): Array<Record<string, string | number>> {
  const specs = ruleSpecs()
  const rules = new AclRules(specs, new Set())
  const templates = specs.map((s) => ({ spec: s, templates: s.topics.map((t) => new TopicTemplate(t)) }))
  const id: AclIdentity = { clientid: 'phone-1', username: 'alice', claims: {}, superuser: false, listener: 'mqtt' }
  const rand = seededInt(7)
  const topics = Array.from({ length: 4096 }, () => {
    const k = rand(RULES)
    switch (rand(3)) {
      case 0: return `svc${k}/alice/x`.split('/') // allowed by rule k
      case 1: return `svc${k}/bob/x`.split('/') // someone else's: falls through to the final deny
      default: return `other/${k}/x`.split('/')
    }
  })
  const linear = (topic: string[]): string => {
    for (const { spec, templates: ts } of templates) {
      if (spec.action === 'subscribe') continue
      if (ts.some((t) => t.matches(id, topic))) return spec.permission
    }
    return 'deny'
  }
  const measure = (check: (topic: string[]) => unknown): { p50: number, p99: number, mean: number } => {
    for (let i = 0; i < 20000; i++) check(topics[i % topics.length]!) // warm up the JIT
    const samples = new Array<number>(CHECKS)
    for (let i = 0; i < CHECKS; i++) {
      const topic = topics[i % topics.length]!
      const t0 = process.hrtime.bigint()
      check(topic)
      samples[i] = Number(process.hrtime.bigint() - t0) / 1000
    }
    return percentiles(samples)
  }
  // Both evaluate the same rules and must agree.
  for (const t of topics.slice(0, 500)) {
    if (rules.check(id, 'publish', t, 'deny').permission !== linear(t)) throw new Error(`index and scan disagree on ${t.join('/')}`)
  }
  const indexed = measure((t) => rules.check(id, 'publish', t, 'deny'))
  const scan = measure(linear)
  return [
    { check: 'ACL first-level index', rules: RULES, 'p50 µs': indexed.p50, 'p99 µs': indexed.p99, 'mean µs': indexed.mean },
    { check: 'plain scan (reference)', rules: RULES, 'p50 µs': scan.p50, 'p99 µs': scan.p99, 'mean µs': scan.mean }
  ]
}

async function main (): Promise<void> {
  const micro = microbench()
  report('ACL decision per PUBLISH (1,000 rules, in process)', micro, micro)

  const dir = mkdtempSync(join(tmpdir(), 'mqgw-bench-'))
  const aclFile = join(dir, 'acl.yaml')
  writeFileSync(aclFile, JSON.stringify({ rules: ruleSpecs() }))
  const hash = await hashPassword('pw')

  // A business service answering every login "allow" (real HTTP, in this process).
  let calls = 0
  const service = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      calls++
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"result":"allow"}')
    })
  })
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve))
  const serviceUrl = `http://127.0.0.1:${(service.address() as AddressInfo).port}/auth`

  const configs = {
    plain: '',
    acl: `auth: { users: [ { username: alice, passwordHash: "${hash}" } ] }\nacl: { file: ${aclFile} }\n`,
    callback: `auth: { http: { url: ${serviceUrl}, cacheTtlMs: 600000 } }\n`
  }
  const configFile = (name: keyof typeof configs): string => {
    const file = join(dir, `gateway-${name}.yaml`)
    writeFileSync(file, `log: { level: warn }\n${configs[name]}`)
    return file
  }

  const publishRows: Array<Record<string, string | number>> = []
  const publishRaw: Record<string, unknown> = {}
  for (const name of ['plain', 'acl'] as const) {
    const gw = await spawnGateway(['--config', configFile(name)])
    try {
      const job = { mode: 'publish', url: `mqtt://127.0.0.1:${gw.ports.mqtt}`, count: 30000, inflight: 200, topic: 'svc500/alice/x', qos: 1, username: 'alice', password: 'pw', timeLimitMs: 60000 }
      await loadgen({ ...job, count: 3000 }) // warm up
      const r = await loadgen<{ messagesPerSecond: number }>(job)
      publishRaw[name] = r
      publishRows.push({ gateway: name === 'plain' ? 'no auth/ACL' : 'auth + 1,000 ACL rules', 'QoS 1 msgs/s': r.messagesPerSecond })
    } finally {
      await stopGateway(gw)
    }
  }
  const base = publishRows[0]!['QoS 1 msgs/s'] as number
  for (const row of publishRows) row['ratio to no ACL'] = (row['QoS 1 msgs/s'] as number) / base
  report('QoS 1 publish through the gateway process, 1 publisher, 200 in flight', publishRows, publishRaw)

  const connectRows: Array<Record<string, string | number>> = []
  const connectRaw: Record<string, unknown> = {}
  for (const name of ['plain', 'callback'] as const) {
    const gw = await spawnGateway(['--config', configFile(name)])
    try {
      const job = { mode: 'connect', url: `mqtt://127.0.0.1:${gw.ports.mqtt}`, count: 2000, concurrency: 50, clientPrefix: 'bench', username: 'user', password: 'pw', timeLimitMs: 60000 }
      calls = 0
      const first = await loadgen<{ connectsPerSecond: number, p99ms: number, connected: number }>(job)
      const firstCalls = calls
      const second = await loadgen<{ connectsPerSecond: number, p99ms: number, connected: number }>(job)
      connectRaw[name] = { first, second, callbackCallsFirst: firstCalls, callbackCallsSecond: calls - firstCalls }
      if (name === 'plain') {
        connectRows.push({ auth: 'none', 'connects/s': second.connectsPerSecond, 'p99 ms': second.p99ms, 'callback calls': 0 })
      } else {
        connectRows.push({ auth: 'HTTP callback, uncached', 'connects/s': first.connectsPerSecond, 'p99 ms': first.p99ms, 'callback calls': firstCalls })
        connectRows.push({ auth: 'HTTP callback, cached', 'connects/s': second.connectsPerSecond, 'p99 ms': second.p99ms, 'callback calls': calls - firstCalls })
      }
    } finally {
      await stopGateway(gw)
    }
  }
  const none = connectRows[0]!['connects/s'] as number
  for (const row of connectRows) row['ratio to none'] = (row['connects/s'] as number) / none
  report('CONNECT rate, 2,000 clients, 50 concurrent (load generator in its own process)', connectRows, connectRaw)
  service.close()
}

await main()
process.exit(0)
