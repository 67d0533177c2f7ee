// Package zsock is zmqkit's one mechanism for owning a libzmq socket:
// frames in, frames out, safe for many goroutines, every wait ending by ctx
// or Close. It knows nothing of msgids or patterns.
//
// A libzmq socket must never be used by two threads at once. zsock keeps
// every socket behind a mutex and only ever performs brief, non-blocking
// (ZMQ_DONTWAIT) operations while holding it, so the lock is never held
// across a wait, one goroutine may send while another waits to receive on
// the same socket (full duplex), and Close never waits for a peer.
//
// A call that finds the socket not ready waits in one of two ways, chosen
// when the socket is made (Config.Wait):
//
//   - Netpoller: the call parks on a Go channel, selecting on its ctx and
//     the socket's closing too. The Context's reactor (one epoll instance
//     in Go's netpoller and one goroutine for all its sockets) closes the
//     channel when the socket's ZMQ_FD fires. A waiting call holds no OS
//     thread; cancellation is a Go select.
//   - Blocking: one waiting goroutine per socket, the poller, blocks in
//     poll(2) on ZMQ_FD and a wake-up pipe, holding its OS thread; the
//     others park on the channel. ctx, Close and other goroutines'
//     operations write the pipe. A thread blocked in poll(2) runs on as
//     soon as the kernel wakes it, where a netpoller wake-up goes through
//     the Go scheduler twice, so request/reply, whose latency is two such
//     wake-ups, uses it.
//
// libzmq signals ZMQ_FD when a socket's events may have changed; the
// signal is an edge, so a waiter takes its wait channel before it retries
// the operation and any edge after the retry began wakes it. Any operation
// also processes the socket's pending libzmq commands and may so consume
// the signal another goroutine waits for; every operation made while
// others wait therefore reads ZMQ_EVENTS and wakes them when the events
// say they may go (observe).
//
// When nobody waits, the reactor processes the commands of a socket whose
// ZMQ_FD fires itself (pump): libzmq acts on commands only inside calls on
// the socket, and an idle socket must still let its inproc peers close.
package zsock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// Wait is how a call that finds the socket not ready waits.
type Wait int

const (
	// Netpoller parks waiting calls on a channel woken by the Context's
	// reactor: no OS thread held.
	Netpoller Wait = iota
	// Blocking has one waiting call block in poll(2): the lowest latency,
	// one OS thread held while a call waits.
	Blocking
	// Adaptive is Blocking whose waits start on the channel, woken by
	// the reactor, and go on in poll(2) after adaptiveNet: short waits
	// (a busy stream) as Netpoller, long ones (a paced one) as Blocking.
	Adaptive
)

// Option sets one socket option before the first bind or connect. Name is
// used in error messages.
type Option struct {
	Name string
	Set  func(*zmq.Socket) error
}

// Config describes a socket to make.
type Config struct {
	Type      zmq.Type
	Wait      Wait
	Options   []Option            // applied in order, before any endpoint
	Endpoints []endpoint.Endpoint // bound or connected in order
	// Monitor, when not nil, receives the socket's libzmq events from the
	// first bind or connect on (see Monitor).
	Monitor *Monitor
	// Redial makes connections that libzmq gave up on be made again:
	// libzmq does not reconnect after a protocol error (a message over
	// ZMQ_MAXMSGSIZE, a peer that does not speak ZMTP), so such a
	// connection would stay down for good. It watches every tcp or ipc
	// endpoint the socket connects, from New or Attach, with a monitor
	// started at the first (inproc has no protocol to fail; a peer that
	// connected to the socket reconnects by itself). OnRedial, if set, is called
	// with the endpoint each time (from the monitor's goroutine), and
	// whether the connection had failed its handshake (rather than, say,
	// received a message over ZMQ_MAXMSGSIZE).
	Redial   bool
	OnRedial func(endpoint string, handshakeFailed bool)
	// Incoming, for a socket whose callers only send (an XPUB, whose
	// incoming messages are subscriptions), takes the messages that
	// arrive: the reactor reads them when it processes the socket's
	// commands, within pumpDelay of their arrival even while the socket is
	// busy, and hands each to Incoming under the socket's lock (it must
	// be quick, and must not call the socket).
	Incoming func(msg [][]byte)
}

