package main

// One epoll loop reads every connection of a flow mode (subscribers' deliveries, publishers'
// PUBACKs). Measured against Mosquitto in fan-out, Go's net package cost the generator more CPU
// per delivery than Mosquitto spent producing it (about 11 vs 10 µs): every delivery arrived in
// its own read, and each read was a goroutine wake-up, read(), a second read() that returns
// EAGAIN, and a park. Here one goroutine waits in epoll_wait for all of them (level-triggered)
// and makes one read() per ready socket. Connections are opened with Go's net package (its
// connect handles EINTR, which the runtime's preemption signals cause) and handed over as a
// duplicate descriptor.

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

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
