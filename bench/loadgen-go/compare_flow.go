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
	"math"
	"sync"
	"sync/atomic"
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
	// Rate (compare-fanin only): paced, open loop, at this many messages per second over all
	// publishers of the job (every part's), latency from each message's due time
	// (compare_pace.go). 0: closed loop.
	Rate float64 `json:"rate"`
	// Routes: client id -> port, for clients spread over several nodes (bench/redis aggregate:
	// the harness hashes each id onto a node as the access layer does). Absent ids use Port.
	Routes map[string]int `json:"routes"`
}

// portFor is the port a client connects to: its route, else the job's port.
func (j *flowJob) portFor(clientID string) int {
	if p, ok := j.Routes[clientID]; ok {
		return p
	}
	return j.Port
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
	rec    windowRecord
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
					now := nowMs()
					s.latMu.Lock()
					s.rec.delivery(pub, now, now-ts)
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
	var pc *pacer
	var timer *time.Timer
	if e.paced() {
		pc = &pacer{perMs: e.perMs, since: e.since, offset: float64(p.index) / float64(e.job.Publishers)}
		timer = time.NewTimer(time.Hour)
		defer timer.Stop()
	}
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
		stamp := nowMs()
		if pc != nil {
			if due := int64(pc.due(stamp)) - int64(sent); due < credit {
				credit = due
			}
			if credit <= 0 {
				if !p.pace(pc, sent, timer) {
					return
				}
				continue
			}
			e.lagSample(stamp - pc.at(sent+1))
		}
		n := int(min(credit, int64(e.batch)))
		now := math.Float64bits(stamp)
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
			if pc != nil {
				now = math.Float64bits(pc.at(sent)) // the due time: see compare_pace.go
			}
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
	// Paced (job.rate > 0): messages per ms per publisher, and nowMs() when publishing started
	// (set before start is closed); lag: send lag of paced batches over the window.
	perMs, since float64
	lagMu        sync.Mutex
	lag          []float64
	// mu guards the slices while connections are added concurrently (fan-out setup).
	mu sync.Mutex
}

func newEngine(job *flowJob, window, inflight, batch int) *engine {
	r, err := newReactor()
	if err != nil {
		errorExit("epoll: " + err.Error())
	}
	e := &engine{job: job, window: window, inflight: inflight, batch: batch,
		start: make(chan struct{}), stop: make(chan struct{}), reactor: r}
	if job.Rate > 0 && job.Publishers > 0 {
		e.perMs = job.Rate / float64(job.Publishers) / 1000
	}
	return e
}

func (e *engine) paced() bool { return e.perMs > 0 }

// addSubscriber connects, subscribes (waiting for SUBACK, refused = error) and starts reading.
func (e *engine) addSubscriber(clientID, topic string, qos byte, publishers int, counted bool) (*subscriber, error) {
	c, err := dialMQTT(e.job.Host, e.job.portFor(clientID), clientID, 60, 10*time.Second)
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
	c, err := dialMQTT(e.job.Host, e.job.portFor(clientID), clientID, 60, 10*time.Second)
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