// Socket is a libzmq socket that many goroutines may use at once.
type Socket struct {
	zc     *Context
	seq    uint64     // unique: orders the locking of a Mover's two sockets
	mu     sync.Mutex // guards sock, closed, bound, conns, recv, sc and batch
	sock   *zmq.Socket
	typ    zmq.Type
	closed bool
	bound  []string // endpoints really bound (ephemeral ports resolved)
	tmpIPC []string // those bound as ipc://*: libzmq removes their files on close
	conns  []string // endpoints connected
	// endpoints Detach disconnected (and not connected since): a redial
	// must not take another connection for one of them.
	detached map[string]bool
	recv     receiver
	sc       scratch // the one-call multi-frame paths' buffer
	batch    batch   // RecvBatch's and SendBatch's buffer
	w        waiter
	mon      *monitor           // nil unless monitored
	in       func(msg [][]byte) // Config.Incoming

	done      chan struct{} // closed by Close: waiters return ErrClosed
	closeOnce sync.Once
	closeErr  error

	// Config.Redial and OnRedial, for a monitor Attach starts; guarded by
	// mu, like monStarting (such a start is under way).
	redialOn    bool
	onRedial    func(endpoint string, handshakeFailed bool)
	monStarting bool

	rid uint64 // the reactor's key for the socket
	rfd int    // ZMQ_FD, as the reactor watches it

	// The wait channel: closed, and replaced, when waiters should retry.
	nmu   sync.Mutex
	ready chan struct{}

	// Goroutines in a wait loop (tests must know a waiter has parked), and
	// those parked on the wait channel now.
	waiting atomic.Int32
	parked  atomic.Int32

	// Set by Interrupt, taken by Wait.
	interrupted atomic.Bool

	// The pump (see edge): operations run so far, as the reactor last saw
	// them, and whether a delayed pump is pending.
	ops       atomic.Uint64
	seenOps   atomic.Uint64
	pumpTimer atomic.Bool
}

// New creates a socket on zc, applies cfg's options, then binds or
// connects every endpoint. On error nothing is left open.
func New(zc *Context, cfg Config) (*Socket, error) {
	zc.mu.RLock()
	defer zc.mu.RUnlock()
	return newLocked(zc, cfg)
}

// newLocked is New for a caller that holds zc.mu for reading: libzmq's
// context must not begin terminating while a socket is made, or it may
// miss a pending inproc connection and wait for it forever.
func newLocked(zc *Context, cfg Config) (*Socket, error) {
	sock, err := zc.newZMQSocket(cfg.Type)
	if err != nil {
		return nil, err
	}
	s := &Socket{zc: zc, seq: moverSeq.Add(1), sock: sock, typ: cfg.Type, done: make(chan struct{}), recv: newReceiver(sock), in: cfg.Incoming}
	zc.sockets.Add(1)
	fail := func(err error) (*Socket, error) {
		if errors.Is(err, zmq.ETERM) {
			err = ErrClosed // the context began terminating meanwhile
		}
		s.mu.Lock() // the monitor's goroutine may be reading
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		if s.w != nil {
			s.w.close()
		}
		if s.rid != 0 {
			zc.r.remove(s)
		}
		s.stopMonitor()
		_ = sock.SetLinger(0) // best effort: the socket never carried a message
		_ = sock.Close()
		s.recv.free()
		zc.sockets.Add(-1)
		zc.release(1)
		return nil, err
	}
	for _, o := range cfg.Options {
		if err := o.Set(sock); err != nil {
			return fail(fmt.Errorf("zmqkit: set %s: %w", o.Name, err))
		}
	}
	fd, err := sock.GetFd()
	if err != nil {
		return fail(fmt.Errorf("zmqkit: get ZMQ_FD: %w", err))
	}
	switch cfg.Wait {
	case Netpoller:
		s.w = &netpoll{s: s}
	case Blocking, Adaptive:
		b, err := newBlocking(s, fd)
		if err != nil {
			return fail(err)
		}
		b.adaptive = cfg.Wait == Adaptive
		s.w = b
	default:
		return fail(fmt.Errorf("zmqkit: unknown wait %d", cfg.Wait))
	}
	s.redialOn, s.onRedial = cfg.Redial, cfg.OnRedial
	if cfg.Monitor != nil || cfg.Redial && slices.ContainsFunc(cfg.Endpoints, networkConnect) {
		if err := s.startMonitorLocked(cfg.Monitor, cfg.Redial, cfg.OnRedial); err != nil {
			return fail(err)
		}
	}
	if err := zc.r.add(s, fd); err != nil {
		return fail(err)
	}
	// Under mu: the monitor's goroutine, started above, reads the
	// endpoints.
	s.mu.Lock()
	for _, ep := range cfg.Endpoints {
		if err := s.attachLocked(ep); err != nil {
			s.mu.Unlock()
			return fail(err)
		}
	}
	s.mu.Unlock()
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
		if strings.HasPrefix(ep.Addr, "ipc://*") {
			s.tmpIPC = append(s.tmpIPC, real)
		}
		return nil
	}
	if err := s.sock.Connect(ep.Addr); err != nil {
		return &endpoint.Error{Op: "connect", Endpoint: ep.Addr, Err: err}
	}
	delete(s.detached, ep.Addr)
	s.conns = append(s.conns, ep.Addr)
	return nil
}

