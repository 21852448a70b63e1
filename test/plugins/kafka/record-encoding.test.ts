import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { crc32c, createRecord, createRecordsBatch, Reader, readRecordsBatch, type MessageRecord } from '@platformatic/kafka'
import { seededInt } from '../../helpers/seeded-random.js'

/**
 * patches/@platformatic+kafka+1.35.0.patch protocol/records.js: a produce batch's records are
 * written into one Buffer sized up front instead of a Writer with a Buffer per field of each
 * record. The bytes must be the library's own (createRecord, unpatched, still exported): the
 * records section is compared with createRecord's on seeded batches (null and empty keys,
 * values and header values; varint widths; earlier and later timestamps), the batch's CRC is
 * checked and the batch is read back. The real broker checks the CRC too (the kafka tests).
 */
const BATCH_HEADER = 61 // firstOffset .. records count, before the first record

function seededBytes (int: (n: number) => number, size: number): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i < Math.min(size, 64); i++) b[i] = int(256)
  return b
}

describe('Kafka record batch encoding (patch protocol/records.js)', () => {
  it('records are createRecord\'s bytes, the CRC holds and the batch reads back (seeded)', () => {
    const int = seededInt(0x4afca)
    const sizes = [0, 1, 63, 64, 65, 127, 128, 8191, 8192, 8193, 70000]
    const base = 1_765_000_000_000n
    for (let b = 0; b < 300; b++) {
      const count = 1 + int(b % 10 === 0 ? 300 : 40)
      const messages: MessageRecord[] = []
      for (let i = 0; i < count; i++) {
        const headers = new Map<Buffer, Buffer>()
        const n = int(9)
        for (let h = 0; h < n; h++) headers.set(seededBytes(int, 1 + int(20)), int(8) === 0 ? null as unknown as Buffer : seededBytes(int, int(8) === 0 ? sizes[int(sizes.length)]! : int(40)))
        const size = (b * 40 + i) < sizes.length ? sizes[b * 40 + i]! : int(300)
        messages.push({
          topic: 't',
          partition: 0,
          key: int(4) === 0 ? undefined : seededBytes(int, int(4) === 0 ? sizes[int(sizes.length)]! : int(30)),
          value: int(10) === 0 ? undefined as unknown as Buffer : seededBytes(int, size),
          headers,
          // Mostly one timestamp; some records earlier or later than the first, a few beyond 32 bits of
          // ms (the patch then falls back to the original encoder).
          timestamp: int(3) === 0 ? base + BigInt(int(2) === 0 ? -int(100000) : int(b % 25 === 0 ? 2 ** 40 : 2 ** 31)) : base
        })
      }
      const firstTimestamp = messages[0]!.timestamp!
      const expected = Buffer.concat(messages.map((m, i) => createRecord(m, i, firstTimestamp).buffer))
      const batch = createRecordsBatch(messages).buffer
      assert.deepEqual(batch.subarray(BATCH_HEADER), expected, `batch ${b}: ${count} records`)
      // CRC-32C over attributes .. end, stored after magic (offset 17).
      assert.equal(batch.readUInt32BE(17), crc32c(batch.subarray(21)), `batch ${b}: CRC`)
      const read = readRecordsBatch(Reader.from(batch))
      assert.equal(read.records.length, count)
      read.records.forEach((r, i) => {
        const m = messages[i]!
        assert.deepEqual(r.value ?? undefined, m.value ?? undefined, `batch ${b} record ${i}: value`)
        assert.deepEqual(r.key ?? undefined, m.key ?? undefined, `batch ${b} record ${i}: key`)
        // The library's own 64-bit zigzag is not Kafka's beyond 32 bits: read back only within them.
        const delta = m.timestamp! - firstTimestamp
        if (delta >= -(2n ** 31n) && delta < 2n ** 31n) assert.equal(read.firstTimestamp + r.timestampDelta, m.timestamp, `batch ${b} record ${i}: timestamp`)
        assert.deepEqual(r.headers.map(([k, v]) => [k, v ?? null]), [...m.headers!].map(([k, v]) => [k, v ?? null]), `batch ${b} record ${i}: headers`)
      })
    }
  })

  it('a field that is not bytes gets the original encoder\'s answer (its error), not a silently wrong batch', () => {
    const base = { topic: 't', partition: 0, key: Buffer.from('k'), value: Buffer.from('v'), timestamp: 5n }
    for (const message of [
      { ...base, value: 'text' as unknown as Buffer },
      { ...base, key: 42 as unknown as Buffer },
      { ...base, headers: new Map([[Buffer.from('h'), 'text' as unknown as Buffer]]) }
    ]) {
      let expected: Error | undefined
      try { void createRecord(message, 1, 5n).buffer } catch (err) { expected = err as Error }
      assert.ok(expected, 'the original encoder refuses it')
      assert.throws(() => createRecordsBatch([{ ...base }, message]), { name: expected.name })
    }
  })
})
