import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AclFileError, AclRules, type AclIdentity } from '../../../plugins/acl/rules.js'
import type { AclRuleSpec } from '../../../plugins/acl/schema.js'
import { TopicTemplate } from '../../../plugins/acl/topic-template.js'
import { seededInt } from '../../helpers/seeded-random.js'

const id = (over: Partial<AclIdentity> = {}): AclIdentity => ({ clientid: 'c1', username: 'alice', claims: {}, superuser: false, listener: 'mqtt', ...over })

describe('AclRules', () => {
  const rules = AclRules.parse(`
rules:
  - { permission: deny,  action: publish,   topics: ["user/\${username}/readonly"] }
  - { permission: allow, action: all,       topics: ["user/\${username}/#"] }
  - { permission: allow, action: subscribe, topics: ["ops/#"], who: { username: [ops, root] } }
  - { permission: allow, action: subscribe, topics: ["sensors/#"], who: { clientidRegex: "^sensor-[0-9]+$" } }
  - { permission: allow, action: subscribe, topics: ["ws-only/#"], who: { listener: ws } }
  - { permission: allow, action: publish,   topics: ["admin/#"], who: { superuser: true } }
  - { permission: allow, action: publish,   topics: ["live/+/chat"], callback: live }
  - { permission: deny,  action: all,       topics: ["#"] }
`, new Set(['live']))

  const decide = (who: AclIdentity, action: 'publish' | 'subscribe', topic: string): string => {
    const d = rules.check(who, action, topic.split('/'), 'deny')
    return d.callback ? `${d.permission}+${d.callback}` : d.permission
  }

  it('first matching rule decides, top to bottom', () => {
    assert.equal(decide(id(), 'publish', 'user/alice/readonly'), 'deny')
    assert.equal(decide(id(), 'subscribe', 'user/alice/readonly'), 'allow')
    assert.equal(decide(id(), 'publish', 'user/alice/x'), 'allow')
    assert.equal(decide(id(), 'publish', 'user/bob/x'), 'deny')
  })

  it('who narrows by user name, client id regex, listener and superuser', () => {
    assert.equal(decide(id({ username: 'ops' }), 'subscribe', 'ops/x'), 'allow')
    assert.equal(decide(id(), 'subscribe', 'ops/x'), 'deny')
    assert.equal(decide(id({ clientid: 'sensor-12' }), 'subscribe', 'sensors/a'), 'allow')
    assert.equal(decide(id({ clientid: 'sensor-x' }), 'subscribe', 'sensors/a'), 'deny')
    assert.equal(decide(id({ listener: 'ws' }), 'subscribe', 'ws-only/a'), 'allow')
    assert.equal(decide(id(), 'subscribe', 'ws-only/a'), 'deny')
    assert.equal(decide(id({ superuser: true }), 'publish', 'admin/x'), 'allow')
  })

  it('a rule with a callback reports it', () => {
    assert.equal(decide(id(), 'publish', 'live/9/chat'), 'allow+live')
  })

  it('noMatch applies when no rule matches', () => {
    const empty = AclRules.parse('rules: []', new Set())
    assert.equal(empty.check(id(), 'publish', ['x'], 'allow').permission, 'allow')
    assert.equal(empty.check(id(), 'publish', ['x'], 'deny').permission, 'deny')
  })

  it('bad files are refused with the rule and key named', () => {
    assert.throws(() => AclRules.parse('rules: [ { permission: maybe, action: all, topics: [a] } ]', new Set()), /rules\[0\]\.permission/)
    assert.throws(() => AclRules.parse('rules: [ { permission: allow, action: all, topics: [a], colour: red } ]', new Set()), /rules\[0\]\.colour: unknown key/)
    assert.throws(() => AclRules.parse('rules: [ { permission: allow, action: all, topics: ["a/#/b"] } ]', new Set()), /rules\[0\]\.topics\[0\]/)
    assert.throws(() => AclRules.parse('rules: [ { permission: allow, action: all, topics: [a], callback: nope } ]', new Set()), /"nope" is not defined in acl.callbacks/)
    assert.throws(() => AclRules.parse('rules: [ {', new Set()), AclFileError)
    assert.throws(() => AclRules.parse('rules:\n  - { permission: allow, action: all, topics: [a], who: { clientidRegex: "(" } }', new Set()), /not a valid regular expression/)
  })

  it('the first-level index gives the same answers as evaluating every rule in order (randomized)', () => {
    const rand = seededInt(12345)
    const words = ['a', 'b', 'c', 'user', '$SYS']
    const level = (): string => ['+', '${username}', ...words][rand(words.length + 2)]!
    const specs: AclRuleSpec[] = Array.from({ length: 200 }, () => {
      const depth = 1 + rand(3)
      const parts = Array.from({ length: depth }, level)
      if (rand(4) === 0) parts.push('#')
      return { permission: rand(2) === 0 ? 'allow' : 'deny', action: (['publish', 'subscribe', 'all'] as const)[rand(3)]!, topics: [parts.join('/')] }
    })
    const indexed = new AclRules(specs, new Set())
    const templates = specs.map((s) => new TopicTemplate(s.topics[0]!))
    for (let i = 0; i < 3000; i++) {
      const topic = Array.from({ length: 1 + rand(3) }, () => ['alice', '+', '#', ...words][rand(words.length + 3)]!).join('/')
      const action = rand(2) === 0 ? 'publish' : 'subscribe'
      const who = id()
      const naive = specs.findIndex((s, k) => (s.action === 'all' || s.action === action) && templates[k]!.matches(who, topic.split('/')))
      const got = indexed.check(who, action, topic.split('/'), 'deny')
      assert.equal(got.rule, naive === -1 ? undefined : naive, `${action} ${topic}`)
    }
  })
})