// Attach binds or connects one more endpoint on an open socket.
func (s *Socket) Attach(ep endpoint.Endpoint) error {
	s.zc.mu.RLock() // see newLocked
	defer s.zc.mu.RUnlock()
	if s.zc.term {
		return ErrClosed
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	// The socket's first connection to watch for Redial starts its
	// monitor, before it connects: a connection that fails at once (a
	// server that does not speak ZMTP) would otherwise be over, unseen,
	// before the monitor exists. The flag keeps a concurrent Attach from
	// starting another.
	watch := s.redialOn && s.mon == nil && !s.monStarting && networkConnect(ep)
	s.monStarting = s.monStarting || watch
	s.mu.Unlock()
	if watch {
		err := s.startMonitorLocked(nil, true, s.onRedial)
		s.mu.Lock()
		s.monStarting = false
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	err := s.attachLocked(ep)
	s.observeForWaiters() // libzmq's bind and connect process commands too
	return err
}

// Detach disconnects addr, which New or Attach connected: libzmq ends the
// connection and drops its queues, with the messages it received that were
// not yet read (read them first). A redial no longer makes it again.
// libzmq reports nothing of the connection it closes; the socket's monitor,
// if it asked for EVENT_DISCONNECTED, reports it instead (for the
// connections whose EVENT_CONNECTED it has seen).
func (s *Socket) Detach(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !slices.Contains(s.conns, addr) {
		return fmt.Errorf("zmqkit: %s is not connected", addr)
	}
	err := s.sock.Disconnect(addr)
	s.observeForWaiters()
	if errors.Is(err, zmq.ETERM) {
		return ErrClosed
	}
	if err != nil && zmq.AsErrno(err) != zmq.Errno(syscall.ENOENT) {
		return err
	}
	// libzmq made one connection however often addr was connected.
	s.conns = slices.DeleteFunc(s.conns, func(c string) bool { return c == addr })
	if s.detached == nil {
		s.detached = map[string]bool{}
	}
	s.detached[addr] = true
	if s.mon != nil {
		s.mon.detached(addr) // libzmq reports none of the connections it closed
	}
	return nil
}

// networkConnect reports whether ep connects over tcp or ipc.
func networkConnect(ep endpoint.Endpoint) bool {
	return !ep.Bind && (strings.HasPrefix(ep.Addr, "tcp://") || strings.HasPrefix(ep.Addr, "ipc://"))
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
	s.observeForWaiters()
	return err
}

// observeForWaiters, after an operation outside the wait loop (which may
// have processed the socket's commands and so taken ZMQ_FD's signal from
// a Blocking poller), wakes the waiters that can now go. mu is held.
func (s *Socket) observeForWaiters() {
	if s.waiting.Load() > 0 {
		s.observeNow(false)
	}
}

// Waiters reports how many calls are waiting on the socket. Tests use it
// to end a call that really blocked, not one that had not started.
func (s *Socket) Waiters() int { return int(s.waiting.Load()) }

// Done is closed when the socket is closed.
func (s *Socket) Done() <-chan struct{} { return s.done }

func isAgain(err error) bool { return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) }

// SendBytes sends one frame (more marks it as not the last of a message),
// waiting while the socket cannot take it until ctx ends or the socket closes.
func (s *Socket) SendBytes(ctx context.Context, b []byte, more bool) error {
	return s.attempt(ctx, sending, func(z *zmq.Socket) error { return s.sendFrame(z, b, more) })
}

// sendFrame sends one frame without waiting, through the one-call C path
// or pebbe's; mu is held.
func (s *Socket) sendFrame(z *zmq.Socket, b []byte, more bool) error {
	if s.recv.raw != nil {
		return s.recv.sendFrame(b, more)
	}
	_, err := z.SendBytes(b, zmq.DONTWAIT|moreIf(more))
	return err
}

// SendMessage sends a multi-frame message atomically: libzmq accepts all
// frames once it has accepted the first.
func (s *Socket) SendMessage(ctx context.Context, parts ...[]byte) error {
	if len(parts) == 0 {
		return errors.New("zmqkit: empty message")
	}
	return s.attempt(ctx, sending, func(z *zmq.Socket) error { return s.sendMessage(z, parts) })
}

// sendMessage sends parts without waiting; mu is held.
func (s *Socket) sendMessage(z *zmq.Socket, parts [][]byte) error {
	lb := s.typ == zmq.DEALER || s.typ == zmq.PUSH || s.typ == zmq.REQ
	if s.recv.raw != nil {
		if ok, err := s.recv.sendMessage(&s.sc, parts, lb); ok {
			return err
		}
	}
	last := len(parts) - 1
	for i, p := range parts {
		err := s.sendPart(z, p, i < last)
		switch {
		case err == nil:
		case i == 0:
			return err
		case lb && errors.Is(err, zmq.Errno(syscall.EAGAIN)):
			// The pipe died mid-message (see zk_sendm): let libzmq
			// drop the rest, and send the message again whole.
			for j := i; j < last; j++ {
				_ = s.sendPart(z, parts[j], true)
			}
			if i < last {
				_ = s.sendPart(z, parts[last], false)
			}
			return err
		default: // libzmq takes a whole message once it took its first frame
			return fmt.Errorf("zmqkit: send frame %d of %d: %w", i+1, last+1, err)
		}
	}
	return nil
}

// sendPart sends one frame without waiting; mu is held.
func (s *Socket) sendPart(z *zmq.Socket, p []byte, more bool) error {
	if s.recv.raw != nil {
		return s.recv.sendFrame(p, more)
	}
	_, err := z.SendBytes(p, zmq.DONTWAIT|moreIf(more)) // pebbe retries signals too
	return err
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
	return s.recvSingle(ctx, func(z *zmq.Socket) ([]byte, bool, error) { return s.recv.recvFrame(z) })
}

// RecvBytesAppend is RecvBytes appending the frame to dst and returning the
// extended slice: a frame that fits dst's spare capacity is received with
// no allocation. On error dst is returned unchanged.
func (s *Socket) RecvBytesAppend(ctx context.Context, dst []byte) ([]byte, error) {
	out, err := s.recvSingle(ctx, func(z *zmq.Socket) ([]byte, bool, error) { return s.recv.recvFrameAppend(z, dst) })
	if err != nil {
		var fe *FramesError
		if errors.As(err, &fe) && len(fe.First) >= len(dst) {
			fe.First = fe.First[len(dst):]
		}
		return dst, err
	}
	return out, nil
}

// recvSingle receives a single-frame message, whose first frame recv takes.
func (s *Socket) recvSingle(ctx context.Context, recv func(z *zmq.Socket) ([]byte, bool, error)) ([]byte, error) {
	var out []byte
	err := s.attempt(ctx, receiving, func(z *zmq.Socket) error {
		b, more, err := recv(z)
		if err != nil || !more {
			out = b
			return err
		}
		// A multi-frame message where one frame was expected: refuse it whole.
		fe, err := s.refuseRest(z, b)
		if err != nil {
			return err
		}
		return fe
	})
	return out, err
}

// refuseRest receives the rest of a message of several frames whose first
// frame was first (the rest is there once the first frame is), and returns
// the message refused whole, or the error of a receive. mu is held.
func (s *Socket) refuseRest(z *zmq.Socket, first []byte) (*FramesError, error) {
	fe := &FramesError{Frames: 1, First: first}
	for more := true; more; fe.Frames++ {
		var err error
		if _, more, err = s.recv.recvFrame(z); err != nil {
			return nil, err
		}
	}
	return fe, nil
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
		var err error
		out, err = s.recvMessage(z)
		return err
	})
	return out, err
}

