/**
 * Sums a V8 heap snapshot (.heapsnapshot, as written by --heapsnapshot-signal or
 * v8.writeHeapSnapshot) by constructor: bytes (self size) and object count per key, for
 * bench/memory.bench.ts to subtract a snapshot of the idle gateway from one holding N
 * connections. Chrome DevTools' "Summary" view does the same grouping; this is its
 * command-line form (no package on npm reads the format for Node 20 without a browser).
 *
 * Keys: objects by constructor name ("Socket", "Client", "Object"), closures as
 * "closure <name>", V8 internals by type and name ("hidden system / Map", "array
 * (object properties)", "code ..."), every string kind as "(string)".
 */
import { readFileSync } from 'node:fs'

export interface HeapGroup { bytes: number, count: number }

interface SnapshotFile {
  snapshot: { meta: { node_fields: string[], node_types: [string[], ...unknown[]] } }
  nodes: number[]
  strings: string[]
}

const STRING_TYPES = new Set(['string', 'concatenated string', 'sliced string'])

export function summarizeHeapSnapshot (file: string): Map<string, HeapGroup> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as SnapshotFile
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const stride = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const groups = new Map<string, HeapGroup>()
  const nodes = snap.nodes
  for (let i = 0; i < nodes.length; i += stride) {
    const type = types[nodes[i + typeAt]!] ?? '?'
    const name = snap.strings[nodes[i + nameAt]!] ?? '?'
    let key: string
    if (STRING_TYPES.has(type)) key = '(string)'
    else if (type === 'object') key = name
    else if (type === 'closure') key = `closure ${name || '(anonymous)'}`
    else key = `${type} ${name.length > 60 ? name.slice(0, 60) + '...' : name}`
    const g = groups.get(key)
    const size = nodes[i + sizeAt]!
    if (g) { g.bytes += size; g.count++ } else groups.set(key, { bytes: size, count: 1 })
  }
  return groups
}

/** Per-connection growth by key between two summaries, largest first. */
export function perConnection (before: Map<string, HeapGroup>, after: Map<string, HeapGroup>, connections: number): Array<{ key: string, bytesPerConn: number, countPerConn: number }> {
  const keys = new Set([...before.keys(), ...after.keys()])
  const rows: Array<{ key: string, bytesPerConn: number, countPerConn: number }> = []
  for (const key of keys) {
    const a = before.get(key) ?? { bytes: 0, count: 0 }
    const b = after.get(key) ?? { bytes: 0, count: 0 }
    rows.push({ key, bytesPerConn: (b.bytes - a.bytes) / connections, countPerConn: (b.count - a.count) / connections })
  }
  return rows.sort((x, y) => y.bytesPerConn - x.bytesPerConn)
}

export function totalBytes (groups: Map<string, HeapGroup>): number {
  let n = 0
  for (const g of groups.values()) n += g.bytes
  return n
}
