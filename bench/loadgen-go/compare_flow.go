package main

// The closed-loop publish/subscribe engine of the bench/compare flow modes, a port of
// bench/loadgen-scenarios.ts' Engine with the same semantics and result fields:
//   - a publisher is at most `window` messages ahead of the slowest of its subscribers
//     (per-publisher sequence numbers in the payload, so a dropped message does not shrink the
//     window) and, at QoS 1, at most `inflight` messages without PUBACK;
//   - a watchdog reopens a window that made no progress for 1 s (windowResets: suspected drops);
//   - warm-up, a measured window (timelinePerSecond), then a bounded drain that checks every
//     message arrived (missing, lost = gaps in the sequences);
//   - latency from the timestamp in the payload.
// Each connection has a reader goroutine; each publisher a writer goroutine that sleeps on a
// wake channel while it has no credit. Counters shared between goroutines are atomics.

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// flowJob is the job of the flow modes: the Node generator's FaninJob/Qos1Job/FanoutJob fields,
// plus how the job is split among generator processes.
type flowJob struct {
	Scenario           string `json:"scenario"`
	Host               string `json:"host"`
	Port               int    `json:"port"`
	TimeLimitMs        int    `json:"timeLimitMs"`
	WarmupMs           int    `json:"warmupMs"`
	WindowMs           int    `json:"windowMs"`
	DrainMs            int    `json:"drainMs"`
	PayloadBytes       int    `json:"payloadBytes"`
	Latency            bool   `json:"latency"`
	Publishers         int    `json:"publishers"`
	Window             int    `json:"window"`
	Batch              int    `json:"batch"`
	Pairs              int    `json:"pairs"`
	Inflight           int    `json:"inflight"`
	Subscribers        int    `json:"subscribers"`
	ConnectConcurrency int    `json:"connectConcurrency"`
	// Part (0-based) of Parts generator processes sharing the job; see each mode for the split.
	Part  int `json:"part"`
	Parts int `json:"parts"`
	// Barrier: after "ready", wait for a "start" line on stdin before publishing, so that the
	// processes of one split job measure the same seconds.
	Barrier bool `json:"barrier"`
	// ReadPauseUs (compare-fanout): pause of the read loop after each batch, in µs; default 500.
	ReadPauseUs int `json:"readPauseUs"`
}

func (j *flowJob) defaults() {
	if j.Host == "" {
		j.Host = "127.0.0.1"
	}
	if j.Parts <= 0 {
		j.Parts = 1
	}
	if j.ReadPauseUs == 0 && j.Scenario == "fanout" {
		j.ReadPauseUs = 500
	}
	if j.ReadPauseUs < 0 {
		j.ReadPauseUs = 0
	}
}

type subscriber struct {
	// A raw socket read by the engine's reactor (compare_reactor.go), which owns rx, pubacks
	// and lat's appends.
	rx
	engine  *engine
	counted bool
	// last and count per publisher index: highest sequence seen and messages received
	// (last - count = gaps: lost messages, as MQTT keeps per-publisher order).
	last      []atomic.Uint32
	count     []atomic.Uint32
	delivered atomic.Uint64
	// pubacks for the current read, written as one buffer after it (reader goroutine only).
	pubacks []byte
	// publishers woken after every read that delivered something.
	notify []*publisher
	suback chan byte
	latMu  sync.Mutex
	lat    []float64
}

func (s *subscriber) onFrame(h byte, body []byte) {
	switch h >> 4 {
	case 3: // PUBLISH
		qos := (h >> 1) & 3
		if len(body) < 2 {
			return
		}
		p := 2 + int(binary.BigEndian.Uint16(body))
		if qos > 0 && p+2 <= len(body) {
			ack := len(s.pubacks)
			s.pubacks = append(s.pubacks, pubackTemplate...)
			s.pubacks[ack+2], s.pubacks[ack+3] = body[p], body[p+1]
			p += 2
		}
		if len(body)-p >= payloadHeader {
			pub := int(binary.LittleEndian.Uint16(body[p:]))
			seq := binary.LittleEndian.Uint32(body[p+2:])
			if pub < len(s.last) {
				if seq > s.last[pub].Load() {
					s.last[pub].Store(seq)
				}
				s.count[pub].Add(1)
			}
			if s.counted {
				s.delivered.Add(1)
				if s.engine.recordLatency.Load() {
					ts := math.Float64frombits(binary.LittleEndian.Uint64(body[p+6:]))
					s.latMu.Lock()
					s.lat = append(s.lat, nowMs()-ts)
					s.latMu.Unlock()
				}
			}
		}
		s.got = true // afterRead writes the PUBACKs and wakes the publishers
	case 9: // SUBACK
		if len(body) > 0 {
			select {
			case s.suback <- body[len(body)-1]:
			default:
			}
		}
	}
}

