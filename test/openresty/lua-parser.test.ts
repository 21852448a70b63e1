/**
 * The access layer's CONNECT parser (openresty/lua/mqtt_connect.lua) under a plain `luajit`:
 * CONNECTs made by mqtt-packet for MQTT 3.1, 3.1.1 and 5.0 with and without will,
 * user name, password and properties; truncated, oversized, garbage and non-CONNECT
 * first packets ("unknown", never an error); randomized inputs (seeded, bounded), checked
 * against mqtt-packet's own parser. Also the preread handlers (openresty/lua/mqtt_preread.lua,
 * mqtt_ws_preread.lua) against a mock ngx, and the hash ring (mqtt_ring.lua). The same files
 * run under nginx in access-layer*.test.ts.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { luaParse, prng, runLua, runPreread, type Input } from './connect-parsers.js'

type ConnectOpts = Record<string, unknown>

function connect (opts: ConnectOpts): Buffer {
  return mqttPacket.generate({ cmd: 'connect', keepalive: 60, clean: true, ...opts } as unknown as mqttPacket.Packet)
}

const v3 = { protocolId: 'MQIsdp', protocolVersion: 3 }
const v4 = { protocolId: 'MQTT', protocolVersion: 4 }
const v5 = { protocolId: 'MQTT', protocolVersion: 5 }

const will = { topic: 'devices/d1/status', payload: Buffer.from('offline'), qos: 1, retain: true }
const will5 = {
  ...will,
  properties: {
    willDelayInterval: 30,
    payloadFormatIndicator: true,
    messageExpiryInterval: 3600,
    contentType: 'text/plain',
    responseTopic: 'devices/d1/reply',
    correlationData: Buffer.from([1, 2, 3]),
    userProperties: { a: 'b', tags: ['x', 'y'] }
  }
}
const connectProps = {
  sessionExpiryInterval: 7200,
  receiveMaximum: 100,
  maximumPacketSize: 65536,
  topicAliasMaximum: 10,
  requestResponseInformation: true,
  requestProblemInformation: false,
  userProperties: { region: 'eu', app: ['a', 'b'] },
  authenticationMethod: 'SCRAM-SHA-1',
  authenticationData: Buffer.from('client-first')
}

/** Valid CONNECTs and the client id each carries. */
function validCases (): Array<{ name: string, data: Buffer, id: string, maxLen?: number }> {
  const cases: Array<{ name: string, data: Buffer, id: string, maxLen?: number }> = []
  const ids = ['abc', 'device-0001', 'a', '设备-42', 'user/with spaces+#', 'é'.repeat(100), 'x'.repeat(256)]
  for (const [vName, v] of [['3.1', v3], ['3.1.1', v4], ['5.0', v5]] as const) {
    for (const id of ids) {
      cases.push({ name: `${vName} id=${id.slice(0, 12)}`, data: connect({ ...v, clientId: id }), id })
    }
    const extras: Array<[string, ConnectOpts]> = [
      ['will', { will: v === v5 ? will5 : will }],
      ['will qos 0 no retain', { will: { topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false } }],
      ['will qos 2', { will: { ...will, qos: 2 } }],
      ['username', { username: 'alice' }],
      ['username + password', { username: 'alice', password: Buffer.from('s3cret') }],
      ['will + username + password', { will: v === v5 ? will5 : will, username: 'alice', password: Buffer.from('s3cret') }],
      ['clean false', { clean: false }],
      ['keepalive 0', { keepalive: 0 }],
      ['bridge bit', { bridgeMode: true }],
      ['empty password', { username: 'u', password: Buffer.alloc(0) }],
      ['binary password', { username: 'u', password: Buffer.from([0, 0xff, 0xfe, 0x10]) }]
    ]
    for (const [name, extra] of extras) {
      if (name === 'bridge bit' && v === v5) continue // mqtt-packet: bridge mode is 3.1/3.1.1
      cases.push({ name: `${vName} ${name}`, data: connect({ ...v, clientId: 'client-' + name.replace(/\W/g, ''), ...extra }), id: 'client-' + name.replace(/\W/g, '') })
    }
  }
  cases.push({ name: '5.0 properties', data: connect({ ...v5, clientId: 'props', properties: connectProps }), id: 'props' })
  cases.push({ name: '5.0 properties + will + user + password', data: connect({ ...v5, clientId: 'all', properties: connectProps, will: will5, username: 'u', password: Buffer.from('p') }), id: 'all' })
  // Property length and remaining length over 127 and 16383: multi-byte variable integers.
  const bigProps = { userProperties: { k: 'v'.repeat(300) } }
  const p2 = connect({ ...v5, clientId: 'varint-2', properties: bigProps })
  assert.ok(p2[1]! & 0x80, 'remaining length takes 2 bytes')
  cases.push({ name: '5.0 2-byte property length', data: p2, id: 'varint-2' })
  const p3 = connect({ ...v5, clientId: 'varint-3', properties: { userProperties: { k: 'v'.repeat(20000) } }, will: { ...will5, payload: Buffer.alloc(5000, 1) } })
  assert.ok(p3[1]! & 0x80 && p3[2]! & 0x80, 'remaining length takes 3 bytes')
  cases.push({ name: '5.0 3-byte remaining and property lengths (max 1 MB)', data: p3, id: 'varint-3', maxLen: 1 << 20 })
  const big4 = connect({ ...v4, clientId: 'big-will', will: { ...will, payload: Buffer.alloc(20000, 7) } })
  cases.push({ name: '3.1.1 20 kB will (max 1 MB)', data: big4, id: 'big-will', maxLen: 1 << 20 })
  // v5 allows a password without a user name; mqtt-packet refuses to make one, so clear the
  // user name flag and drop the user name field of a generated packet.
  const withUser = connect({ ...v5, clientId: 'pw-only', username: 'u', password: Buffer.from('pw') })
  cases.push({ name: '5.0 password without user name', data: dropUsername(withUser), id: 'pw-only' })
  // A CONNECT followed by more packets in the same read (clients pipeline a SUBSCRIBE).
  const sub = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }] } as unknown as mqttPacket.Packet)
  cases.push({ name: 'CONNECT + pipelined SUBSCRIBE', data: Buffer.concat([connect({ ...v4, clientId: 'pipelined' }), sub]), id: 'pipelined' })
  return cases
}

