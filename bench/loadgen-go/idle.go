package main

// Mode idle: opens N MQTT 3.1.1 connections (clean session, keepalive K) and holds them,
// sending one PINGREQ per connection every K seconds, spread uniformly over the period, and
// answering nothing else. Used by bench/connections.bench.ts (several processes, one per
// ~19,000 connections: one process may hold at most 20,000 descriptors here) and by
// test/bench/loadgen-idle.test.ts.
//
// One goroutine per connection costs a stack (2-8 KiB) plus Go's netFD and poller state per
// socket; at a million connections on one machine that is gigabytes the broker under test
// needs. So the whole process is one epoll loop over non-blocking sockets made with package
// syscall, and a connection is a 40-byte struct in a slice. Packets are encoded and decoded
// with paho's packets package (the only MQTT code here is locating a frame's end before
// handing it to packets.ReadPacket).
//
// stdout (one JSON object per line, see emit()):
//   {"event":"up",...}     once all N are up, failed, or the -up-timeout passed
//   {"event":"stats",...}  after each "stats" line on stdin (counters for the harness's windows)
//   {"event":"final",...}  on SIGTERM/SIGINT, stdin EOF or -hold-max; then DISCONNECT and close
//
// Usage: mqgw-loadgen idle -n 19000 -targets 127.0.0.1:1883[,host:port...]
//        -sources 127.0.0.2,127.0.0.3 -prefix idle-0 -keepalive 60 -inflight 200
//        [-ping-period S]   (bench/keepalive: PINGREQ every S s instead of K; 0 = never)

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

func init() {
	register("idle", mode{
		summary: "open N idle MQTT 3.1.1 connections, report connect rate/latency, hold them with PINGREQ every K s",
		run:     runIdle,
	})
}