func (s *subscriber) afterRead() {
	if len(s.pubacks) > 0 {
		_ = writeAll(s.fd, s.pubacks)
		s.pubacks = s.pubacks[:0]
	}
	if s.got {
		s.got = false
		for _, p := range s.notify {
			p.kick()
		}
	}
}

type publisher struct {
	// conn writes (Go's net package waits for a full send buffer); rx reads PUBACKs in the
	// reactor from a duplicate of conn's descriptor.
	rx
	index     int
	conn      *conn
	engine    *engine
	tmpl      template
	qos       byte
	sent      atomic.Uint64
	acked     atomic.Uint64
	floor     atomic.Uint64
	receivers []*subscriber
	wake      chan struct{}
	// watchdog goroutine only
	lastProgress float64
	lastReceived uint64
}

func (p *publisher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *publisher) onFrame(h byte, _ []byte) {
	if h>>4 == 4 { // PUBACK
		p.acked.Add(1)
		p.got = true
	}
}

func (p *publisher) afterRead() {
	if p.got {
		p.got = false
		p.kick()
	}
}

// seenMin is the lowest sequence number all receivers have reached (or the watchdog's floor).
func (p *publisher) seenMin() uint64 {
	if len(p.receivers) == 0 {
		return p.sent.Load()
	}
	min := uint64(math.MaxUint32)
	for _, r := range p.receivers {
		if s := uint64(r.last[p.index].Load()); s < min {
			min = s
		}
	}
	return max(min, p.floor.Load())
}

// pump writes batches while the window (and in-flight limit) give credit; one Write per batch,
// which blocks while the kernel's send buffer is full (the Node generator's 'drain').
func (p *publisher) pump() {
	e := p.engine
	select {
	case <-e.start:
	case <-e.stop:
		return
	}
	t := p.tmpl
	size := len(t.buf)
	out := make([]byte, e.batch*size)
	mid := uint16(0)
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		sent := p.sent.Load()
		credit := int64(e.window) - int64(sent-p.seenMin())
		if p.qos > 0 {
			credit = min(credit, int64(e.inflight)-int64(sent-p.acked.Load()))
		}
		if credit <= 0 {
			select {
			case <-p.wake:
			case <-e.stop:
				return
			}
			continue
		}
		n := int(min(credit, int64(e.batch)))
		now := math.Float64bits(nowMs())
		for k, o := 0, 0; k < n; k, o = k+1, o+size {
			copy(out[o:o+size], t.buf)
			if p.qos > 0 {
				if mid >= 65535 {
					mid = 1
				} else {
					mid++
				}
				binary.BigEndian.PutUint16(out[o+t.midOffset:], mid)
			}
			sent++
			binary.LittleEndian.PutUint16(out[o+t.payloadOff:], uint16(p.index))
			binary.LittleEndian.PutUint32(out[o+t.payloadOff+2:], uint32(sent))
			binary.LittleEndian.PutUint64(out[o+t.payloadOff+6:], now)
		}
		p.sent.Store(sent)
		if _, err := p.conn.c.Write(out[:n*size]); err != nil {
			return
		}
	}
}

type engine struct {
	job                     *flowJob
	window, inflight, batch int
	subscribers             []*subscriber
	publishers              []*publisher
	recordLatency           atomic.Bool
	windowResets            atomic.Uint64
	start, stop             chan struct{}
	publishing              atomic.Bool
	reactor                 *reactor
	// mu guards the slices while connections are added concurrently (fan-out setup).
	mu sync.Mutex
}

func newEngine(job *flowJob, window, inflight, batch int) *engine {
	r, err := newReactor()
	if err != nil {
		errorExit("epoll: " + err.Error())
	}
	return &engine{job: job, window: window, inflight: inflight, batch: batch,
		start: make(chan struct{}), stop: make(chan struct{}), reactor: r}
}

