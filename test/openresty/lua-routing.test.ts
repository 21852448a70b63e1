/**
 * The access layer's routing pieces under a plain `luajit` (no nginx): the hash ring
 * (openresty/lua/mqtt_ring.lua: murmur3, one ring keyed by node name) and the WebSocket
 * preread handler (openresty/lua/mqtt_ws_preread.lua) against a mock ngx. The same files run
 * under nginx in access-layer*.test.ts, where the spread and the moves are measured on real
 * connections.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { nodeLines } from './access-layer.js'
import { prng, runLua, runPreread } from './connect-parsers.js'

/** Each key's node order (home first) on a ring of `names`. */
async function orders (names: string[], keys: string[], vnodes = 1000): Promise<string[][]> {
  const { code, out } = await runLua(['test_ring.lua', names.join(','), String(vnodes)], keys.join('\n') + '\n')
  assert.equal(code, 0, out)
  const lines = out.trim().split('\n')
  assert.equal(lines.length, keys.length, out.slice(0, 500))
  return lines.map((l) => l.split(','))
}

function randomIds (seed: number, n: number): string[] {
  const rand = prng(seed)
  return Array.from({ length: n }, () => `dev-${Math.floor(rand() * 2 ** 48).toString(36)}`)
}

describe('hash ring (mqtt_ring.lua under luajit)', () => {
  it('murmur3 x86_32 gives the reference values', async () => {
    const vectors: Array<[string, number, string]> = [['', 0, '00000000'], ['', 1, '514e28b7'], ['hello', 0, '248bfa47'],
      ['Hello, world!', 1234, 'faf6cdb3'], ['The quick brown fox jumps over the lazy dog', 0, '2e4ff723'], ['aaaa', 0x9747b28c, '5a97808a'], ['abc', 0, 'b3dd93fa']]
    const input = vectors.map(([s, seed]) => `#murmur3 ${seed} ${Buffer.from(s).toString('hex')}`).join('\n') + '\n'
    const { code, out } = await runLua(['test_ring.lua', 'n', '1'], input)
    assert.equal(code, 0, out)
    assert.deepEqual(out.trim().split('\n'), vectors.map((v) => v[2]))
  })

  it('every key gets every node once, home first; the ring depends on names, not on their order', async () => {
    const keys = randomIds(7, 500)
    const a = await orders(['gw-a', 'gw-b', 'gw-c'], keys)
    const b = await orders(['gw-c', 'gw-a', 'gw-b'], keys)
    assert.deepEqual(b, a)
    for (const o of a) assert.deepEqual([...o].sort(), ['gw-a', 'gw-b', 'gw-c'])
  })

  it('10,000 random ids over 3 nodes: each within 33% +- 3%; a 4th node takes about 1/4, only from the others; removing one moves only its ids, each to its next node', async () => {
    const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000)
    const keys = randomIds(seed, 10000)
    const three = await orders(['gw-a', 'gw-b', 'gw-c'], keys)
    const share = new Map<string, number>()
    for (const o of three) share.set(o[0]!, (share.get(o[0]!) ?? 0) + 1)
    for (const [node, n] of share) assert.ok(n >= 3000 && n <= 3600, `seed ${seed}: ${node} has ${n} of 10000`)
    const four = await orders(['gw-a', 'gw-b', 'gw-c', 'gw-d'], keys)
    let moved = 0
    keys.forEach((_k, i) => {
      if (four[i]![0] === three[i]![0]) return
      moved++
      assert.equal(four[i]![0], 'gw-d', `seed ${seed}: ${keys[i]} moved between old nodes`)
    })
    assert.ok(moved >= 2000 && moved <= 3000, `seed ${seed}: ${moved} of 10000 moved to the 4th node`)
    const two = await orders(['gw-a', 'gw-c'], keys)
    keys.forEach((_k, i) => {
      const before = three[i]!
      // gw-b's ids go to the next node of their own order; the others stay.
      const want = before[0] === 'gw-b' ? before[1] : before[0]
      assert.equal(two[i]![0], want, `seed ${seed}: ${keys[i]}`)
    })
    process.stdout.write(`# ring seed ${seed}: ${JSON.stringify(Object.fromEntries(share))}, ${moved} of 10000 moved to a 4th node\n`)
  })

  it('the shipped upstreams.conf (gw-1, gw-2): 10,000 random ids split within 50% +- 3%', async () => {
    const names = nodeLines(readFileSync(join(process.cwd(), 'openresty/upstreams.conf'), 'utf8')).map((n) => n.name)
    assert.deepEqual(names, ['gw-1', 'gw-2'])
    const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000)
    const homes = (await orders(names, randomIds(seed + 1, 10000))).map((o) => o[0])
    for (const name of names) {
      const n = homes.filter((h) => h === name).length
      assert.ok(n >= 4700 && n <= 5300, `seed ${seed}: ${name} has ${n} of 10000`)
    }
  })
})

