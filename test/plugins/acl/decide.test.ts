import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclAnswerSchema, explain, type AclPolicy, type AclQuestion } from '../../../plugins/acl/decide.js'
import { aclPlugin } from '../../../plugins/acl/plugin.js'
import { AclRules } from '../../../plugins/acl/rules.js'
import { TEST_TOKEN, api } from '../../admin/api-client.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { startBusinessService } from '../../helpers/http-server.js'
import { collect, connectClient, endClient, subscribeRaw, waitFor } from '../../helpers/mqtt.js'

const RULES = `
rules:
  - { permission: allow, action: subscribe, topics: ["#"], who: { username: observer } }
  - { permission: allow, action: subscribe, topics: ["user/\${username}/inbox"] }
  - { permission: allow, action: publish,   topics: ["device/\${clientid}/telemetry"] }
  - { permission: allow, action: all,       topics: ["live/+/chat"], callback: live }
  - { permission: allow, action: subscribe, topics: ["uid/\${claims.uid}/#"] }
  - { permission: deny,  action: all,       topics: ["#"] }
`

const q = (over: Partial<AclQuestion> & Pick<AclQuestion, 'action' | 'topic'>): AclQuestion =>
  ({ clientid: 'c1', username: 'alice', claims: {}, superuser: false, listener: 'mqtt', ...over })

describe('ACL decide/explain: every kind of deciding answer', () => {
  const rules = AclRules.parse(RULES, new Set(['live']))
  const policy: AclPolicy = { rules, noMatch: 'deny', sysTopics: 'superuser' }
  const cases: Array<[AclQuestion, string, string, number | undefined]> = [
    [q({ action: 'subscribe', topic: 'user/alice/inbox' }), 'allow', 'rule', 1],
    [q({ action: 'subscribe', topic: 'user/bob/inbox' }), 'deny', 'rule', 5],
    [q({ action: 'publish', topic: 'device/c1/telemetry' }), 'allow', 'rule', 2],
    [q({ action: 'publish', topic: 'device/c2/telemetry' }), 'deny', 'rule', 5],
    [q({ action: 'subscribe', topic: 'uid/7/x', claims: { uid: '7' } }), 'allow', 'rule', 4],
    [q({ action: 'subscribe', topic: 'uid/7/x', claims: { uid: '8' } }), 'deny', 'rule', 5],
    [q({ action: 'publish', topic: 'live/1/chat' }), 'callback', 'rule', 3],
    [q({ action: 'subscribe', topic: '$SYS/broker/uptime', username: 'observer' }), 'deny', 'sysTopics', undefined],
    [q({ action: 'subscribe', topic: '$SYS/broker/uptime', superuser: true }), 'allow', 'superuser', undefined]
  ]
  for (const [question, decision, by, rule] of cases) {
    it(`${question.action} ${question.topic} as ${question.username}${question.superuser ? ' (superuser)' : ''} -> ${decision} by ${by}${rule !== undefined ? ` ${rule}` : ''}`, () => {
      const answer = aclAnswerSchema.parse(explain(policy, '/etc/acl.yaml', question))
      assert.equal(answer.decision, decision)
      assert.equal(answer.by, by)
      assert.equal(answer.rule?.index, rule)
      if (rule !== undefined) assert.equal(answer.rule!.file, '/etc/acl.yaml')
      if (decision === 'callback') assert.equal(answer.callback, 'live')
    })
  }

  it('acl.noMatch decides when no rule matches; sysTopics: rules lets the rules decide $SYS', () => {
    const open = { rules: AclRules.parse('rules: []', new Set()), noMatch: 'allow' as const, sysTopics: 'rules' as const }
    assert.deepEqual(explain(open, 'f', q({ action: 'publish', topic: 'a/b' })), { decision: 'allow', by: 'noMatch' })
    assert.deepEqual(explain(open, 'f', q({ action: 'subscribe', topic: '$SYS/#' })), { decision: 'allow', by: 'noMatch' })
  })
})

