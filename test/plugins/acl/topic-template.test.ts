import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { covers } from '../../../src/topic.js'
import { TemplateError, TopicTemplate, type TemplateIdentity } from '../../../plugins/acl/topic-template.js'

const alice: TemplateIdentity = { clientid: 'phone-1', username: 'alice', claims: { uid: '42' } }
const allows = (template: string, topic: string, id: TemplateIdentity = alice): boolean => new TopicTemplate(template).matches(id, topic.split('/'))

describe('filter coverage', () => {
  const c = (rule: string, requested: string): boolean => covers(rule.split('/'), requested.split('/'))
  it('rule user/alice/# covers its own subtree only', () => {
    for (const ok of ['user/alice/inbox', 'user/alice/#', 'user/alice', 'user/alice/a/b', 'user/alice/+']) assert.equal(c('user/alice/#', ok), true, ok)
    for (const no of ['user/+/inbox', 'user/#', '#', 'user/bob/inbox', '+/alice/inbox', 'user']) assert.equal(c('user/alice/#', no), false, no)
  })
  it('+ covers one level, literal or +, never #', () => {
    assert.equal(c('live/+/chat', 'live/1/chat'), true)
    assert.equal(c('live/+/chat', 'live/+/chat'), true)
    assert.equal(c('live/+/chat', 'live/#'), false)
    assert.equal(c('live/+/chat', 'live/1/chat/x'), false)
    assert.equal(c('live/+/chat', 'live/1'), false)
    assert.equal(c('a/+', 'a'), false)
  })
  it('# covers everything except $-topics; + as first level does not match $-topics [MQTT-4.7.2-1]', () => {
    assert.equal(c('#', 'a/b'), true)
    assert.equal(c('#', '#'), true)
    assert.equal(c('#', '$SYS/broker'), false)
    assert.equal(c('+/broker', '$SYS/broker'), false)
    assert.equal(c('$SYS/#', '$SYS/broker/x'), true)
  })
})

describe('TopicTemplate', () => {
  it('fills ${username}, ${clientid} and ${claims.NAME}', () => {
    assert.equal(allows('user/${username}/inbox', 'user/alice/inbox'), true)
    assert.equal(allows('user/${username}/inbox', 'user/bob/inbox'), false)
    assert.equal(allows('device/${clientid}/telemetry', 'device/phone-1/telemetry'), true)
    assert.equal(allows('uid/${claims.uid}/#', 'uid/42/x'), true)
    assert.equal(allows('uid/${claims.uid}/#', 'uid/43/x'), false)
    assert.equal(allows('pre-${username}-post/x', 'pre-alice-post/x'), true)
  })

  it('a missing, empty or shape-changing value never matches (template injection)', () => {
    for (const username of ['#', '+', 'a/+', 'a/b', '', 'x\u0000y', 'ali#ce', 'a+']) {
      const id = { ...alice, username }
      for (const topic of ['user/#/inbox', 'user/+/inbox', 'user/a/+/inbox', 'user/a/b/inbox', 'user//inbox', 'user/x\u0000y/inbox', 'user/ali#ce/inbox', 'user/a+/inbox']) {
        assert.equal(allows('user/${username}/inbox', topic, id), false, `username ${JSON.stringify(username)} topic ${topic}`)
      }
    }
    assert.equal(allows('user/${username}/inbox', 'user/undefined/inbox', { ...alice, username: undefined }), false)
    assert.equal(allows('uid/${claims.missing}/x', 'uid//x'), false)
    assert.equal(allows('uid/${claims.missing}/x', 'uid/undefined/x'), false)
    assert.equal(allows('device/${clientid}/t', 'device/+/t', { ...alice, clientid: '+' }), false)
  })

  it('eq matches literally, without wildcard meaning', () => {
    assert.equal(allows('eq live/+/chat', 'live/+/chat'), true)
    assert.equal(allows('eq live/+/chat', 'live/1/chat'), false)
    assert.equal(allows('eq #', '#'), true)
    assert.equal(allows('eq #', 'a'), false)
  })

  it('malformed templates are refused at load', () => {
    assert.throws(() => new TopicTemplate('a/#/b'), TemplateError)
    assert.throws(() => new TopicTemplate('a/b+'), TemplateError)
    assert.throws(() => new TopicTemplate('a/${password}'), /unknown variable/)
    assert.throws(() => new TopicTemplate('a/${user'), /malformed variable/)
  })
})
