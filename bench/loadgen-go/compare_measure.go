package main

// The measurement of the flow modes (warm-up, window, drain, result fields, as
// bench/loadgen-scenarios.ts' measure()) and the helpers the modes share.

import (
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

// delivered is what the counted subscribers received.
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
	e.since = nowMs()
	close(e.start)
	time.Sleep(time.Duration(job.WarmupMs) * time.Millisecond)
	d0, s0, a0, w0, r0 := e.delivered(), e.totalSent(), e.totalAcked(), e.wireBytes(), e.reactor.reads.Load()
	cpu0 := cpuSeconds()
	t0 := nowMs()
	if latency {
		for _, s := range e.subscribers {
			s.startWindow(t0)
		}
	}
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
	if latency {
		for _, s := range e.subscribers {
			s.endWindow(nowMs())
		}
	}
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
		lat = append(lat, s.rec.lat...)
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
	if e.paced() {
		result["offeredPerSecond"] = e.perMs * 1000 * float64(len(e.publishers))
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
		e.windowFacts(result, t0)
		result["latencyMs"] = map[string]any{
			// Paced: from each message's due time (compare_pace.go); else from when it was sent.
			"from":    map[bool]string{true: "due", false: "sent"}[e.paced()],
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
	if job.Rate < 0 || math.IsInf(job.Rate, 0) || (job.Rate > 0 && job.Scenario != "fanin") {
		return errorf("rate %v: only compare-fanin paces, at a rate > 0 msgs/s", job.Rate)
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
