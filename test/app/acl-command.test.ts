import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { CLI, run } from '../helpers/process.js'

/** `mqtt-gateway acl check|test`, run as the built binary. */
const dir = mkdtempSync(join(tmpdir(), 'mqgw-acl-cli-'))
const rulesFile = join(dir, 'rules.yaml')
writeFileSync(rulesFile, `
rules:
  - { permission: allow, action: subscribe, topics: ["user/\${username}/inbox"] }
  - { permission: allow, action: publish,   topics: ["device/\${clientid}/telemetry"] }
  - { permission: allow, action: all,       topics: ["live/+/chat"], callback: live }
  - { permission: allow, action: subscribe, topics: ["uid/\${claims.uid}/#"] }
  - { permission: deny,  action: all,       topics: ["#"] }
`)
const configFile = join(dir, 'gateway.yaml')
// A relative rules path: resolved against the config's directory, as the gateway does.
writeFileSync(configFile, `
acl:
  file: rules.yaml
  noMatch: allow
  callbacks: { live: { url: "http://127.0.0.1:9/acl" } }
`)
const acl = (...args: string[]): ReturnType<typeof run> => run('node', [CLI, 'acl', ...args], 15000, tmpdir())

describe('mqtt-gateway acl check', () => {
  it('prints the decision and the deciding rule (file and index)', async () => {
    const allow = await acl('check', '--config', configFile, '--username', 'alice', '--clientid', 'c1', '--action', 'subscribe', '--topic', 'user/alice/inbox')
    assert.equal(allow.code, 0, allow.stderr)
    assert.equal(allow.stdout, `allow by rule 0 of ${rulesFile} (allow subscribe user/\${username}/inbox)\n`)
    const deny = await acl('check', '--config', configFile, '--username', 'alice', '--clientid', 'c1', '--action', 'publish', '--topic', 'device/c2/telemetry')
    assert.equal(deny.stdout, `deny by rule 4 of ${rulesFile} (deny all #)\n`)
    const claim = await acl('check', '--config', configFile, '--username', 'bob', '--clientid', 'c9', '--claim', 'uid=42', '--action', 'subscribe', '--topic', 'uid/42/x', '--json')
    assert.deepEqual(JSON.parse(claim.stdout), { decision: 'allow', by: 'rule', rule: { file: rulesFile, index: 3, permission: 'allow', action: 'subscribe', topics: ['uid/${claims.uid}/#'] } })
    const callback = await acl('check', '--config', configFile, '--username', 'bob', '--clientid', 'c9', '--action', 'publish', '--topic', 'live/7/chat')
    assert.equal(callback.stdout, `allow if callback "live" confirms by rule 2 of ${rulesFile} (allow all live/+/chat)\n`)
    const sys = await acl('check', '--config', configFile, '--clientid', 'c9', '--action', 'subscribe', '--topic', '$SYS/#')
    assert.equal(sys.stdout, 'deny: $SYS topics are for superusers only (acl.sysTopics)\n')
    const superuser = await acl('check', '--config', configFile, '--clientid', 'c9', '--superuser', '--action', 'subscribe', '--topic', '$SYS/#')
    assert.equal(superuser.stdout, 'allow: superuser\n')
  })

  it('a bare rules file works too (acl.noMatch deny)', async () => {
    const res = await acl('check', '--config', rulesFile, '--clientid', 'c1', '--username', 'alice', '--action', 'subscribe', '--topic', 'user/alice/inbox')
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^allow by rule 0 /)
  })

  it('bad arguments: exit 1 with the argument at fault and the usage', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['check', '--username', 'a', '--clientid', 'c', '--action', 'publish', '--topic', 't'], /--config FILE is required/],
      [['check', '--config', configFile, '--clientid', 'c', '--action', 'read', '--topic', 't'], /--action/],
      [['check', '--config', configFile, '--clientid', 'c', '--action', 'publish', '--topic', 'a/+'], /--topic: a PUBLISH topic has no wildcards/],
      [['check', '--config', configFile, '--action', 'publish', '--topic', 't'], /--clientid/],
      [['check', '--config', configFile, '--clientid', 'c', '--claim', 'novalue', '--action', 'publish', '--topic', 't'], /--claim novalue: expected NAME=VALUE/],
      [['check', '--config', join(dir, 'missing.yaml'), '--clientid', 'c', '--action', 'publish', '--topic', 't'], /missing\.yaml/],
      [['check', '--bogus'], /bogus/],
      [['frobnicate'], /unknown acl subcommand "frobnicate"/]
    ]
    for (const [args, message] of cases) {
      const res = await acl(...args)
      assert.equal(res.code, 1, `${args.join(' ')}: ${res.stdout}`)
      assert.match(res.stderr, message, args.join(' '))
      assert.equal(res.stdout, '')
    }
  })
})