// recvMessage receives one whole message without waiting; mu is held.
func (s *Socket) recvMessage(z *zmq.Socket) ([][]byte, error) {
	if s.recv.raw != nil {
		return s.recv.recvMessage(&s.sc, z)
	}
	b, more, err := s.recv.recvFrame(z)
	if err != nil {
		return nil, err
	}
	out := [][]byte{b}
	// The rest of a message is there once its first frame is.
	for more {
		if b, more, err = s.recv.recvFrame(z); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// dir tells try whether an operation sends or receives.
type dir bool

const (
	sending   dir = true
	receiving dir = false
)

// attempt runs op under the lock until it does not fail with EAGAIN,
// waiting between tries as the socket's waiter does. The loop is here, not
// in the waiter: op passed through an interface method would escape to the
// heap, with everything it captures, on every call.
func (s *Socket) attempt(ctx context.Context, d dir, op func(*zmq.Socket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st := s.w.enter()
	// Say what this call waits for before its first try: a Blocking poller
	// goes from that try straight into poll(2), and an operation of
	// another goroutine (or the reactor's pump) in between may take the
	// signal it would wait for; observe then wakes it only if it knows
	// what the poller wants.
	s.w.waitBegin(d)
	again, hot, err := s.try(op, d, 0, st.poller)
	if again {
		if h := testHookAfterFirstTry.Load(); h != nil {
			(*h)(s)
		}
		s.waiting.Add(1)
		for again {
			if st, err = s.w.block(ctx, st, hot); err != nil {
				break
			}
			again, hot, err = s.try(op, d, 1, st.poller)
		}
		s.waiting.Add(-1)
	}
	s.w.waitEnd(d)
	s.w.leave(st)
	return err
}

// testHookAfterFirstTry, nil outside tests, is called when a call's first
// try found the socket not ready, before it waits.
var testHookAfterFirstTry atomic.Pointer[func(*Socket)]

// waitState is one waiting call's state between its tries.
type waitState struct {
	poller bool // it holds a Blocking socket's poll(2) role
	// A Blocking call that gave the role up (yield) parks once on the wait
	// channel, for at most parkLimit if set, before it may take it again.
	parkOnce  bool
	parkLimit time.Duration
	netDone   bool            // an Adaptive call has had its channel wait
	ready     <-chan struct{} // the wait channel taken before the last try
}

// waiter is how calls on a socket wait for it to become ready: netpoll
// or blocking (see the package documentation). A call runs enter, then
// tries; while the try fails with EAGAIN it blocks and tries again, between
// waitBegin and waitEnd; then it runs leave.
type waiter interface {
	enter() waitState
	waitBegin(d dir)
	// block waits until a retry may succeed, ctx ends (its error) or the
	// socket closes (ErrClosed), and returns the state for the retry; hot
	// is the last try's (see try). (State goes by value: a pointer through
	// an interface would escape.)
	block(ctx context.Context, st waitState, hot bool) (waitState, error)
	waitEnd(d dir)
	leave(st waitState)
	// observe is given the socket's events, read after an operation, to
	// wake waiters whose readiness that operation may have consumed
	// (poller: the caller holds the poll(2) role). mu is held.
	observe(ev zmq.State, poller bool)
	// trustsEmptyRecv reports that a receive that found nothing needs no
	// ZMQ_EVENTS read (see try).
	trustsEmptyRecv() bool
	// edge is called by the reactor when ZMQ_FD fired while calls wait.
	edge()
	// interrupt wakes the waiters so that they retry (see Interrupt).
	interrupt()
	// close wakes every waiter for good and releases what the waiter
	// holds; closed is set and done closed already.
	close()
}

// parkRetry parks until a retry is worth it: ready fires, or, after a try
// that found libzmq's events ready yet failed (hot), a millisecond passes,
// as no edge may come then (libzmq contradicts itself: do not spin).
func (s *Socket) parkRetry(ctx context.Context, ready <-chan struct{}, hot bool) error {
	if hot {
		ready = backoff()
	}
	return s.park(ctx, ready)
}

// parkFor is park for at most d.
func (s *Socket) parkFor(ctx context.Context, ready <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	return s.parkOr(ctx, ready, t.C)
}

// park waits on ready, ctx and the socket's closing.
func (s *Socket) park(ctx context.Context, ready <-chan struct{}) error {
	return s.parkOr(ctx, ready, nil)
}

// parkOr is park that also returns when timeout fires (never, when nil).
func (s *Socket) parkOr(ctx context.Context, ready <-chan struct{}, timeout <-chan time.Time) error {
	s.parked.Add(1)
	defer s.parked.Add(-1)
	select {
	case <-ready:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
	return nil
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
	s.ops.Add(1)
	switch {
	case isAgain(err) && d == receiving && s.w.trustsEmptyRecv():
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
			ev, eerr := s.recv.events(s.sock)
			if eerr != nil {
				break
			}
			s.w.observe(ev, poller)
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

// observeNow reads ZMQ_EVENTS and observes them. mu is held.
func (s *Socket) observeNow(poller bool) {
	if ev, err := s.recv.events(s.sock); err == nil {
		s.w.observe(ev, poller)
	}
}

// edge is the reactor's call: ZMQ_FD fired. Waiters are woken to retry;
// with none, the commands are processed here (pump; see the package doc).
// A socket that ran operations since the last edge is busy: its own
// operations process the commands (a receive every few messages and
// whenever it finds nothing, a send every few milliseconds), so the pump is
// put off by pumpDelay rather than made to contend for the lock on every
// edge, which halved full-speed throughput.
func (s *Socket) edge() {
	if s.waiting.Load() > 0 {
		s.w.edge()
		return
	}
	if ops := s.ops.Load(); ops != s.seenOps.Swap(ops) {
		if s.pumpTimer.CompareAndSwap(false, true) {
			time.AfterFunc(pumpDelay, func() {
				s.pumpTimer.Store(false)
				s.pump()
			})
		}
		return
	}
	s.pump()
}

// pumpDelay is how long the pump of a busy socket is put off.
const pumpDelay = 5 * time.Millisecond

// pump processes the socket's pending libzmq commands (reading ZMQ_EVENTS
// does) and wakes waiters they let go.
func (s *Socket) pump() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.in == nil {
		s.observeNow(false)
		return
	}
	for {
		ev, err := s.recv.events(s.sock)
		if err != nil {
			return
		}
		s.w.observe(ev, false)
		if ev&zmq.POLLIN == 0 {
			return
		}
		msg, err := s.recvMessage(s.sock)
		if err != nil {
			return
		}
		s.in(msg)
	}
}

// backoff is the wait channel of a try that found libzmq's events ready
// yet op failed: no edge may come, so retry after a millisecond.
func backoff() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(time.Millisecond, func() { close(ch) })
	return ch
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

// notifyChans wakes the waiters parked on the wait channel.
func (s *Socket) notifyChans() {
	s.nmu.Lock()
	if s.ready != nil {
		close(s.ready)
		s.ready = nil
	}
	s.nmu.Unlock()
}

// Close closes the socket with its configured linger: libzmq goes on
// delivering what is queued, in the background, for up to that long.
// Blocked callers return ErrClosed at once. Before it returns, every
// address the socket bound is free again (inproc names at once, tcp and
// ipc once libzmq's I/O thread has closed the listener; bounded by
// closeWait). A monitor that asked for EVENT_CLOSED gets one for each tcp
// and ipc listener then, from Close (libzmq's own would come after the
// monitor has stopped). Close is idempotent and safe from any goroutine.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true // no operation starts from now on
		s.mu.Unlock()
		close(s.done) // waiters return
		s.w.close()
		listeners := s.unbindInproc()
		onClosed := s.closedEventsTo()
		s.stopMonitor()
		s.zc.r.remove(s)
		s.mu.Lock()
		s.closeErr = s.sock.Close()
		s.recv.free()
		s.zc.sockets.Add(-1)
		s.zc.release(1)
		s.mu.Unlock()
		s.awaitFree(listeners)
		if onClosed != nil {
			for _, ep := range listeners {
				onClosed(Event{Kind: zmq.EVENT_CLOSED, Value: -1, Endpoint: ep})
			}
		}
	})
	return s.closeErr
}

// TryRecvMessage receives one whole message if one is there now, without
// waiting; ok is false when none is.
func (s *Socket) TryRecvMessage() (msg [][]byte, ok bool, err error) {
	again, _, err := s.try(func(z *zmq.Socket) error {
		var err error
		msg, err = s.recvMessage(z)
		return err
	}, receiving, 0, false)
	if again {
		return nil, false, nil
	}
	return msg, err == nil, err
}

// Wait blocks until the socket is ready to receive (in) or to send (out),
// Interrupt is called, ctx ends (its error) or the socket closes
// (ErrClosed). It is for a goroutine that owns a socket's traffic (it
// alone sends and receives, with Try operations) and others that hand it
// work: they call Interrupt, and no operation of theirs can take the
// signal the owner waits for.
func (s *Socket) Wait(ctx context.Context, in, out bool) error {
	want := zmq.State(0)
	if in {
		want |= zmq.POLLIN
	}
	if out {
		want |= zmq.POLLOUT
	}
	d := receiving
	if !in {
		d = sending
	} else if out {
		// attempt says the call waits to receive; say it waits for room
		// too, or an operation of another goroutine (or the pump) that
		// takes the signal of room would not wake it (see attempt).
		s.w.waitBegin(sending)
		defer s.w.waitEnd(sending)
	}
	return s.attempt(ctx, d, func(*zmq.Socket) error {
		if s.interrupted.Swap(false) {
			return nil
		}
		ev, err := s.recv.events(s.sock)
		if err != nil {
			return err
		}
		if ev&want != 0 {
			return nil
		}
		return zmq.Errno(syscall.EAGAIN)
	})
}

// ErrInterrupted is RecvMessageOrInterrupt's error when Interrupt was
// called.
var ErrInterrupted = errors.New("zmqkit: interrupted")

// RecvMessageOrInterrupt is RecvMessage that also returns, with
// ErrInterrupted, when Interrupt is called (see Wait): for the goroutine
// that owns a socket's traffic, while it has nothing to send.
func (s *Socket) RecvMessageOrInterrupt(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	err := s.attempt(ctx, receiving, func(z *zmq.Socket) error {
		if s.interrupted.Swap(false) {
			return ErrInterrupted
		}
		var err error
		out, err = s.recvMessage(z)
		return err
	})
	return out, err
}

// Interrupt makes a Wait or RecvMessageOrInterrupt in progress, or the
// next one, return.
func (s *Socket) Interrupt() {
	s.interrupted.Store(true)
	// Not only when s.waiting says so: a poller counts itself only after
	// its first try, and would then poll(2) past the flag.
	s.w.interrupt()
}

// TrySendMessage sends a multi-frame message if the socket can take it
// now; ok is false when it cannot (nothing was sent).
func (s *Socket) TrySendMessage(parts ...[]byte) (ok bool, err error) {
	again, _, err := s.try(func(z *zmq.Socket) error { return s.sendMessage(z, parts) }, sending, 0, false)
	if again {
		return false, nil
	}
	return err == nil, err
}