describe('POST /api/v1/acl/check answers as the running gateway decides, without side effects', () => {
  let gw: TestGateway
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let observer: MqttClient
  let observed: ReturnType<typeof collect>

  before(async () => {
    service = await startBusinessService(() => ({ json: { result: 'allow' } }))
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-acl-decide-'))
    writeFileSync(join(dir, 'acl.yaml'), RULES)
    gw = await startTestGateway(`
listeners: { admin: { apiToken: ${TEST_TOKEN} } }
acl:
  file: acl.yaml
  callbacks: { live: { url: "${service.url}/acl" } }
`, { plugins: [aclPlugin], baseDir: dir })
    observer = await connectClient(gw.mqttUrl, { clientId: 'obs', username: 'observer' })
    observed = collect(observer)
    await observer.subscribeAsync('#', { qos: 1 })
  })
  after(async () => {
    await endClient(observer, true)
    await gw.stop()
    await service.close()
  })

  const check = async (body: Record<string, unknown>): Promise<{ decision: string, by: string, rule?: { index: number, file: string } }> => {
    const res = await api(gw.adminUrl, 'POST', '/acl/check', { body })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    return aclAnswerSchema.parse(res.body)
  }

  it('subscribe: the API\'s decision is the SUBACK a real client gets', async () => {
    const filters = ['user/alice/inbox', 'user/bob/inbox', 'device/a1/telemetry', 'other/#']
    const client = await connectClient(gw.mqttUrl, { clientId: 'a1', username: 'alice' })
    const granted = await subscribeRaw(client, Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])))
    for (const [i, filter] of filters.entries()) {
      const answer = await check({ clientid: 'a1', username: 'alice', action: 'subscribe', topic: filter })
      assert.equal(answer.decision, granted[i] === 128 ? 'deny' : 'allow', `${filter}: SUBACK ${granted[i]}, API ${answer.decision}`)
    }
    assert.deepEqual(granted, [1, 128, 128, 128])
    const file = (await check({ clientid: 'a1', username: 'alice', action: 'subscribe', topic: 'user/alice/inbox' })).rule!.file
    // The rules file as the plugin resolved it (relative to the config's directory).
    assert.match(file, /^\/.*mqgw-acl-decide-.*\/acl\.yaml$/)
    await endClient(client)
  })

  it('publish: what the API allows reaches subscribers, what it denies does not', async () => {
    const client = await connectClient(gw.mqttUrl, { clientId: 'dev-9', username: 'alice' })
    const topics = ['device/dev-9/telemetry', 'device/dev-8/telemetry', 'user/alice/inbox']
    const answers = []
    for (const topic of topics) {
      answers.push((await check({ clientid: 'dev-9', username: 'alice', action: 'publish', topic })).decision)
      await client.publishAsync(topic, `p ${topic}`, { qos: 1 })
    }
    // Marker: an allowed publish after the others, on the same connection.
    await client.publishAsync('device/dev-9/telemetry', 'marker', { qos: 1 })
    await waitFor(() => observed.some((m) => m.payload === 'marker'), 'the marker')
    const delivered = new Set(observed.map((m) => m.topic))
    assert.deepEqual(answers, ['allow', 'deny', 'deny'])
    for (const [i, topic] of topics.entries()) assert.equal(delivered.has(topic), answers[i] === 'allow', topic)
    await endClient(client)
  })

  it('no side effects: no denial counted or logged, no callback called', async () => {
    const metrics = async (): Promise<string> => await (await fetch(`${gw.adminUrl}/metrics`)).text()
    const denials = (text: string): string => text.split('\n').filter((l) => l.startsWith('mqgw_acl_denials_total')).join('\n')
    const before = denials(await metrics())
    const deniedLines = gw.logs.find('ACL denied').length
    const calls = service.calls.length
    for (let i = 0; i < 5; i++) assert.equal((await check({ clientid: 'x', username: 'eve', action: 'publish', topic: `secret/${i}` })).decision, 'deny')
    const cb = await check({ clientid: 'x', username: 'eve', action: 'publish', topic: 'live/1/chat' })
    assert.equal(cb.decision, 'callback')
    assert.equal(denials(await metrics()), before)
    assert.equal(gw.logs.find('ACL denied').length, deniedLines)
    assert.equal(service.calls.length, calls)
    // And a real client through the same callback rule does call the service (the marker that it is wired).
    const client = await connectClient(gw.mqttUrl, { clientId: 'live-1', username: 'eve' })
    await client.publishAsync('live/1/chat', 'hi', { qos: 1 })
    await waitFor(() => service.calls.length === calls + 1, 'the callback for a real publish')
    await endClient(client)
  })
})