// Connection states.
const (
	stFree       uint8 = iota // not opened yet
	stConnecting              // TCP connect in progress
	stAwaitAck                // CONNECT written, waiting for CONNACK
	stHeld                    // CONNACK 0 received: held, pinged every K s
	stClosed                  // failed or lost
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (not exported by package syscall):
// bind() to a source address without reserving a port there; connect() then chooses one
// unique per 4-tuple, so one source address serves ~28k connections per target.
const ipBindAddressNoPort = 24

type idleConn struct {
	fd      int32
	state   uint8
	pingOut bool  // a PINGREQ was sent and its PINGRESP has not come
	start   int64 // monotonic ns: TCP connect started (then: last PINGREQ sent)
	partial []byte
}

type idleGen struct {
	n, inflight     int
	keepalive       time.Duration
	connectTimeout  time.Duration
	targets         []syscall.SockaddrInet4
	sources         []syscall.SockaddrInet4
	prefix          string
	idOffset        int
	epfd            int
	conns           []idleConn
	inFlight        map[int32]struct{} // connection indexes between socket() and CONNACK
	next            int                // next connection index to open
	latencies       []float32          // ms, TCP connect start -> CONNACK
	failed          map[string]int
	firstStart      int64
	lastAck         int64
	held            int
	lost            int
	pingsSent       int64
	pingresps       int64
	pingMissing     int64
	unexpected      int64
	wheel           [][]int32 // ping slots: connection indexes, one slot per tick
	wheelPos        int
	tick            time.Duration
	pingreq, discon []byte
	epoch           time.Time
}

func (g *idleGen) now() int64 { return int64(time.Since(g.epoch)) }

func parseAddrs(list string, defPort int) ([]syscall.SockaddrInet4, error) {
	var out []syscall.SockaddrInet4
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host, port := item, defPort
		if h, p, err := net.SplitHostPort(item); err == nil {
			host = h
			if _, err := fmt.Sscanf(p, "%d", &port); err != nil {
				return nil, fmt.Errorf("bad port in %q", item)
			}
		}
		ip := net.ParseIP(host).To4()
		if ip == nil {
			return nil, fmt.Errorf("not an IPv4 address: %q", item)
		}
		a := syscall.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip)
		out = append(out, a)
	}
	return out, nil
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	n := fs.Int("n", 1000, "connections to open")
	targets := fs.String("targets", "127.0.0.1:1883", "comma-separated host:port; connection i goes to target i mod len")
	sources := fs.String("sources", "", "comma-separated local source addresses (bind before connect); connection i uses source i mod len; empty: the kernel chooses")
	prefix := fs.String("prefix", "idle", "client id prefix: ids are <prefix>-<n>")
	idOffset := fs.Int("id-offset", 0, "first <n> of the client ids")
	keepalive := fs.Int("keepalive", 60, "keepalive K in seconds (CONNECT field, and the PINGREQ period)")
	// For measuring (bench/keepalive): a keepalive the broker enforces with pings at another
	// rate, or none (0: the broker's per-connection idle cost without PINGREQs, within 1.5 K).
	pingPeriod := fs.Int("ping-period", -1, "seconds between one connection's PINGREQs; default K; 0: never ping")
	inflight := fs.Int("inflight", 200, "CONNECTs in flight at once (socket() to CONNACK)")
	connectTimeout := fs.Int("connect-timeout-ms", 15000, "a connection without CONNACK after this is failed as timeout")
	upTimeout := fs.Int("up-timeout", 600, "seconds: stop opening connections after this and report")
	holdMax := fs.Int("hold-max", 3600, "seconds: exit after holding this long even without SIGTERM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 0 || *inflight < 1 || *keepalive < 1 {
		return errors.New("-n >= 0, -inflight >= 1 and -keepalive >= 1 are required")
	}
	if *pingPeriod < 0 {
		*pingPeriod = *keepalive
	}
	g := &idleGen{
		n: *n, inflight: *inflight, keepalive: time.Duration(*keepalive) * time.Second,
		connectTimeout: time.Duration(*connectTimeout) * time.Millisecond,
		prefix:         *prefix, idOffset: *idOffset,
		conns:     make([]idleConn, *n),
		inFlight:  make(map[int32]struct{}, *inflight),
		latencies: make([]float32, 0, *n),
		failed:    map[string]int{},
		tick:      100 * time.Millisecond,
		pingreq:   encode(packets.NewControlPacket(packets.Pingreq)),
		discon:    encode(packets.NewControlPacket(packets.Disconnect)),
		epoch:     time.Now(),
	}
	var err error
	if g.targets, err = parseAddrs(*targets, 1883); err != nil || len(g.targets) == 0 {
		return fmt.Errorf("-targets: %v", err)
	}
	if g.sources, err = parseAddrs(*sources, 0); err != nil {
		return fmt.Errorf("-sources: %v", err)
	}
	// One wheel slot per tick over the keepalive period: connection i pings in slot i mod slots,
	// so the N/K pings per second are spread evenly.
	// -ping-period 0: no slots, no pings.
	slots := int(time.Duration(*pingPeriod) * time.Second / g.tick)
	g.wheel = make([][]int32, slots)
	if g.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %v", err)
	}
	rss0 := selfRSSKiB()

	// Stop requests: a signal, stdin EOF; "stats" lines on stdin ask for counters.
	var stop atomic.Bool
	var statsWanted atomic.Int32
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; stop.Store(true) }()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "stats" {
				statsWanted.Add(1)
			}
		}
		stop.Store(true)
	}()

	upDeadline := time.Duration(*upTimeout) * time.Second
	reportedUp := false
	var upAt time.Duration
	events := make([]syscall.EpollEvent, 256)
	nextTick := time.Since(g.epoch) + g.tick
	for !stop.Load() {
		elapsed := time.Since(g.epoch)
		if !reportedUp {
			if elapsed < upDeadline {
				g.openMore()
			}
			if (g.next == g.n || elapsed >= upDeadline) && len(g.inFlight) == 0 || elapsed >= upDeadline+g.connectTimeout {
				g.expireConnecting(true)
				if err := g.reportUp(rss0, elapsed); err != nil {
					return err
				}
				reportedUp = true
				upAt = elapsed
			}
		} else if elapsed-upAt >= time.Duration(*holdMax)*time.Second {
			break
		}
		wait := int((nextTick - elapsed) / time.Millisecond)
		if wait < 0 {
			wait = 0
		}
		ne, err := syscall.EpollWait(g.epfd, events, wait)
		if err != nil && err != syscall.EINTR {
			return fmt.Errorf("epoll_wait: %v", err)
		}
		for i := 0; i < ne; i++ {
			g.handle(events[i].Fd, events[i].Events)
		}
		if time.Since(g.epoch) >= nextTick {
			nextTick += g.tick
			g.expireConnecting(false)
			g.pingSlot()
		}
		for statsWanted.Load() > 0 {
			statsWanted.Add(-1)
			if err := emit(g.counters("stats")); err != nil {
				return err
			}
		}
	}
	if !reportedUp {
		g.expireConnecting(true)
		if err := g.reportUp(rss0, time.Since(g.epoch)); err != nil {
			return err
		}
	}
	final := g.counters("final")
	// DISCONNECT then close: the broker sees a clean end, not a lost connection.
	for i := range g.conns {
		c := &g.conns[i]
		if c.state == stHeld {
			_, _ = syscall.Write(int(c.fd), g.discon)
		}
		if c.state == stConnecting || c.state == stAwaitAck || c.state == stHeld {
			_ = syscall.Close(int(c.fd))
			c.state = stClosed
		}
	}
	return emit(final)
}

