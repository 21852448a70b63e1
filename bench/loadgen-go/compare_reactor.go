package main

// Raw sockets and one epoll loop for the connections that only read (subscribers) and for idle
// connects. Measured against Mosquitto in fan-out, Go's net package cost the generator more CPU
// per delivery than Mosquitto spent producing it (about 11 vs 10 µs): every delivery arrived in
// its own read, and each read was a goroutine wake-up, read(), a second read() that returns
// EAGAIN, and a park. Here one goroutine waits in epoll_wait for all subscribers (level-
// triggered) and makes one read() per ready socket; connects are four blocking syscalls
// (socket, connect, write, read) instead of the Dialer's non-blocking dance.

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rawDial connects to host:port with blocking syscalls, sends CONNECT, waits for CONNACK 0
// (SO_RCVTIMEO bounds the wait) and returns the socket, blocking, with any bytes read after CONNACK.
func rawDial(host string, port int, clientID string, keepalive int, timeout time.Duration) (int, []byte, error) {
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return -1, nil, fmt.Errorf("CONNECT %s: %q is not an IPv4 address", clientID, host)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("CONNECT %s: socket: %w", clientID, err)
	}
	fail := func(what string, err error) (int, []byte, error) {
		syscall.Close(fd)
		return -1, nil, fmt.Errorf("CONNECT %s: %s%w", clientID, what, err)
	}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	// Bounds connect, the write and the CONNACK read (EAGAIN when it passes).
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	sa := &syscall.SockaddrInet4{Port: port}
	copy(sa.Addr[:], ip)
	if err := syscall.Connect(fd, sa); err != nil {
		return fail("", err)
	}
	if _, err := syscall.Write(fd, connectPacket(clientID, keepalive)); err != nil {
		return fail("", err)
	}
	var buf [256]byte
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			return fail("", fmt.Errorf("no CONNACK in %d ms", timeout.Milliseconds()))
		}
		if err != nil {
			return fail("", err)
		}
		if m == 0 {
			return fail("", errors.New("closed"))
		}
		n += m
		if l, ok := frameLen(buf[:n]); ok {
			if err := checkConnack(buf[:l]); err != nil {
				return fail("", err)
			}
			return fd, append([]byte{}, buf[l:n]...), nil
		}
		if n == len(buf) {
			return fail("", errors.New("no CONNACK"))
		}
	}
}

// rawStillOpen: the peer has not closed fd (a non-blocking peek).
func rawStillOpen(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n > 0 || errors.Is(err, syscall.EAGAIN)
}

// writeAll writes b to a non-blocking fd, waiting briefly on EAGAIN (small control packets).
func writeAll(fd int, b []byte) error {
	for deadline := time.Now().Add(10 * time.Second); len(b) > 0; {
		n, err := syscall.Write(fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil || errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Microsecond)
		default:
			return err
		}
	}
	return nil
}

// rx is the read side of a connection the reactor reads (its goroutine owns pending and got).
type rx struct {
	fd        int
	pending   []byte
	bytesRead atomic.Uint64
	closed    atomic.Bool
	// got: the last batch brought something afterRead acts on.
	got bool
}

func (r *rx) base() *rx { return r }

// reader is a subscriber or a publisher: frames go to onFrame, afterRead runs once per batch.
type reader interface {
	base() *rx
	onFrame(h byte, body []byte)
	afterRead()
}

// dupFd duplicates c's descriptor into *fd, for the reactor to read while Go's net package
// writes (a duplicate shares the socket; nothing calls Read on c, so the runtime's poller only
// sees readiness nobody waits for).
func dupFd(c *conn, fd *int) error {
	raw, err := c.c.SyscallConn()
	if err != nil {
		return err
	}
	var derr error
	if err := raw.Control(func(orig uintptr) { *fd, derr = syscall.Dup(int(orig)) }); err != nil {
		return err
	}
	return derr
}

// reactor reads every registered socket in one goroutine.
type reactor struct {
	epfd    int
	mu      sync.Mutex
	subs    map[int32]reader
	buf     []byte
	stopped chan struct{}
	done    chan struct{}
	// reads: read() calls so far (readsPerDelivery in the result).
	reads atomic.Uint64
	// pause after each batch of reads (0: none); see compare_fanout.go.
	pause time.Duration
}

func newReactor() (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r := &reactor{epfd: epfd, subs: map[int32]reader{}, buf: make([]byte, 256*1024), stopped: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r, nil
}

func (r *reactor) add(c reader) error {
	fd := c.base().fd
	if err := syscall.SetNonblock(fd, true); err != nil {
		return err
	}
	r.mu.Lock()
	r.subs[int32(fd)] = c
	r.mu.Unlock()
	return syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)})
}

func (r *reactor) loop() {
	defer close(r.done)
	events := make([]syscall.EpollEvent, 256)
	woken := make([]reader, 0, 256)
	for {
		select {
		case <-r.stopped:
			return
		default:
		}
		// A bounded wait, so that a stopped reactor ends.
		n, err := syscall.EpollWait(r.epfd, events, 50)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		r.mu.Lock()
		for _, ev := range events[:n] {
			c := r.subs[ev.Fd]
			if c == nil {
				continue
			}
			b := c.base()
			if !r.read(c, b) {
				delete(r.subs, ev.Fd)
				_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, b.fd, nil)
				b.closed.Store(true)
			}
			if b.got {
				woken = append(woken, c)
			}
		}
		r.mu.Unlock()
		// Replies and publisher wake-ups once per batch: the Node generator's microtask/setImmediate.
		for _, s := range woken {
			s.afterRead()
		}
		woken = woken[:0]
		if r.pause > 0 && n > 0 {
			time.Sleep(r.pause)
		}
	}
}

// read makes one read() of s into the shared buffer (after s's partial frame) and scans it;
// false when the socket is closed.
func (r *reactor) read(c reader, s *rx) bool {
	n := copy(r.buf, s.pending)
	if n == len(r.buf) {
		r.buf = append(r.buf, make([]byte, len(r.buf))...)
	}
	r.reads.Add(1)
	m, err := syscall.Read(s.fd, r.buf[n:])
	if err != nil {
		return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
	}
	if m == 0 {
		return false
	}
	s.bytesRead.Add(uint64(m))
	n += m
	used := scan(r.buf[:n], c.onFrame)
	s.pending = append(s.pending[:0], r.buf[used:n]...)
	return true
}

func (r *reactor) stop() {
	select {
	case <-r.stopped:
	default:
		close(r.stopped)
	}
}
