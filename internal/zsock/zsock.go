// Package zsock is zmqkit's one mechanism for owning a libzmq socket.
//
// A libzmq socket must never be used by two threads at once. zsock keeps
// every socket behind a mutex and only ever performs brief, non-blocking
// (ZMQ_DONTWAIT) operations while holding it, so the lock is never held
// across a wait. A goroutine that has to wait — nothing to receive, or the
// high-water mark reached on send — parks on a Go channel instead, selecting
// on its own context, the socket's closing and that channel.
//
// The channel is closed by a watcher goroutine that sits in Go's netpoller on
// a duplicate of the socket's ZMQ_FD. libzmq signals that descriptor whenever
// the socket's ZMQ_EVENTS may have changed; the descriptor is edge triggered,
// so the waiter takes its wait channel before it retries the operation, and
// any edge after the retry began wakes it. Cancellation therefore needs no
// wake-up socket and no time-out: it is a Go select. A blocked call holds no
// OS thread and no lock, so one goroutine may send while another waits to
// receive on the same socket (full duplex), and Close never waits for a peer.
package zsock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

// ErrClosed is returned by every operation on a closed socket. The root
// package re-exports it as zmqkit.ErrClosed.
var ErrClosed = errors.New("zmqkit: closed")

// Option sets one socket option before the first bind or connect. Name is
// used in error messages.
type Option struct {
	Name string
	Set  func(*zmq.Socket) error

	blocking bool // see Blocking
}

// Socket is a libzmq socket that many goroutines may use at once.
type Socket struct {
	mu     sync.Mutex // guards sock, bound, conns and closed
	sock   *zmq.Socket
	typ    zmq.Type
	closed bool
	bound  []string // endpoints really bound (ephemeral ports resolved)
	conns  []string // endpoints connected
	recv   receiver
	sc     scratch // the one-call multi-frame paths' buffer

	done      chan struct{} // closed by Close: waiters return ErrClosed
	closeOnce sync.Once

	// Readiness notification.
	watchOnce sync.Once
	watchErr  error
	fdFile    *os.File // dup of ZMQ_FD, registered in Go's netpoller
	stopWatch atomic.Bool
	watchDone chan struct{}

	nmu   sync.Mutex
	ready chan struct{} // closed when ZMQ_FD fires; nil when nobody waits

	// Goroutines in attempt's wait loop, and the ZMQ_EVENTS last seen
	// (guarded by mu): see observe.
	waiting atomic.Int32
	lastEv  zmq.State
	// Waiters parked on the wait channel now (tests must know a waiter
	// has parked).
	parked atomic.Int32

	blk blocking // the wait of a socket made with Blocking
}

// New creates a socket of type typ on zctx, applies opts, then binds or
// connects every endpoint in eps. On error nothing is left open.
func New(zctx *zmq.Context, typ zmq.Type, opts []Option, eps []endpoint.Endpoint) (*Socket, error) {
	sock, err := zctx.NewSocket(typ)
	if err != nil {
		if sock != nil {
			_ = sock.Close() // NewSocket on a terminated context returns both
		}
		if errors.Is(err, zmq.ETERM) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("zmqkit: new %s socket: %w", typ, err)
	}
	s := &Socket{sock: sock, typ: typ, done: make(chan struct{}), recv: newReceiver(sock)}
	fail := func(err error) (*Socket, error) {
		_ = sock.SetLinger(0) // best effort: the socket never carried a message
		_ = sock.Close()
		s.recv.free()
		return nil, err
	}
	for _, o := range opts {
		if o.blocking {
			s.blk.on = true
			continue
		}
		if err := o.Set(sock); err != nil {
			return fail(fmt.Errorf("zmqkit: set %s: %w", o.Name, err))
		}
	}
	if s.blk.on {
		if err := s.openBlocking(); err != nil {
			return fail(err)
		}
	}
	for _, ep := range eps {
		if err := s.attachLocked(ep); err != nil {
			s.closeBlocking()
			return fail(err)
		}
	}
	return s, nil
}

