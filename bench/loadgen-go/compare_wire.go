package main

// The wire side of the bench/compare modes (compare-fanin, compare-qos1, compare-fanout,
// compare-connect): connections, packet templates and a frame scanner. Packets are encoded
// once with paho's packets package and then copied; the hot read path splits the byte stream
// into frames by their fixed header only, because decoding every PUBLISH into a packet object
// (packets.ReadPacket) would cost the generator more per message than the brokers it drives.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// epoch is the zero of every timestamp written into payloads and compared on receipt (the
// generator is one process, so a monotonic clock of its own is enough, as performance.now()
// is in the Node generator).
var epoch = time.Now()

// nowMs is milliseconds since the process started, monotonic.
func nowMs() float64 { return float64(time.Since(epoch).Nanoseconds()) / 1e6 }

// cpuSeconds is this process's user + system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// encode writes one packet built with paho's packets package into a byte slice.
func encode(p packets.ControlPacket) []byte {
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		panic(err) // writes to a bytes.Buffer do not fail
	}
	return b.Bytes()
}

// connectPacket is CONNECT, MQTT 3.1.1, clean session, no credentials.
func connectPacket(clientID string, keepalive int) []byte {
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName = "MQTT"
	cp.ProtocolVersion = 4
	cp.CleanSession = true
	cp.Keepalive = uint16(keepalive)
	cp.ClientIdentifier = clientID
	return encode(cp)
}

func subscribePacket(topic string, qos byte) []byte {
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID = 1
	sp.Topics = []string{topic}
	sp.Qoss = []byte{qos}
	return encode(sp)
}

var disconnectPacket = encode(packets.NewControlPacket(packets.Disconnect))

// pubackTemplate is PUBACK with message id 0; bytes 2 and 3 take the id.
var pubackTemplate = encode(&packets.PubackPacket{FixedHeader: packets.FixedHeader{MessageType: packets.Puback}, MessageID: 0})

// payloadHeader is what the generator puts at the start of every payload: u16 publisher index,
// u32 sequence number and a float64 timestamp (ms), little-endian, as the Node generator does.
const payloadHeader = 14

// template is an encoded PUBLISH whose message id and payload header are patched per message.
type template struct {
	buf        []byte
	midOffset  int
	payloadOff int
}

func publishTemplate(topic string, qos byte, payloadBytes int) template {
	pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pp.TopicName = topic
	pp.Qos = qos
	if qos > 0 {
		pp.MessageID = 1
	}
	pp.Payload = bytes.Repeat([]byte{'x'}, max(payloadHeader, payloadBytes))
	buf := encode(pp)
	off := len(buf) - len(pp.Payload)
	return template{buf: buf, midOffset: off - 2, payloadOff: off}
}

// frameLen is the size of the first frame in b (fixed header + remaining length), or false
// while it is incomplete.
func frameLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	length, mul := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		c := b[i]
		length += int(c&127) * mul
		mul *= 128
		if c&128 == 0 {
			total := i + 1 + length
			return total, total <= len(b)
		}
	}
	return 0, false
}

// scan calls onFrame for every complete frame at the start of b (header byte, body) and
// returns how many bytes it consumed; a partial frame is left for the next read.
func scan(b []byte, onFrame func(header byte, body []byte)) int {
	off := 0
	for {
		n, ok := frameLen(b[off:])
		if !ok {
			return off
		}
		h := b[off]
		// The body starts after the header byte and the remaining length's bytes.
		bodyStart := off + 2
		for b[bodyStart-1]&128 != 0 {
			bodyStart++
		}
		onFrame(h, b[bodyStart:off+n])
		off += n
	}
}

// conn is one MQTT connection of the generator.
type conn struct {
	c         *net.TCPConn
	closed    atomic.Bool
	bytesRead atomic.Uint64
	// rest: bytes read after CONNACK with the CONNACK (handed to the read loop).
	rest []byte
	wmu  sync.Mutex
}

// write sends bytes, serialised so that frames from different goroutines never interleave.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(b)
	return err
}

