/**
 * Allocation profile of a broker process: what allocates, including objects that die young
 * (--heap-prof keeps only what is still alive, which misses exactly the per-message garbage that
 * drives scavenges). Loaded with --import; ALLOC_PROF=FILE, ALLOC_PROF_FROM_MS / ALLOC_PROF_MS:
 * sampling starts that long after start-up and runs that long, then the profile
 * (.heapprofile, Chrome DevTools' format) is written and a summary by function goes to FILE.txt.
 *
 *   ALLOC_PROF=/tmp/alloc BENCH_GATEWAY_NODE_ARGS="--import ./dist/bench/alloc-prof.js" node dist/bench/compare.bench.js fanin ...
 */
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'

interface Node { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: Node[] }

const file = process.env.ALLOC_PROF
if (file !== undefined && file !== '') {
  const session = new Session()
  session.connect()
  const from = Number(process.env.ALLOC_PROF_FROM_MS ?? 4000)
  const span = Number(process.env.ALLOC_PROF_MS ?? 4000)
  setTimeout(() => {
    session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as object, () => {
      setTimeout(() => {
        session.post('HeapProfiler.stopSampling', (err, res) => {
          if (err !== null || res === undefined) return
          const profile = (res as { profile: { head: Node } }).profile
          writeFileSync(`${file}.heapprofile`, JSON.stringify(profile))
          const by = new Map<string, number>()
          const walk = (n: Node): void => {
            const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${n.callFrame.lineNumber + 1}`
            by.set(key, (by.get(key) ?? 0) + n.selfSize)
            for (const c of n.children) walk(c)
          }
          walk(profile.head)
          const total = [...by.values()].reduce((a, b) => a + b, 0)
          const rows = [...by].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, v]) => `${(v / 2 ** 20).toFixed(1).padStart(8)} MiB ${(v / total * 100).toFixed(1).padStart(5)} %  ${k}`)
          writeFileSync(`${file}.txt`, `allocated over ${span} ms (sampled): ${(total / 2 ** 20).toFixed(1)} MiB\n${rows.join('\n')}\n`)
        })
      }, span).unref()
    })
  }, from).unref()
}