// addSubscriber connects, subscribes (waiting for SUBACK, refused = error) and starts reading.
func (e *engine) addSubscriber(clientID, topic string, qos byte, publishers int, counted bool) (*subscriber, error) {
	c, err := dialMQTT(e.job.Host, e.job.Port, clientID, 60, 10*time.Second)
	if err != nil {
		return nil, err
	}
	// The reactor reads a duplicate of the descriptor; closing Go's one takes the socket out of
	// the runtime's poller (close(), not shutdown(): the duplicate keeps the connection open).
	var fd int
	err = dupFd(c, &fd)
	c.c.Close()
	if err != nil {
		return nil, err
	}
	s := &subscriber{rx: rx{fd: fd, pending: c.rest}, engine: e, counted: counted, last: make([]atomic.Uint32, publishers),
		count: make([]atomic.Uint32, publishers), suback: make(chan byte, 1)}
	e.mu.Lock()
	e.subscribers = append(e.subscribers, s)
	e.mu.Unlock()
	if err := e.reactor.add(s); err != nil {
		return nil, err
	}
	if err := writeAll(fd, subscribePacket(topic, qos)); err != nil {
		return nil, err
	}
	select {
	case code := <-s.suback:
		if code == 0x80 {
			return nil, errorf("SUBSCRIBE %s %s: refused", clientID, topic)
		}
	case <-time.After(10 * time.Second):
		return nil, errorf("SUBSCRIBE %s: no SUBACK in 10 s", clientID)
	}
	return s, nil
}

func (e *engine) addPublisher(clientID string, index int, topic string, qos byte) (*publisher, error) {
	c, err := dialMQTT(e.job.Host, e.job.Port, clientID, 60, 10*time.Second)
	if err != nil {
		return nil, err
	}
	p := &publisher{index: index, conn: c, engine: e, tmpl: publishTemplate(topic, qos, e.job.PayloadBytes), qos: qos, wake: make(chan struct{}, 1)}
	p.pending = c.rest
	if err := dupFd(c, &p.fd); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.publishers = append(e.publishers, p)
	e.mu.Unlock()
	if err := e.reactor.add(p); err != nil {
		return nil, err
	}
	return p, nil
}

// attach makes s a receiver of p: p's window follows s, and s wakes p after reads.
func attach(p *publisher, s *subscriber) {
	p.receivers = append(p.receivers, s)
	s.notify = append(s.notify, p)
}

func (e *engine) delivered() uint64 {
	var d uint64
	for _, s := range e.subscribers {
		if s.counted {
			d += s.delivered.Load()
		}
	}
	return d
}

func (e *engine) totalSent() (s uint64) {
	for _, p := range e.publishers {
		s += p.sent.Load()
	}
	return
}

func (e *engine) totalAcked() (a uint64) {
	for _, p := range e.publishers {
		a += p.acked.Load()
	}
	return
}

// expected is the deliveries the counted subscribers should get for what was sent.
func (e *engine) expected() (x uint64) {
	for _, p := range e.publishers {
		n := 0
		for _, r := range p.receivers {
			if r.counted {
				n++
			}
		}
		x += p.sent.Load() * uint64(n)
	}
	return
}

// gaps are messages skipped in the per-publisher sequences at counted subscribers: certainly lost.
func (e *engine) gaps() (g uint64) {
	for _, s := range e.subscribers {
		if !s.counted {
			continue
		}
		for i := range s.last {
			g += uint64(s.last[i].Load()) - uint64(s.count[i].Load())
		}
	}
	return
}

func (e *engine) wireBytes() (b uint64) {
	for _, s := range e.subscribers {
		if s.counted {
			b += s.bytesRead.Load()
		}
	}
	return
}

// watchdog reopens the window of a publisher blocked on it while none of its receivers got
// any of its messages for stallMs (the rest of the window was lost: QoS 0 drops).
func (e *engine) watchdog(stallMs float64) {
	now := nowMs()
	for _, p := range e.publishers {
		var received uint64
		for _, r := range p.receivers {
			received += uint64(r.count[p.index].Load())
		}
		if received != p.lastReceived {
			p.lastReceived, p.lastProgress = received, now
			continue
		}
		sent := p.sent.Load()
		if e.publishing.Load() && now-p.lastProgress > stallMs && sent-p.seenMin() >= uint64(e.window) {
			p.floor.Store(sent)
			p.lastProgress = now
			e.windowResets.Add(1)
			p.kick()
		}
	}
}

func (e *engine) close() {
	e.reactor.stop()
	<-e.reactor.done
	for _, p := range e.publishers {
		_ = p.conn.write(disconnectPacket)
		p.conn.c.Close()
		syscall.Close(p.fd)
	}
	for _, s := range e.subscribers {
		_ = writeAll(s.fd, disconnectPacket)
		syscall.Close(s.fd)
	}
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(math.Floor(p/100*float64(len(sorted)))))]
}