// dialMQTT opens a TCP connection to host:port, sends CONNECT and waits for CONNACK 0.
func dialMQTT(host string, port int, clientID string, keepalive int, timeout time.Duration) (*conn, error) {
	deadline := time.Now().Add(timeout)
	// No TCP keep-alive (Go's default would add three setsockopt calls to every connect; MQTT
	// has its own keep-alive, and the Node generator sets none either).
	d := net.Dialer{Deadline: deadline, KeepAlive: -1}
	nc, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("CONNECT %s: %w", clientID, err)
	}
	tc := nc.(*net.TCPConn) // Nagle is off: Go sets TCP_NODELAY on every TCP connection
	_ = tc.SetDeadline(deadline)
	c := &conn{c: tc}
	if _, err := tc.Write(connectPacket(clientID, keepalive)); err != nil {
		tc.Close()
		return nil, fmt.Errorf("CONNECT %s: %w", clientID, err)
	}
	buf := make([]byte, 0, 64)
	tmp := make([]byte, 64)
	for {
		n, err := tc.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if l, ok := frameLen(buf); ok {
			// Anything after the first frame belongs to the read loop.
			c.rest = append([]byte{}, buf[l:]...)
			if err = checkConnack(buf[:l]); err == nil {
				_ = tc.SetDeadline(time.Time{})
				return c, nil
			}
			tc.Close()
			return nil, fmt.Errorf("CONNECT %s: %w", clientID, err)
		}
		if err != nil {
			tc.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("CONNECT %s: no CONNACK in %d ms", clientID, timeout.Milliseconds())
			}
			return nil, fmt.Errorf("CONNECT %s: closed (%v)", clientID, err)
		}
	}
}

// checkConnack decodes the first frame a client got (with paho's packets): nil for CONNACK 0.
func checkConnack(frame []byte) error {
	p, err := packets.ReadPacket(bytes.NewReader(frame))
	ack, isAck := p.(*packets.ConnackPacket)
	switch {
	case err != nil:
		return err
	case !isAck:
		return fmt.Errorf("packet type %d before CONNACK", frame[0]>>4)
	case ack.ReturnCode != 0:
		return fmt.Errorf("CONNACK %d", ack.ReturnCode)
	}
	return nil
}

// stillOpen: the peer has not closed the connection (a non-blocking peek, no bytes consumed).
func (c *conn) stillOpen() bool {
	raw, err := c.c.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	_ = raw.Read(func(fd uintptr) bool {
		open = rawStillOpen(int(fd))
		return true // never wait for readiness
	})
	return open
}

// emitEvent writes {"event": name, ...fields} as one line (the harness samples CPU at these).
func emitEvent(name string, fields map[string]any) {
	out := map[string]any{"event": name}
	for k, v := range fields {
		out[k] = v
	}
	if err := emit(out); err != nil {
		fmt.Fprintln(os.Stderr, "mqgw-loadgen: stdout:", err)
		os.Exit(1)
	}
}

// stdinLines delivers stdin's lines ("start", "release" from the harness); started once.
var stdinLines = sync.OnceValue(func() <-chan string {
	ch := make(chan string, 8)
	go func() {
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			ch <- s.Text()
		}
		close(ch)
	}()
	return ch
})

// waitLine waits (at most d) for a stdin line equal to want; false on timeout or end of input.
func waitLine(want string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-stdinLines():
			if !ok {
				return false
			}
			if line == want {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// parseJob reads the job: the first argument, or stdin's first line when the argument is "-".
func parseJob(args []string, job any) error {
	if len(args) < 1 {
		return errors.New("a job (JSON) is needed as the first argument")
	}
	text := args[0]
	if text == "-" {
		line, ok := <-stdinLines()
		if !ok {
			return errors.New("no job on stdin")
		}
		text = line
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(job); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	return nil
}

// hardLimit ends the process (exit 2) after ms, as the Node generator's timeLimitMs does.
func hardLimit(ms int) {
	if ms <= 0 {
		ms = 120000
	}
	time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		fmt.Fprintf(os.Stderr, "mqgw-loadgen: time limit %d ms reached\n", ms)
		os.Exit(2)
	})
}