// attachLocked binds or connects one endpoint. Callers hold mu or own s
// exclusively.
func (s *Socket) attachLocked(ep endpoint.Endpoint) error {
	if ep.Bind {
		if err := s.sock.Bind(ep.Addr); err != nil {
			return &endpoint.Error{Op: "bind", Endpoint: ep.Addr, Err: err}
		}
		real, err := s.sock.GetLastEndpoint()
		if err != nil || real == "" {
			real = ep.Addr
		}
		s.bound = append(s.bound, real)
		return nil
	}
	if err := s.sock.Connect(ep.Addr); err != nil {
		return &endpoint.Error{Op: "connect", Endpoint: ep.Addr, Err: err}
	}
	s.conns = append(s.conns, ep.Addr)
	return nil
}

// Attach binds or connects one more endpoint on an open socket.
func (s *Socket) Attach(ep endpoint.Endpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.attachLocked(ep)
}

// Endpoints returns the endpoints bound (with ephemeral ports resolved)
// followed by the endpoints connected.
func (s *Socket) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.bound)+len(s.conns))
	out = append(out, s.bound...)
	return append(out, s.conns...)
}

// Bound returns the endpoints the socket really bound.
func (s *Socket) Bound() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bound...)
}

// Do runs f with exclusive use of the libzmq socket, for options that may be
// changed after connecting (SUBSCRIBE, say). f must not block. Like any
// operation, f may process libzmq's pending commands, so the waiters are
// then checked (see observe).
func (s *Socket) Do(f func(*zmq.Socket) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	err := f(s.sock)
	if s.waiting.Load() > 0 {
		s.observeNow(false)
	}
	return err
}

// Waiters reports how many calls are parked waiting on the socket. Tests
// use it to end a call that really blocked, not one that had not started.
func (s *Socket) Waiters() int { return int(s.waiting.Load()) }

// Done is closed when the socket is closed.
func (s *Socket) Done() <-chan struct{} { return s.done }

func isAgain(err error) bool { return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) }

// SendBytes sends one frame (more marks it as not the last of a message),
// waiting while the socket cannot take it until ctx ends or the socket closes.
func (s *Socket) SendBytes(ctx context.Context, b []byte, more bool) error {
	flags := zmq.DONTWAIT
	if more {
		flags |= zmq.SNDMORE
	}
	return s.attempt(ctx, sending, func(z *zmq.Socket) error {
		_, err := z.SendBytes(b, flags)
		return err
	})
}

// SendMessage sends a multi-frame message atomically: libzmq accepts all
// frames once it has accepted the first.
func (s *Socket) SendMessage(ctx context.Context, parts ...[]byte) error {
	if len(parts) == 0 {
		return errors.New("zmqkit: empty message")
	}
	return s.attempt(ctx, sending, func(z *zmq.Socket) error {
		if s.recv.raw != nil {
			if ok, err := s.recv.sendMessage(&s.sc, parts); ok {
				return err
			}
		}
		last := len(parts) - 1
		for i, p := range parts {
			var err error
			if s.recv.raw != nil {
				err = s.recv.sendFrame(p, i < last)
			} else { // pebbe retries signals too
				_, err = z.SendBytes(p, zmq.DONTWAIT|moreIf(i < last))
			}
			switch {
			case err == nil:
			case i == 0:
				return err
			default: // libzmq takes a whole message once it took its first frame
				return fmt.Errorf("zmqkit: send frame %d of %d: %w", i+1, last+1, err)
			}
		}
		return nil
	})
}

func moreIf(more bool) zmq.Flag {
	if more {
		return zmq.SNDMORE
	}
	return 0
}

// RecvBytes receives a single-frame message, waiting until one arrives,
// ctx ends or the socket closes. A message of several frames is discarded
// whole and reported as a *FramesError.
func (s *Socket) RecvBytes(ctx context.Context) ([]byte, error) {
	var out []byte
	err := s.attempt(ctx, receiving, func(z *zmq.Socket) error {
		b, more, err := s.recv.recvFrame(z)
		if err != nil || !more {
			out = b
			return err
		}
		// A multi-frame message where one frame was expected: take it all
		// (the rest is there once the first frame is) and refuse it whole.
		fe := &FramesError{Frames: 1, First: b}
		for more && err == nil {
			_, more, err = s.recv.recvFrame(z)
			fe.Frames++
		}
		if err != nil {
			return err
		}
		return fe
	})
	return out, err
}

