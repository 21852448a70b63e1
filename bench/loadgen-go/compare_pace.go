package main

// Paced (open-loop) publishing of compare-fanin (bench/compare fanin-90), and what the flow modes
// record over the window when they measure latency: delivery gaps, a latency timeline, and how
// late the generator itself sent.
//
// Paced: job.rate messages per second in all, split evenly among the publishers; publisher i's
// message k (1-based) is due at since + (k - 1 + i/publishers) / rate-per-publisher (the phase
// spreads the publishers over one period instead of sending all at once). A publisher sends what
// is due whenever it runs, whatever the broker did with the earlier ones (no acks at QoS 0; the
// window still caps a publisher whose messages stop arriving). Each message carries its DUE time,
// not the time it left: when the broker (or a full send buffer, or the generator) holds sends
// back, the wait is part of the measured latency, so coordinated omission is not hidden.

import (
	"math"
	"sort"
	"time"
)

// paceTick is the longest a paced publisher sleeps with nothing due: it sends in batches of
// what fell due meanwhile (at 16k msgs/s per publisher, ~16 per tick). A message waits at most
// this long in the generator, and that wait is counted in its latency.
const paceTick = time.Millisecond

// pacer is the schedule of one publisher (zero perMs: closed loop).
type pacer struct {
	perMs  float64 // messages per ms
	since  float64 // nowMs() when publishing started
	offset float64 // phase in [0, 1) periods
}

// due is how many messages are due by t.
func (pc *pacer) due(t float64) uint64 {
	x := (t-pc.since)*pc.perMs - pc.offset
	if x < 0 {
		return 0
	}
	return uint64(math.Floor(x)) + 1
}

// at is when message k (1-based) is due.
func (pc *pacer) at(k uint64) float64 {
	return pc.since + (float64(k-1)+pc.offset)/pc.perMs
}

// pace sleeps until p's next message is due (at least paceTick) or the engine stops; false: stopped.
func (p *publisher) pace(pc *pacer, sent uint64, timer *time.Timer) bool {
	wait := time.Duration((pc.at(sent+1) - nowMs()) * float64(time.Millisecond))
	timer.Reset(max(wait, paceTick))
	select {
	case <-timer.C:
		return true
	case <-p.engine.stop:
		return false
	}
}

// lagSample records how late a paced batch left (its first message's due time to the write).
func (e *engine) lagSample(ms float64) {
	if !e.recordLatency.Load() {
		return
	}
	e.lagMu.Lock()
	e.lag = append(e.lag, ms)
	e.lagMu.Unlock()
}

// windowRecord is what a subscriber records over the window when latency is measured (guarded
// by the subscriber's latMu: the reactor appends, the measuring goroutine starts and ends it).
type windowRecord struct {
	lat   []float64 // latency of each delivery, ms
	latAt []float64 // when it arrived (nowMs)
	// Per publisher index, the last delivery (NaN: not one of this subscriber's publishers).
	lastAt           []float64
	lastAny          float64
	maxGap, maxPause float64
	gapsOver1s       uint64
}

func (w *windowRecord) gap(ms float64) {
	w.maxGap = max(w.maxGap, ms)
	if ms >= 1000 {
		w.gapsOver1s++
	}
}

// delivery records one delivery of publisher pub at now with latency ms.
func (w *windowRecord) delivery(pub int, now, ms float64) {
	w.lat = append(w.lat, ms)
	w.latAt = append(w.latAt, now)
	w.maxPause = max(w.maxPause, now-w.lastAny)
	w.lastAny = now
	if pub < len(w.lastAt) && !math.IsNaN(w.lastAt[pub]) {
		w.gap(now - w.lastAt[pub])
		w.lastAt[pub] = now
	}
}

// startWindow starts gap tracking for s's publishers at now.
func (s *subscriber) startWindow(now float64) {
	s.latMu.Lock()
	defer s.latMu.Unlock()
	s.rec.lastAt = make([]float64, len(s.last))
	for i := range s.rec.lastAt {
		s.rec.lastAt[i] = math.NaN()
	}
	for _, p := range s.notify {
		s.rec.lastAt[p.index] = now
	}
	s.rec.lastAny = now
}

// endWindow closes the gaps still open at now (a publisher still waiting counts its wait).
func (s *subscriber) endWindow(now float64) {
	s.latMu.Lock()
	defer s.latMu.Unlock()
	for _, at := range s.rec.lastAt {
		if !math.IsNaN(at) {
			s.rec.gap(now - at)
		}
	}
	s.rec.maxPause = max(s.rec.maxPause, now-s.rec.lastAny)
}

// latencySecond is one second of the window: deliveries, latency p50/p99/max.
type latencySecond struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// windowFacts adds to a result what the subscribers recorded over the window that started at
// t0: gaps, latency per second and the highest latency per 100 ms (to lay beside the broker's
// GC pauses: windowStartUnixMs is t0 on the wall clock), and the paced send lag.
func (e *engine) windowFacts(result map[string]any, t0 float64) {
	var maxGap, maxPause float64
	var over1s uint64
	// Over the window as the job set it (the few µs recorded past its end go to the last bucket).
	buckets := max(1, (e.job.WindowMs+99)/100)
	peaks := make([]float64, buckets)
	perSecond := make([][]float64, (buckets+9)/10)
	for _, s := range e.subscribers {
		s.latMu.Lock()
		maxGap, maxPause, over1s = max(maxGap, s.rec.maxGap), max(maxPause, s.rec.maxPause), over1s+s.rec.gapsOver1s
		for i, at := range s.rec.latAt {
			b := min(buckets-1, max(0, int((at-t0)/100)))
			peaks[b] = max(peaks[b], s.rec.lat[i])
			perSecond[b/10] = append(perSecond[b/10], s.rec.lat[i])
		}
		s.latMu.Unlock()
	}
	timeline := make([]latencySecond, len(perSecond))
	for i, l := range perSecond {
		sort.Float64s(l)
		timeline[i] = latencySecond{N: len(l), P50: percentile(l, 50), P99: percentile(l, 99)}
		if len(l) > 0 {
			timeline[i].Max = l[len(l)-1]
		}
	}
	result["maxDeliveryGapMs"] = maxGap
	result["deliveryGapsOver1s"] = over1s
	result["maxPauseMs"] = maxPause
	result["latencyPerSecond"] = timeline
	result["latencyPeakPer100ms"] = peaks
	result["windowStartUnixMs"] = float64(epoch.UnixNano())/1e6 + t0
	if e.paced() {
		e.lagMu.Lock()
		lag := append([]float64(nil), e.lag...)
		e.lagMu.Unlock()
		sort.Float64s(lag)
		maxLag := 0.0
		if len(lag) > 0 {
			maxLag = lag[len(lag)-1]
		}
		// How late paced batches were written (due time of the first message to the write call).
		// It grows when the generator is short of CPU (see the harness's other-CPU column for its
		// core) and when the broker stops reading: a write blocked on a full socket buffer delays
		// the publisher's next batches. Either way the wait is inside the measured latency.
		result["sendLagMs"] = map[string]any{"batches": len(lag), "p50": percentile(lag, 50), "p99": percentile(lag, 99), "max": maxLag}
	}
}