describe('mqtt-gateway acl test', () => {
  const casesFile = (name: string, text: string): string => {
    const file = join(dir, name)
    writeFileSync(file, text)
    return file
  }

  it('all cases as expected: one ok line each, exit 0', async () => {
    const file = casesFile('ok.yaml', `
cases:
  - { username: alice, clientid: c1, action: subscribe, topic: user/alice/inbox, expect: allow, rule: 0 }
  - { username: alice, clientid: c1, action: subscribe, topic: user/bob/inbox, expect: deny }
  - { clientid: dev-1, action: publish, topic: device/dev-1/telemetry, expect: allow }
  - { name: "claims", username: bob, clientid: c2, claims: { uid: "7" }, action: subscribe, topic: "uid/7/#", expect: allow, rule: 3 }
  - { username: bob, clientid: c2, action: publish, topic: live/1/chat, expect: callback }
`)
    const res = await acl('test', configFile, file)
    assert.equal(res.code, 0, res.stdout + res.stderr)
    const lines = res.stdout.trim().split('\n')
    assert.equal(lines.length, 6)
    assert.ok(lines.slice(0, 5).every((l) => l.startsWith('ok   cases[')), res.stdout)
    assert.match(lines[3]!, /^ok {3}cases\[3\] claims: allow by rule 3 /)
    assert.equal(lines[5], '5 cases, 0 failed')
  })

  it('a mismatch (decision or deciding rule) fails the run with exit 1 and says what was expected', async () => {
    const file = casesFile('bad.yaml', `
cases:
  - { username: alice, clientid: c1, action: subscribe, topic: user/alice/inbox, expect: allow }
  - { username: alice, clientid: c1, action: subscribe, topic: user/bob/inbox, expect: allow }
  - { username: alice, clientid: c1, action: subscribe, topic: user/alice/inbox, expect: allow, rule: 1 }
`)
    const res = await acl('test', configFile, file)
    assert.equal(res.code, 1)
    const lines = res.stdout.trim().split('\n')
    assert.match(lines[0]!, /^ok {3}cases\[0\]/)
    assert.match(lines[1]!, /^FAIL cases\[1\] alice c1 subscribe user\/bob\/inbox: deny by rule 4 .* \(expected allow\)$/)
    assert.match(lines[2]!, /^FAIL cases\[2\] .*\(expected allow by rule 1\)$/)
    assert.equal(lines[3], '3 cases, 2 failed')
  })

  it('an invalid cases file or rules file: exit 1 with the key at fault', async () => {
    const badCase = casesFile('invalid.yaml', 'cases:\n  - { clientid: c1, action: publish, topic: t, expect: maybe }\n')
    let res = await acl('test', configFile, badCase)
    assert.equal(res.code, 1)
    assert.match(res.stderr, /cases\.0\.expect|cases\[0\]\.expect/)
    const badRules = join(dir, 'bad-rules.yaml')
    writeFileSync(badRules, 'rules:\n  - { permission: allow, action: everything, topics: ["#"] }\n')
    res = await acl('test', badRules, casesFile('one.yaml', 'cases:\n  - { clientid: c1, action: publish, topic: t, expect: deny }\n'))
    assert.equal(res.code, 1)
    assert.match(res.stderr, /rules\[0\]\.action/)
    res = await acl('test', configFile)
    assert.equal(res.code, 1)
    assert.match(res.stderr, /acl test takes FILE and CASES\.yaml/)
  })
})