// FramesError is RecvBytes' error for a message of several frames: the
// whole message was discarded, none of it is returned.
type FramesError struct {
	Frames int    // how many frames the message had
	First  []byte // its first frame
}

func (e *FramesError) Error() string {
	return fmt.Sprintf("zmqkit: message of %d frames where one was expected", e.Frames)
}

// RecvMessage receives every frame of one message.
func (s *Socket) RecvMessage(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	err := s.attempt(ctx, receiving, func(z *zmq.Socket) error {
		if s.recv.raw != nil {
			var err error
			out, err = s.recv.recvMessage(&s.sc, z)
			return err
		}
		b, more, err := s.recv.recvFrame(z)
		if err != nil {
			return err
		}
		out = append(out[:0], b)
		// The rest of a message is there once its first frame is.
		for more {
			if b, more, err = s.recv.recvFrame(z); err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// dir tells try whether an operation sends or receives.
type dir bool

const (
	sending   dir = true
	receiving dir = false
)

// attempt runs op under the lock until it does not fail with EAGAIN,
// parking between tries until the socket's events may have changed.
func (s *Socket) attempt(ctx context.Context, d dir, op func(*zmq.Socket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.blk.on {
		return s.attemptBlocking(ctx, d, op)
	}
	// Fast path: no wait channel, no watcher.
	again, _, err := s.try(op, d, 0, false)
	if !again {
		return err
	}
	if err := s.startWatch(); err != nil {
		return err
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	for {
		// Take the channel before retrying: an edge that comes after the
		// retry began closes this channel, so no wake-up is lost.
		ready := s.waitChan()
		again, hot, err := s.try(op, d, 1, false)
		if !again {
			return err
		}
		if hot {
			ready = s.backoff() // libzmq contradicts itself: do not spin
		}
		if err := s.park(ctx, ready); err != nil {
			return err
		}
	}
}

// park waits on ready, ctx and the socket's closing.
func (s *Socket) park(ctx context.Context, ready <-chan struct{}) error {
	s.parked.Add(1)
	defer s.parked.Add(-1)
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// try runs op under the lock; again reports that it failed with EAGAIN.
// self is 1 when the caller is one of the waiters counted in s.waiting,
// and poller tells that it holds a Blocking socket's poller role. hot
// reports that libzmq says the socket is ready for op even though op
// failed, so the caller must not wait for an edge.
func (s *Socket) try(op func(*zmq.Socket) error, d dir, self int32, poller bool) (again, hot bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, false, ErrClosed
	}
	err = op(s.sock)
	switch {
	case isAgain(err) && d == receiving && s.blk.on:
		// A non-blocking receive that finds nothing has processed every
		// pending command first, so the next one will signal ZMQ_FD and
		// a poll(2) on it cannot miss the message.
		if s.waiting.Load() > self {
			s.observeNow(poller)
		}
	case isAgain(err):
		// Reading ZMQ_EVENTS processes every pending libzmq command and
		// records the events this caller waits on (see observe). A command
		// it processed (a peer's message or pipe arrived) may have taken
		// the ZMQ_FD signal that would have woken this caller, so when
		// the events say op can go, retry now. A non-blocking send needs
		// this: it processes commands only now and then (throttled).
		want := zmq.POLLIN
		if d == sending {
			want = zmq.POLLOUT
		}
		for i := 0; i < 2 && isAgain(err); i++ {
			ev, eerr := s.sock.GetEvents()
			if eerr != nil {
				break
			}
			s.observe(ev, poller)
			if hot = ev&want != 0; !hot {
				break
			}
			err = op(s.sock)
		}
	case err == nil && s.waiting.Load() > self:
		// Check for the other waiters whether op changed the events.
		s.observeNow(poller)
	}
	s.mu.Unlock()
	switch {
	case err == nil:
		return false, false, nil
	case isAgain(err):
		return true, hot, err
	case errors.Is(err, zmq.ETERM):
		return false, false, ErrClosed
	}
	return false, false, err
}

// observe wakes the waiters when the socket's readiness changed. Any
// operation processes libzmq's pending commands, including those that let
// another goroutine's operation go (a receive consuming the peer's
// "activate write" a blocked sender waits for, in full duplex); the edge on
// ZMQ_FD for that command has then come and gone. Waking only on a change
// keeps two blocked goroutines from waking each other forever. A Blocking
// socket has its own rule (blocking.observe). mu is held.
func (s *Socket) observe(ev zmq.State, poller bool) {
	if s.blk.on {
		s.blk.observe(s, ev, poller)
		return
	}
	if ev == s.lastEv {
		return
	}
	s.lastEv = ev
	if s.waiting.Load() > 0 {
		s.notifyChans()
	}
}

// backoff is the wait channel of a try that found libzmq's events ready
// yet op failed: no edge may come, so retry after a millisecond.
func (s *Socket) backoff() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(time.Millisecond, func() { close(ch) })
	return ch
}

// observeNow reads ZMQ_EVENTS and observes them. mu is held.
func (s *Socket) observeNow(poller bool) {
	if ev, err := s.sock.GetEvents(); err == nil {
		s.observe(ev, poller)
	}
}

func (s *Socket) waitChan() <-chan struct{} {
	s.nmu.Lock()
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
	ch := s.ready
	s.nmu.Unlock()
	return ch
}

// notify wakes every waiter: those parked on the wait channel and, on a
// Blocking socket, the one in poll(2).
func (s *Socket) notify() {
	s.notifyChans()
	if s.blk.busy.Load() {
		s.blk.wake()
	}
}

// notifyChans wakes the waiters parked on the wait channel.
func (s *Socket) notifyChans() {
	s.nmu.Lock()
	if s.ready != nil {
		close(s.ready)
		s.ready = nil
	}
	s.nmu.Unlock()
}

// startWatch starts, once, the goroutine that turns ZMQ_FD edges into
// notifications. Sockets that never wait (a PUB) never start one.
func (s *Socket) startWatch() error {
	s.watchOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			s.watchErr = ErrClosed
			return
		}
		fd, err := s.sock.GetFd()
		if err != nil {
			s.watchErr = fmt.Errorf("zmqkit: get ZMQ_FD: %w", err)
			return
		}
		dup, err := syscall.Dup(fd)
		if err != nil {
			s.watchErr = fmt.Errorf("zmqkit: dup ZMQ_FD: %w", err)
			return
		}
		syscall.CloseOnExec(dup)
		// libzmq's signaller descriptor is non-blocking, so os.NewFile
		// registers the duplicate with the netpoller; the check below
		// proves it did.
		f := os.NewFile(uintptr(dup), "zmq-fd")
		if err := f.SetReadDeadline(time.Time{}); err != nil {
			_ = f.Close()
			s.watchErr = fmt.Errorf("zmqkit: ZMQ_FD is not pollable: %w", err)
			return
		}
		rc, err := f.SyscallConn()
		if err != nil {
			_ = f.Close()
			s.watchErr = fmt.Errorf("zmqkit: ZMQ_FD: %w", err)
			return
		}
		s.fdFile = f
		s.watchDone = make(chan struct{})
		go s.watch(rc)
	})
	return s.watchErr
}

func (s *Socket) watch(rc syscall.RawConn) {
	defer close(s.watchDone)
	// One RawRead for the watcher's whole life: leaving and re-entering it
	// would reset the netpoller's ready flag and could drop an edge.
	_ = rc.Read(func(uintptr) bool {
		if s.stopWatch.Load() {
			return true
		}
		s.notify()
		return false // wait for the next edge
	})
}

// Close closes the socket with its configured linger. Blocked callers return
// ErrClosed at once. Close is idempotent and safe from any goroutine.
func (s *Socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true // no operation starts from now on
		s.mu.Unlock()
		close(s.done) // waiters return
		s.closeBlocking()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fdFile != nil {
			s.stopWatch.Store(true)
			// An expired deadline wakes the watcher out of the netpoller.
			_ = s.fdFile.SetReadDeadline(time.Unix(1, 0))
			<-s.watchDone
			_ = s.fdFile.Close()
		}
		err = s.sock.Close()
		s.recv.free()
	})
	return err
}