// measure runs warm-up, the window and the drain, and returns the Node generator's result fields.
func (e *engine) measure(latency bool, extra func() map[string]any) map[string]any {
	job := e.job
	var pumps sync.WaitGroup
	for _, p := range e.publishers {
		pumps.Add(1)
		go func() { defer pumps.Done(); p.pump() }()
	}
	emitEvent("ready", nil)
	if job.Barrier && !waitLine("start", time.Duration(job.TimeLimitMs)*time.Millisecond) {
		errorExit("no \"start\" on stdin")
	}
	e.publishing.Store(true)
	// Stalls count from the start of publishing (set before the watchdog goroutine reads them).
	for _, p := range e.publishers {
		p.lastProgress = nowMs()
	}
	wd := time.NewTicker(100 * time.Millisecond)
	wdDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-wd.C:
				e.watchdog(1000)
			case <-wdDone:
				return
			}
		}
	}()
	close(e.start)
	time.Sleep(time.Duration(job.WarmupMs) * time.Millisecond)
	d0, s0, a0, w0, r0 := e.delivered(), e.totalSent(), e.totalAcked(), e.wireBytes(), e.reactor.reads.Load()
	cpu0 := cpuSeconds()
	t0 := nowMs()
	e.recordLatency.Store(latency)
	emitEvent("window-start", nil)
	// Deliveries per second of the window (the last bucket may be shorter if windowMs is not whole seconds).
	timeline := []uint64{}
	last := d0
	for at := 1000; at < job.WindowMs+1000; at += 1000 {
		time.Sleep(time.Duration((t0 + float64(min(at, job.WindowMs)) - nowMs()) * float64(time.Millisecond)))
		d := e.delivered()
		timeline = append(timeline, d-last)
		last = d
	}
	e.recordLatency.Store(false)
	seconds := (nowMs() - t0) / 1000
	cpu := cpuSeconds() - cpu0
	d1, s1, a1, w1, r1 := e.delivered(), e.totalSent(), e.totalAcked(), e.wireBytes(), e.reactor.reads.Load()
	emitEvent("window-end", nil)
	e.publishing.Store(false)
	close(e.stop)
	wd.Stop()
	close(wdDone)
	// Drain: wait (bounded) for everything sent to arrive at the counted subscribers.
	drainStart := nowMs()
	drainEnd := time.Now().Add(time.Duration(job.DrainMs) * time.Millisecond)
	drainTarget := e.expected
	if job.Parts > 1 && job.Scenario == "fanout" {
		// Fan-out split: part 0's publisher sends to every part's subscribers. Part 0 tells the
		// harness how many it sent (once its pump stopped), the harness tells the other parts.
		if len(e.publishers) > 0 {
			waitTimeout(&pumps, drainEnd)
			emitEvent("sent", map[string]any{"sentTotal": e.totalSent()})
		} else {
			sent, ok := waitSent(drainEnd)
			drainTarget = func() uint64 { return sent * uint64(e.countedSubscribers()) }
			if !ok {
				drainTarget = func() uint64 { return math.MaxUint64 } // unknown: drain to the cap
			}
		}
	}
	// ... and, at QoS 1, for the PUBACKs of everything sent (the last ones may follow the deliveries).
	for (e.delivered() < drainTarget() || e.unacked() > 0) && time.Now().Before(drainEnd) {
		time.Sleep(20 * time.Millisecond)
	}
	drainSeconds := (nowMs() - drainStart) / 1000
	var lat []float64
	for _, s := range e.subscribers {
		s.latMu.Lock()
		lat = append(lat, s.lat...)
		s.latMu.Unlock()
	}
	sort.Float64s(lat)
	delivered, expected := e.delivered(), e.expected()
	result := map[string]any{
		"seconds":            seconds,
		"deliveredPerSecond": float64(d1-d0) / seconds,
		"publishedPerSecond": float64(s1-s0) / seconds,
		"ackedPerSecond":     float64(a1-a0) / seconds,
		"sentTotal":          e.totalSent(),
		"ackedTotal":         e.totalAcked(),
		"deliveredTotal":     delivered,
		"expectedTotal":      expected,
		"missing":            int64(expected) - int64(delivered),
		"lost":               e.gaps(),
		// false: the drain cap passed with deliveries still outstanding (missing = not yet delivered).
		"drainComplete":     delivered >= expected,
		"drainSeconds":      drainSeconds,
		"windowResets":      e.windowResets.Load(),
		"loadgenCpuPercent": cpu / seconds * 100,
		"timelinePerSecond": timeline,
		"transport":         "tcp",
		// Bytes the counted subscribers read per message delivered to them (MQTT + TCP framing, not TCP/IP headers).
		"wireBytesPerDelivery": float64(w1-w0) / float64(max(1, d1-d0)),
		"framesPerDelivery":    nil,
		// read() calls (subscribers' and publishers') per delivery over the window: the generator's
		// main cost per delivery is a read, so fewer messages per read cost it more.
		"readsPerDelivery":   float64(r1-r0) / float64(max(1, d1-d0)),
		"loadgen":            "go",
		"part":               job.Part,
		"parts":              job.Parts,
		"countedSubscribers": e.countedSubscribers(),
	}
	for k, v := range extra() {
		result[k] = v
	}
	if latency {
		sum := 0.0
		for _, v := range lat {
			sum += v
		}
		maxLat := 0.0
		if len(lat) > 0 {
			maxLat = lat[len(lat)-1]
		}
		result["latencyMs"] = map[string]any{
			"samples": len(lat), "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": maxLat,
			"mean": sum / float64(max(1, len(lat))),
			// 1,001 evenly spaced quantiles, so the harness can merge the latencies of split jobs.
			"quantiles": quantiles(lat, 1000),
		}
	}
	e.close()
	return result
}

