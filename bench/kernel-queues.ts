/**
 * Bench-only sampler of the kernel's TCP queues (issue #14, fanin-90): every --every ms (default
 * 20) it reads /proc/net/tcp (one file read; `ss -tnmi` forks a process per sample) and appends
 * one JSON line with the listening ports and, for every established socket with a listening
 * port at either end, [local port, remote port, Send-Q, Recv-Q] (tx_queue: bytes written and
 * not yet acknowledged by the peer; rx_queue: bytes received and not yet read by the owner).
 * Run it beside a compare run, then summarise with bench/fanin-breakdown.ts:
 *
 *   node dist/bench/kernel-queues.js /tmp/kq.jsonl --seconds=300 &
 */
import { appendFileSync, readFileSync } from 'node:fs'

const file = process.argv[2]
const arg = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`))
  return a === undefined ? dflt : Number(a.slice(name.length + 3))
}
if (file === undefined) throw new Error('usage: kernel-queues.js OUT.jsonl [--every=20] [--seconds=300]')
const every = arg('every', 20)
const until = Date.now() + arg('seconds', 300) * 1000

const hexPort = (addr: string): number => parseInt(addr.slice(addr.indexOf(':') + 1), 16)

function sample (): void {
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n')
  const listen = new Set<number>()
  const est: Array<[number, number, number, number]> = []
  for (let i = 1; i < lines.length; i++) {
    const f = lines[i]!.trim().split(/\s+/)
    if (f.length < 5) continue
    const st = f[3]
    const lp = hexPort(f[1]!)
    if (st === '0A') { listen.add(lp); continue }
    if (st !== '01') continue
    const [tx, rx] = f[4]!.split(':').map((h) => parseInt(h, 16)) as [number, number]
    est.push([lp, hexPort(f[2]!), tx, rx])
  }
  const socks = est.filter(([lp, rp]) => listen.has(lp) || listen.has(rp))
  appendFileSync(file!, JSON.stringify({ t: Date.now(), listen: [...listen], socks }) + '\n')
}

const timer = setInterval(() => {
  if (Date.now() > until) { clearInterval(timer); return }
  sample()
}, every)