func (g *idleGen) fail(i int32, reason string) {
	c := &g.conns[i]
	if c.state == stConnecting || c.state == stAwaitAck {
		delete(g.inFlight, i)
	}
	if c.state == stHeld {
		g.held--
		g.lost++
	} else {
		g.failed[reason]++
	}
	if c.state != stFree {
		_ = syscall.Close(int(c.fd))
	}
	c.state = stClosed
	c.partial = nil
}

func errReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "emfile"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no-source-port"
	}
	return "other:" + err.Error()
}

// openMore starts TCP connects until -inflight are between socket() and CONNACK.
func (g *idleGen) openMore() {
	for len(g.inFlight) < g.inflight && g.next < g.n {
		i := int32(g.next)
		g.next++
		c := &g.conns[i]
		c.start = g.now()
		if g.firstStart == 0 {
			g.firstStart = c.start
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			g.fail(i, errReason(err))
			continue
		}
		c.fd = int32(fd)
		c.state = stConnecting
		g.inFlight[i] = struct{}{}
		if len(g.sources) > 0 {
			_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			src := g.sources[int(i)%len(g.sources)]
			if err := syscall.Bind(fd, &src); err != nil {
				g.fail(i, errReason(err))
				continue
			}
		}
		dst := g.targets[int(i)%len(g.targets)]
		if err := syscall.Connect(fd, &dst); err != nil && err != syscall.EINPROGRESS {
			g.fail(i, errReason(err))
			continue
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLOUT | syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: i}
		if err := syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			g.fail(i, errReason(err))
		}
	}
}

// expireConnecting fails connections in flight past -connect-timeout-ms (all of them if all).
func (g *idleGen) expireConnecting(all bool) {
	now := g.now()
	for i := range g.inFlight {
		if all || time.Duration(now-g.conns[i].start) >= g.connectTimeout {
			g.fail(i, "timeout")
		}
	}
}

func (g *idleGen) handle(i int32, ev uint32) {
	c := &g.conns[i]
	switch c.state {
	case stConnecting:
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		soerr, err := syscall.GetsockoptInt(int(c.fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err == nil && soerr != 0 {
			err = syscall.Errno(soerr)
		}
		if err != nil {
			g.fail(i, errReason(err))
			return
		}
		if _, err := syscall.Write(int(c.fd), g.connectPacket(int(i))); err != nil {
			g.fail(i, errReason(err))
			return
		}
		c.state = stAwaitAck
		// Level-triggered, readable only: an idle held socket costs no wake-ups.
		mod := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: i}
		if err := syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_MOD, int(c.fd), &mod); err != nil {
			g.fail(i, errReason(err))
		}
	case stAwaitAck, stHeld:
		g.read(i)
	}
}

func (g *idleGen) connectPacket(i int) []byte {
	p := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	p.ProtocolName = "MQTT"
	p.ProtocolVersion = 4
	p.CleanSession = true
	p.Keepalive = uint16(g.keepalive / time.Second)
	p.ClientIdentifier = fmt.Sprintf("%s-%d", g.prefix, g.idOffset+i)
	return encode(p)
}

var readBuf = make([]byte, 4096)