describe('WebSocket preread (mqtt_ws_preread.lua, mock ngx)', () => {
  const upgrade = (target: string, headers: string[] = []): string =>
    [`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1:8083', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Protocol: mqtt', ...headers, '', ''].join('\r\n')

  it('the id from ?clientid= (percent-decoded), else X-MQTT-Client-Id, else the address; never peeks past the limit or the head', async () => {
    const cases: Array<{ name: string, data: string | Buffer, max?: number, want: string }> = [
      { name: 'query', data: upgrade('/mqtt?clientid=dev-1'), want: 'var=dev-1' },
      { name: 'query among others', data: upgrade('/mqtt?a=1&clientid=dev-2&b=2'), want: 'var=dev-2' },
      { name: 'percent-encoded UTF-8', data: upgrade(`/mqtt?clientid=${encodeURIComponent('设备-7')}`), want: 'var=设备-7' },
      { name: 'header', data: upgrade('/mqtt', ['X-MQTT-Client-Id: dev-3']), want: 'var=dev-3' },
      { name: 'header, any case, spaces trimmed', data: upgrade('/mqtt', ['x-mqtt-client-id:   dev-4  ']), want: 'var=dev-4' },
      { name: 'query before header', data: upgrade('/mqtt?clientid=q', ['X-MQTT-Client-Id: h']), want: 'var=q' },
      { name: 'bad percent-encoding: the header', data: upgrade('/mqtt?clientid=%zz', ['X-MQTT-Client-Id: h']), want: 'var=h' },
      { name: 'not UTF-8', data: upgrade('/mqtt?clientid=%C3%28'), want: 'var=10.1.2.3' },
      { name: 'U+0000', data: upgrade('/mqtt?clientid=a%00b'), want: 'var=10.1.2.3' },
      { name: 'empty', data: upgrade('/mqtt?clientid='), want: 'var=10.1.2.3' },
      { name: 'no id', data: upgrade('/mqtt'), want: 'var=10.1.2.3' },
      { name: 'an MQTT CONNECT (not HTTP)', data: Buffer.from('101000044d5154540402003c00046162', 'hex'), want: 'var=10.1.2.3' },
      { name: 'POST', data: 'POST /mqtt HTTP/1.1\r\n\r\n', want: 'var=10.1.2.3' },
      { name: 'head over the limit', data: upgrade('/mqtt?clientid=big', [`X-Pad: ${'p'.repeat(400)}`]), max: 256, want: 'var=10.1.2.3' },
      { name: 'incomplete head (client waits)', data: 'GET /mqtt?clientid=slow HTTP/1.1\r\nHost: x\r\n', want: 'stalled' }
    ]
    const answers = await runPreread(cases.map((c) => ({ data: c.data, max: c.max ?? 8192 })), 'mqtt_ws_preread')
    cases.forEach((c, i) => {
      const { result, maxPeek } = answers[i]!
      assert.equal(result, c.want, c.name)
      assert.ok(Number(maxPeek) <= (c.max ?? 8192), `${c.name}: peeked ${maxPeek}`)
      if (c.want !== 'stalled') assert.ok(Number(maxPeek) <= Buffer.from(c.data).length, `${c.name}: peeked ${maxPeek} of ${Buffer.from(c.data).length} bytes`)
    })
  })
})