// waitTimeout waits for wg until deadline (a pump blocked in a write must not hold up the drain).
func waitTimeout(wg *sync.WaitGroup, deadline time.Time) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
}

// waitSent waits (until deadline) for the line "sent N" on stdin: what part 0's publisher sent.
func waitSent(deadline time.Time) (uint64, bool) {
	for {
		select {
		case line, ok := <-stdinLines():
			if !ok {
				return 0, false
			}
			var n uint64
			if _, err := fmt.Sscanf(line, "sent %d", &n); err == nil {
				return n, true
			}
		case <-time.After(time.Until(deadline)):
			return 0, false
		}
	}
}

// unacked is what QoS 1 publishers sent without a PUBACK yet.
func (e *engine) unacked() (n uint64) {
	for _, p := range e.publishers {
		if p.qos > 0 {
			n += p.sent.Load() - p.acked.Load()
		}
	}
	return
}

func (e *engine) countedSubscribers() int {
	n := 0
	for _, s := range e.subscribers {
		if s.counted {
			n++
		}
	}
	return n
}

// quantiles returns steps+1 values of sorted at evenly spaced ranks (empty when no samples).
func quantiles(sorted []float64, steps int) []float64 {
	if len(sorted) == 0 {
		return []float64{}
	}
	out := make([]float64, steps+1)
	for i := range out {
		out[i] = sorted[min(len(sorted)-1, i*len(sorted)/steps)]
	}
	return out
}

// pool runs task(i) for i < count with at most concurrency at once; no new task starts after deadline.
func pool(count, concurrency int, deadline time.Time, task func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(concurrency, count); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				task(i)
			}
		}()
	}
	wg.Wait()
}

// share is the range [from, to) of count items that part p of parts takes.
func share(count, part, parts int) (int, int) {
	return count * part / parts, count * (part + 1) / parts
}

// runFlow parses a flow job, runs setup and measure, and emits the result line.
func runFlow(args []string, setup func(job *flowJob) (*engine, bool, func() map[string]any, error)) error {
	var job flowJob
	if err := parseJob(args, &job); err != nil {
		return err
	}
	job.defaults()
	if job.Part < 0 || job.Part >= job.Parts {
		return errorf("part %d of %d", job.Part, job.Parts)
	}
	hardLimit(job.TimeLimitMs)
	// Two Ps on the one core the harness gives: the reactor goroutine blocks in epoll_wait, and the
	// publishers and the measuring goroutine must not wait for the runtime to take its P back.
	runtime.GOMAXPROCS(max(2, runtime.NumCPU()))
	e, latency, extra, err := setup(&job)
	if err != nil {
		return err
	}
	if extra == nil {
		extra = func() map[string]any { return nil }
	}
	result := e.measure(latency, extra)
	result["event"] = "result"
	return emit(result)
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// errorExit ends the process with exit 1 and a message (the harness reports stderr).
func errorExit(msg string) {
	fmt.Fprintln(os.Stderr, "mqgw-loadgen:", msg)
	os.Exit(1)
}