func (g *idleGen) read(i int32) {
	c := &g.conns[i]
	n, err := syscall.Read(int(c.fd), readBuf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil {
		g.fail(i, errReason(err))
		return
	}
	if n == 0 {
		if c.state == stAwaitAck {
			g.fail(i, "closed-before-connack")
		} else {
			g.fail(i, "closed")
		}
		return
	}
	data := readBuf[:n]
	if c.partial != nil {
		data = append(c.partial, data...)
		c.partial = nil
	}
	for len(data) > 0 {
		size, ok := frameSize(data)
		if !ok || size > len(data) {
			c.partial = append([]byte(nil), data...)
			return
		}
		pkt, err := packets.ReadPacket(bytes.NewReader(data[:size]))
		data = data[size:]
		if err != nil {
			g.fail(i, "bad-packet")
			return
		}
		switch p := pkt.(type) {
		case *packets.ConnackPacket:
			if c.state != stAwaitAck {
				g.unexpected++
				continue
			}
			delete(g.inFlight, i)
			if p.ReturnCode != 0 {
				g.fail(i, fmt.Sprintf("connack-%d", p.ReturnCode))
				return
			}
			now := g.now()
			g.latencies = append(g.latencies, float32(float64(now-c.start)/1e6))
			g.lastAck = now
			c.state = stHeld
			g.held++
			if len(g.wheel) > 0 {
				slot := int(i) % len(g.wheel)
				g.wheel[slot] = append(g.wheel[slot], i)
			}
		case *packets.PingrespPacket:
			if c.pingOut {
				c.pingOut = false
				g.pingresps++
			} else {
				g.unexpected++
			}
		default:
			g.unexpected++
		}
	}
}

// frameSize is the byte length of the MQTT packet at the head of b (fixed header plus
// remaining length), or ok=false while the remaining-length field is incomplete.
func frameSize(b []byte) (int, bool) {
	mult, rem := 1, 0
	for k := 1; k < 5; k++ {
		if k >= len(b) {
			return 0, false
		}
		rem += int(b[k]&0x7f) * mult
		if b[k]&0x80 == 0 {
			return 1 + k + rem, true
		}
		mult *= 128
	}
	return len(b) + 1, true // malformed length: ReadPacket reports it
}

// pingSlot sends the PINGREQs of the current wheel slot; a ping still unanswered from the
// previous round (K seconds ago) counts as a missing PINGRESP.
func (g *idleGen) pingSlot() {
	if len(g.wheel) == 0 {
		return
	}
	slot := g.wheel[g.wheelPos]
	g.wheelPos = (g.wheelPos + 1) % len(g.wheel)
	kept := slot[:0]
	now := g.now()
	for _, i := range slot {
		c := &g.conns[i]
		if c.state != stHeld {
			continue
		}
		kept = append(kept, i)
		if c.pingOut {
			g.pingMissing++
		}
		if _, err := syscall.Write(int(c.fd), g.pingreq); err != nil && err != syscall.EAGAIN {
			g.fail(i, errReason(err))
			continue
		}
		c.pingOut = true
		c.start = now
		g.pingsSent++
	}
	g.wheel[(g.wheelPos+len(g.wheel)-1)%len(g.wheel)] = kept
}

func (g *idleGen) reportUp(rss0 int, elapsed time.Duration) error {
	lat := append([]float32(nil), g.latencies...)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	at := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		k := int(p / 100 * float64(len(lat)))
		if k >= len(lat) {
			k = len(lat) - 1
		}
		return float64(lat[k])
	}
	rate := 0.0
	if span := float64(g.lastAck-g.firstStart) / 1e9; span > 0 {
		rate = float64(len(g.latencies)) / span
	}
	failed := 0
	for _, v := range g.failed {
		failed += v
	}
	rss := selfRSSKiB()
	perConn := 0.0
	if g.held > 0 {
		perConn = float64(rss-rss0) / float64(g.held)
	}
	// Log-spaced latency histogram (bucket k holds [histBase*histRatio^k, histBase*histRatio^(k+1)) ms)
	// so the harness can merge several processes' distributions and take p99 within 5 %.
	hist := map[int]int{}
	for _, v := range lat {
		hist[latencyBucket(float64(v))]++
	}
	return emit(map[string]any{
		"event": "up", "latencyHist": map[string]any{"baseMs": histBase, "ratio": histRatio, "counts": hist}, "wanted": g.n, "attempted": g.next, "connected": len(g.latencies), "held": g.held,
		"failed": failed, "failedBy": g.failed, "connectsPerSec": rate,
		"latencyMs": map[string]float64{"p50": at(50), "p99": at(99), "max": at(100)},
		"elapsedS":  elapsed.Seconds(),
		"rssKiB":    rss, "rssBeforeKiB": rss0, "rssKiBPerConn": perConn,
	})
}

const (
	histBase  = 0.01 // ms
	histRatio = 1.05
)

func latencyBucket(ms float64) int {
	if ms <= histBase {
		return 0
	}
	return int(math.Log(ms/histBase) / math.Log(histRatio))
}

func (g *idleGen) counters(event string) map[string]any {
	outstanding := 0
	for i := range g.conns {
		if g.conns[i].state == stHeld && g.conns[i].pingOut {
			outstanding++
		}
	}
	return map[string]any{
		"event": event, "held": g.held, "lostWhileHeld": g.lost, "pingsSent": g.pingsSent,
		"pingresps": g.pingresps, "pingrespMissing": g.pingMissing, "pingOutstanding": outstanding,
		"unexpectedPackets": g.unexpected, "rssKiB": selfRSSKiB(), "elapsedS": time.Since(g.epoch).Seconds(),
	}
}

// selfRSSKiB is this process's VmRSS.
func selfRSSKiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var v int
			_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &v)
			return v
		}
	}
	return 0
}