/** 3.1.1 or 5.0 CONNECT with user name "u" and a password: same packet without the user name. */
function dropUsername (packet: Buffer): Buffer {
  const p = mqttPacket.parser({ protocolVersion: 5 })
  let parsed: mqttPacket.Packet | undefined
  p.on('packet', (pk) => { parsed = pk })
  p.parse(packet)
  assert.ok(parsed)
  // Layout: 0x10, remaining length (1 byte here), ..., client id, user name (00 01 'u'), password.
  const uIndex = packet.indexOf(Buffer.from([0x00, 0x01, 0x75]), 10)
  assert.ok(uIndex > 0)
  const body = Buffer.concat([packet.subarray(2, uIndex), packet.subarray(uIndex + 3)])
  body[7] = body[7]! & ~0x80 // connect flags: after the protocol name (2 + 4 bytes) and level

  assert.ok(body.length < 128)
  return Buffer.concat([Buffer.from([0x10, body.length]), body])
}

function hex (s: string): Buffer { return Buffer.from(s.replace(/\s+/g, ''), 'hex') }

/** First packets that are not a usable CONNECT, and why. */
function invalidCases (): Array<{ name: string, data: Buffer, maxLen?: number }> {
  const base = connect({ ...v4, clientId: 'abc' })
  const withByte = (i: number, b: number): Buffer => { const c = Buffer.from(base); c[i] = b; return c }
  const gen = (p: Record<string, unknown>): Buffer => mqttPacket.generate(p as unknown as mqttPacket.Packet)
  const cases: Array<{ name: string, data: Buffer, maxLen?: number }> = [
    { name: 'HTTP request', data: Buffer.from('GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n') },
    { name: 'TLS ClientHello start', data: hex('16 03 01 02 00 01 00 01 fc 03 03') },
    { name: 'PROXY protocol header', data: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n') },
    { name: 'PUBLISH first', data: gen({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0 }) },
    { name: 'SUBSCRIBE first', data: gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a', qos: 0 }] }) },
    { name: 'PINGREQ first', data: hex('c0 00') },
    { name: 'DISCONNECT first', data: hex('e0 00') },
    { name: 'CONNACK first', data: gen({ cmd: 'connack', returnCode: 0, sessionPresent: false }) },
    { name: 'CONNECT with fixed header flags 0x1', data: withByte(0, 0x11) },
    { name: 'CONNECT with fixed header flags 0xf', data: withByte(0, 0x1f) },
    { name: 'remaining length 0', data: hex('10 00') },
    { name: '5-byte remaining length', data: hex('10 ff ff ff ff 01') },
    { name: 'remaining length 268435455 (above max)', data: hex('10 ff ff ff 7f 00 04') },
    { name: 'remaining length larger than the fields', data: Buffer.concat([Buffer.from([0x10, base[1]! + 2]), base.subarray(2), hex('00 00')]) },
    { name: 'remaining length shorter than the fields', data: Buffer.concat([Buffer.from([0x10, base[1]! - 1]), base.subarray(2, base.length - 1)]) },
    { name: 'protocol name MQTX', data: withByte(7, 0x58) },
    { name: 'MQTT with level 3', data: withByte(8, 3) },
    { name: 'MQTT with level 6', data: withByte(8, 6) },
    { name: 'MQIsdp with level 4', data: (() => { const c = connect({ ...v3, clientId: 'abc' }); c[10] = 4; return c })() },
    { name: 'reserved connect flag', data: withByte(9, 0x03) },
    { name: 'will QoS 3', data: (() => { const c = connect({ ...v4, clientId: 'abc', will }); c[9] = c[9]! | 0x18; return c })() },
    { name: 'will retain without will', data: withByte(9, 0x22) },
    { name: 'will QoS without will', data: withByte(9, 0x0a) },
    { name: 'password without user name (3.1.1)', data: withByte(9, 0x42) },
    { name: 'user name flag without user name', data: withByte(9, 0x82) },
    { name: 'client id not UTF-8 (c3 28)', data: hex('10 0f 00 04 4d515454 04 02 003c 0003 61 c3 28') },
    { name: 'client id with U+0000', data: hex('10 0f 00 04 4d515454 04 02 003c 0003 61 00 62') },
    { name: 'client id with a UTF-16 surrogate', data: hex('10 0f 00 04 4d515454 04 02 003c 0003 ed a0 80') },
    { name: 'client id with an overlong form', data: hex('10 0e 00 04 4d515454 04 02 003c 0002 c0 af') },
    { name: 'client id above U+10FFFF', data: hex('10 10 00 04 4d515454 04 02 003c 0004 f4 90 80 80') },
    { name: 'client id length beyond packet', data: hex('10 0e 00 04 4d515454 04 02 003c 0009 61 62') },
    { name: 'v5 unknown CONNECT property (0x01 is a will property)', data: hex('10 10 00 04 4d515454 05 02 003c 02 01 01 0001 61') },
    { name: 'v5 duplicate property', data: hex('10 12 00 04 4d515454 05 02 003c 04 17 01 17 01 0001 61') },
    { name: 'v5 property truncated', data: hex('10 11 00 04 4d515454 05 02 003c 03 11 00 00 0001 61') },
    { name: 'v5 property length beyond packet', data: hex('10 0e 00 04 4d515454 05 02 003c 40 0001 61') },
    { name: 'v5 malformed property length', data: hex('10 0f 00 04 4d515454 05 02 003c ff ff ff ff 01') },
    { name: 'v5 will property in CONNECT properties', data: hex('10 13 00 04 4d515454 05 02 003c 05 18 00000001 0001 61') },
    { name: 'empty input' as string, data: Buffer.alloc(0) },
    { name: '20 kB will over the default 16 kB limit', data: connect({ ...v4, clientId: 'big', will: { ...will, payload: Buffer.alloc(20000, 7) } }) },
    { name: 'CONNECT of 200 bytes over a 100-byte limit', data: connect({ ...v4, clientId: 'x'.repeat(180) }), maxLen: 100 }
  ]
  return cases
}

describe('CONNECT parser (Lua under luajit)', () => {
  it('runs under LuaJIT 2.1 with the bit library', async () => {
    const { code, out } = await runLua(['-e', 'local bit = require "bit"; print(jit.version, bit.band(0xff, 0x0f))'])
    assert.equal(code, 0, out)
    assert.match(out, /^LuaJIT 2\.1\S*\s15/)
  })

  it('reads the client id of MQTT 3.1, 3.1.1 and 5.0 CONNECTs with and without will, user name, password, properties', async () => {
    const cases = validCases()
    const results = await luaParse(cases.map((c) => ({ data: c.data, maxLen: c.maxLen })))
    cases.forEach((c, i) => {
      assert.equal(results[i]!.status, 'ok', `${c.name}: ${results[i]!.value}`)
      assert.equal(results[i]!.value, c.id, c.name)
      assert.equal(results[i]!.clientId, c.id, c.name)
    })
    assert.ok(cases.length >= 40, `${cases.length} cases`)
  })

  it('an empty client id is a valid CONNECT but gives "unknown" (routed by address)', async () => {
    const data = connect({ ...v4, clientId: '' })
    const [r] = await luaParse([{ data }])
    assert.deepEqual(r, { status: 'ok', value: '', clientId: 'unknown' })
  })

  it('every truncation of valid CONNECTs: "more" with a byte count beyond what it has, client id "unknown"', async () => {
    const packets = [
      connect({ ...v3, clientId: 'abc', will, username: 'u', password: Buffer.from('p') }),
      connect({ ...v4, clientId: '设备-42', will, username: 'u', password: Buffer.from('p') }),
      connect({ ...v5, clientId: 'props', properties: connectProps, will: will5, username: 'u', password: Buffer.from('p') }),
      connect({ ...v5, clientId: 'varint-2', properties: { userProperties: { k: 'v'.repeat(300) } } })
    ]
    const inputs: Input[] = []
    for (const p of packets) for (let n = 0; n < p.length; n++) inputs.push({ data: p.subarray(0, n) })
    const results = await luaParse(inputs)
    results.forEach((r, i) => {
      const n = inputs[i]!.data.length
      assert.equal(r.status, 'more', `prefix of ${n} bytes: ${r.status} ${r.value}`)
      assert.ok(Number(r.value) > n, `prefix of ${n} bytes asks for ${r.value}`)
      assert.equal(r.clientId, 'unknown')
    })
  })

  it('truncated, oversized, garbage and non-CONNECT first packets: "unknown", never an error', async () => {
    const cases = invalidCases()
    const results = await luaParse(cases.map((c) => ({ data: c.data, maxLen: c.maxLen })))
    cases.forEach((c, i) => {
      const r = results[i]!
      assert.notEqual(r.status, 'error', `${c.name}: ${r.value}`)
      assert.notEqual(r.status, 'ok', `${c.name} parsed as ok`)
      assert.equal(r.clientId, 'unknown', c.name)
      if (c.name !== 'empty input') assert.equal(r.status, 'invalid', `${c.name}: ${r.status} ${r.value}`)
    })
    const byName = new Map(cases.map((c, i) => [c.name, results[i]!]))
    assert.match(byName.get('20 kB will over the default 16 kB limit')!.value, /longer than 16384/)
    assert.match(byName.get('remaining length 268435455 (above max)')!.value, /longer than/)
    assert.match(byName.get('5-byte remaining length')!.value, /malformed remaining length/)
    assert.match(byName.get('HTTP request')!.value, /not a CONNECT/)
  })

  it('randomized input (seeded, bounded): never an error, ok only for what mqtt-packet also parses, with its client id', async () => {
    const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000)
    const rand = prng(seed)
    const int = (n: number): number => Math.floor(rand() * n)
    const seeds = [...validCases().map((c) => c.data).filter((d) => d.length < 2000), ...invalidCases().map((c) => c.data).filter((d) => d.length < 2000)]
    const inputs: Input[] = []
    // Random bytes, half of them starting like a CONNECT.
    for (let i = 0; i < 1500; i++) {
      const b = Buffer.alloc(int(120))
      for (let j = 0; j < b.length; j++) b[j] = int(256)
      if (b.length > 0 && rand() < 0.5) b[0] = 0x10
      if (b.length > 1 && rand() < 0.5) b[1] = int(b.length)
      inputs.push({ data: b })
    }
    // Mutations of real packets: byte changes, bit flips, cuts, insertions, deletions.
    for (let i = 0; i < 3000; i++) {
      let b = Buffer.from(seeds[int(seeds.length)]!)
      const edits = 1 + int(3)
      for (let e = 0; e < edits && b.length > 0; e++) {
        const at = int(b.length)
        switch (int(5)) {
          case 0: b[at] = int(256); break
          case 1: b[at] = b[at]! ^ (1 << int(8)); break
          case 2: b = b.subarray(0, at); break
          case 3: b = Buffer.concat([b.subarray(0, at), Buffer.from([int(256)]), b.subarray(at)]); break
          default: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
        }
      }
      inputs.push({ data: b, maxLen: rand() < 0.2 ? 1 + int(200) : undefined })
    }
    const started = Date.now()
    const results = await luaParse(inputs)
    const counts: Record<string, number> = {}
    results.forEach((r, i) => {
      counts[r.status] = (counts[r.status] ?? 0) + 1
      assert.ok(['ok', 'more', 'invalid'].includes(r.status), `seed ${seed}: ${r.status} ${r.value} for ${inputs[i]!.data.toString('hex')}`)
      if (r.status === 'ok' && r.value !== '') {
        assert.equal(r.clientId, r.value)
        assert.equal(mqttPacketClientId(inputs[i]!.data), r.value, `seed ${seed}: mqtt-packet disagrees on ${inputs[i]!.data.toString('hex')}`)
      } else {
        assert.equal(r.clientId, 'unknown')
      }
    })
    assert.ok((counts.ok ?? 0) > 50 && (counts.invalid ?? 0) > 1000 && (counts.more ?? 0) > 50, `seed ${seed}: ${JSON.stringify(counts)}`)
    process.stdout.write(`# fuzz seed ${seed}: ${inputs.length} inputs ${JSON.stringify(counts)} in ${Date.now() - started} ms\n`)
  })

  it('the OpenResty preread glue (mqtt_preread.lua, mock ngx): id, address fallback, never peeks past $mqtt_connect_max', async () => {
    const cases: Array<{ name: string, data: Buffer, max: number, want: string }> = [
      { name: 'CONNECT', data: connect({ ...v4, clientId: 'dev-1' }), max: 16384, want: 'var=dev-1' },
      { name: 'CONNECT + SUBSCRIBE', data: Buffer.concat([connect({ ...v5, clientId: 'dev-5', properties: connectProps }), hex('82 06 0001 0001 61 00')]), max: 16384, want: 'var=dev-5' },
      { name: 'empty id', data: connect({ ...v4, clientId: '' }), max: 16384, want: 'var=10.1.2.3' },
      { name: 'garbage', data: Buffer.from('GET / HTTP/1.1\r\n\r\n'), max: 16384, want: 'var=10.1.2.3' },
      { name: 'oversized', data: connect({ ...v4, clientId: 'big', will: { ...will, payload: Buffer.alloc(20000) } }), max: 16384, want: 'var=10.1.2.3' },
      { name: 'over a small limit', data: connect({ ...v4, clientId: 'x'.repeat(180) }), max: 100, want: 'var=10.1.2.3' },
      { name: 'truncated (client waits)', data: connect({ ...v4, clientId: 'dev-1' }).subarray(0, 10), max: 16384, want: 'stalled' }
    ]
    const answers = await runPreread(cases)
    cases.forEach((c, i) => {
      const { result, maxPeek } = answers[i]!
      assert.equal(result, c.want, c.name)
      assert.ok(Number(maxPeek) <= c.max, `${c.name}: peeked ${maxPeek} > ${c.max}`)
    })
  })

  it('every *_by_lua_block of openresty/nginx.conf and upstreams.conf compiles under LuaJIT', async () => {
    const blocks: Array<{ file: string, directive: string, body: string }> = []
    for (const file of ['nginx.conf', 'upstreams.conf']) {
      const conf = readFileSync(join(process.cwd(), 'openresty', file), 'utf8')
      for (const m of conf.matchAll(/^(\s*)(\w+_by_lua_block) \{\n([\s\S]*?)\n\1\}$/gm)) blocks.push({ file, directive: m[2]!, body: m[3]! })
    }
    assert.deepEqual(blocks.map((b) => b.directive).sort(), ['balancer_by_lua_block', 'balancer_by_lua_block', 'init_by_lua_block', 'init_worker_by_lua_block', 'preread_by_lua_block', 'preread_by_lua_block'])
    for (const b of blocks) {
      const { code, out } = await runLua(['-e', 'local f, err = loadstring(io.read("*a")); if not f then error(err) end; print("compiled")'], b.body)
      assert.equal(code, 0, `${b.file} ${b.directive}: ${out}`)
      assert.match(out, /compiled/)
    }
    assert.ok(blocks.some((b) => /require\("mqtt_preread"\)\.run\(\)/.test(b.body)))
    assert.ok(blocks.some((b) => /require\("mqtt_ws_preread"\)\.run\(\)/.test(b.body)))
  })
})

/** mqtt-packet's own parser on the first packet: its client id, or undefined if it refuses. */
function mqttPacketClientId (data: Buffer): string | undefined {
  const p = mqttPacket.parser()
  let id: string | undefined
  let failed = false
  p.on('packet', (pk) => { if (id === undefined && !failed && pk.cmd === 'connect') id = pk.clientId })
  p.on('error', () => { failed = true })
  try { p.parse(data) } catch { failed = true }
  return failed && id === undefined ? undefined : id
}
