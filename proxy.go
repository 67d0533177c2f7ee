package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Proxy moves messages between two endpoints, as ZeroMQ's built-in
// proxies do, so that many peers meet at one address instead of knowing
// each other: a forwarder for pub/sub, a queue for request/reply, a
// streamer for pipelines. Publishers, subscribers, clients, servers,
// pushers and pullers reach a proxy with ">" endpoints, unchanged: an
// RRServer connecting to a queue's back end is one of its workers.
//
// Both endpoints bind by default ("@" and ">" as for every type), and may
// be lists. A Proxy is safe for concurrent use by multiple goroutines; Run
// it once. It adds no broker and keeps nothing: what ZeroMQ's proxies
// would lose (messages queued for a peer that leaves, a PUB's drops at its
// high-water mark), it loses too.
type Proxy struct {
	base
	kind    string // "forwarder", "queue", "streamer"
	front   *zsock.Socket
	back    *zsock.Socket
	both    bool // messages go back to the front too
	running atomic.Bool

	// A forwarder's subscriptions: its XPUB's incoming messages, read by
	// the reactor (zsock's Incoming), not by a receive parked on the back
	// (see forwardSubscriptions).
	subs *subscriptionQueue
	// moved is signalled after each message a forwarder sends to the back.
	moved chan struct{}

	toBack, toFront counters
}

// ProxyStats are a Proxy's counters, by direction: Received counts what it
// took from one side, Sent what it gave the other, Dropped what it took
// and could not give (the proxy was closed meanwhile).
type ProxyStats struct {
	FrontToBack Stats
	BackToFront Stats
	// Connections holds the connection counters of both sides together
	// (AuthFailures, ProtocolErrors, and with WithEvents Connects,
	// Disconnects, HandshakeFailures, Peers, EventsDropped); its message
	// counters stay zero: messages are counted per direction above.
	Connections Stats
}

// NewForwarder returns a pub/sub forwarder: an XSUB at front, where
// publishers connect, and an XPUB at back, where subscribers connect.
// Messages go front to back; subscriptions go back to front, so that each
// publisher sends only what some subscriber wants. A Publisher upstream
// sees the forwarder as one subscriber per filter (WaitForSubscribers
// counts it once).
func NewForwarder(front, back string, opts ...Option) (*Proxy, error) {
	return newProxy("forwarder", zmq.XSUB, zmq.XPUB, front, back, true, opts)
}

// subscriptionQueue holds the subscriptions a forwarder's XPUB received,
// in order, until Run passes them to the front. It grows only while Run is
// not running, by what subscribers send meanwhile (libzmq would queue the
// same).
type subscriptionQueue struct {
	mu    sync.Mutex
	msgs  [][][]byte
	ready chan struct{} // signalled on push
}

// push is the back socket's Incoming: called under its lock, it must be
// quick and must not call the socket.
func (q *subscriptionQueue) push(msg [][]byte) {
	q.mu.Lock()
	q.msgs = append(q.msgs, msg)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *subscriptionQueue) take() [][][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}

// NewQueue returns a request/reply queue: a ROUTER at front, where clients
// (RRClient, REQ) connect, and a DEALER at back, where servers (RRServer,
// REP) connect as workers. Requests are dealt to the workers in turn, and
// each reply returns to the client that asked.
func NewQueue(front, back string, opts ...Option) (*Proxy, error) {
	return newProxy("queue", zmq.ROUTER, zmq.DEALER, front, back, true, opts)
}

// NewStreamer returns a pipeline streamer: a PULL at front, where pushers
// connect, and a PUSH at back, where pullers connect. Messages go front to
// back, dealt to the pullers in turn; when no puller can take one, the
// streamer waits and its pushers' queues fill, as a PUSH does.
func NewStreamer(front, back string, opts ...Option) (*Proxy, error) {
	return newProxy("streamer", zmq.PULL, zmq.PUSH, front, back, false, opts)
}

func newProxy(kind string, ft, bt zmq.Type, front, back string, both bool, opts []Option) (*Proxy, error) {
	p := &Proxy{kind: kind, both: both}
	if bt == zmq.XPUB {
		p.subs = &subscriptionQueue{ready: make(chan struct{}, 1)}
		p.moved = make(chan struct{}, 1)
	}
	backEps, err := endpoint.Parse(back, true)
	if err != nil {
		return nil, err
	}
	err = p.open(p, kindProxy, front, true, opts, func(frontEps []endpoint.Endpoint) (conn, error) {
		cfg := func(t zmq.Type, eps []endpoint.Endpoint) zsock.Config {
			cfg := zsock.Config{Type: t, Options: p.o.socketOptions(), Endpoints: eps, Monitor: p.monitor(nil)}
			cfg.Redial, cfg.OnRedial = p.redial()
			return cfg
		}
		var err error
		if p.front, err = p.zctx.newSocket(cfg(ft, frontEps)); err != nil {
			return nil, err
		}
		bcfg := cfg(bt, backEps)
		if p.subs != nil {
			bcfg.Incoming = p.subs.push
		}
		if p.back, err = p.zctx.newSocket(bcfg); err != nil {
			_ = p.front.Close()
			return nil, err
		}
		return proxyConn{p.front, p.back}, nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// proxyConn is a Proxy's two sockets as one conn.
type proxyConn struct{ front, back *zsock.Socket }

func (c proxyConn) Endpoints() []string {
	return append(c.front.Endpoints(), c.back.Endpoints()...)
}

func (c proxyConn) Attach(endpoint.Endpoint) error {
	return errors.New("zmqkit: a proxy's endpoints are fixed when it is made")
}

func (c proxyConn) Done() <-chan struct{} { return c.front.Done() }
func (c proxyConn) Waiters() int          { return c.front.Waiters() + c.back.Waiters() }
func (c proxyConn) Close() error          { return errors.Join(c.front.Close(), c.back.Close()) }

// WithCapture has a Proxy call f with every message it moves, before it
// moves it: toBack tells the direction. f runs on the proxy's goroutine
// for that direction, so a slow f slows the proxy; it must neither keep
// nor change frames. A panic in f is recovered and reported, and the
// message still moves.
//
// Applies to: Proxy.
func WithCapture(f func(toBack bool, frames [][]byte)) Option {
	return option("WithCapture", func(o *options) error {
		if f == nil {
			return invalid("WithCapture", "nil func")
		}
		o.capture = f
		return nil
	})
}

// Run moves messages until ctx ends (returning an error matching ctx's) or
// the Proxy is closed (returning ErrClosed), and returns once it has
// stopped moving them. A message taken from one side when Run stops is
// given to the other if it can be within the linger time, or dropped and
// counted.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return p.opError("run", invalidArg("the %s is running already", p.kind))
	}
	defer p.running.Store(false)
	runCtx, release := p.runContext(ctx)
	defer release()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	move := func(src, dst *zsock.Socket, toBack bool, c *counters) {
		defer wg.Done()
		errc <- p.move(runCtx, src, dst, toBack, c)
	}
	wg.Add(1)
	go move(p.front, p.back, true, &p.toBack)
	switch {
	case p.subs != nil:
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- p.forwardSubscriptions(runCtx)
		}()
	case p.both:
		wg.Add(1)
		go move(p.back, p.front, false, &p.toFront)
	}
	wg.Wait()
	close(errc)
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// moveBatch is how many messages a Proxy moves in one call at most: a
// batch holds both sockets' locks.
const moveBatch = 256

// move is one direction of Run: receive a whole message from src, show it
// to the capture, send it whole to dst. Without a capture the messages
// move inside libzmq (moveDirect).
func (p *Proxy) move(ctx context.Context, src, dst *zsock.Socket, toBack bool, c *counters) error {
	if p.o.capture == nil {
		return p.moveDirect(ctx, src, dst, toBack, c)
	}
	for {
		msg, err := src.RecvMessage(ctx)
		if err != nil {
			if stopped(ctx, err) {
				return nil
			}
			return p.opError("receive", err)
		}
		c.received.Add(1)
		if p.o.capture != nil {
			p.capture(toBack, msg)
		}
		sctx, cancel := p.replyContext(ctx)
		err = dst.SendMessage(sctx, msg...)
		cancel()
		if err != nil {
			c.dropped.Add(1)
			if stopped(sctx, err) {
				return nil
			}
			return p.opError("send", err)
		}
		c.sent.Add(1)
		if toBack {
			p.signalMoved()
		}
	}
}

// signalMoved tells a forwarder's forwardSubscriptions that messages went
// to the back (a no-op for the other proxies): see subscriptionCheck.
func (p *Proxy) signalMoved() {
	if p.moved == nil {
		return
	}
	select {
	case p.moved <- struct{}{}:
	default:
	}
}

// moveDirect is move without a capture: batches of whole messages go from
// src to dst in one call each, never copied (zsock.Mover), and the proxy
// waits only for the side that stopped a batch.
func (p *Proxy) moveDirect(ctx context.Context, src, dst *zsock.Socket, toBack bool, c *counters) (err error) {
	m := zsock.NewMover(src, dst)
	defer func() {
		if m.Close() { // taken, never given
			c.dropped.Add(1)
		}
	}()
	for {
		if ctx.Err() != nil {
			return p.flushHeld(ctx, m, dst, c)
		}
		res, err := m.Move(moveBatch)
		c.received.Add(uint64(res.Taken))
		c.sent.Add(uint64(res.Sent))
		c.dropped.Add(uint64(res.Dropped))
		if res.Sent > 0 && toBack {
			p.signalMoved()
		}
		if err != nil {
			if stopped(ctx, err) {
				return nil
			}
			op := "receive"
			if res.Dropped > 0 || m.Held() {
				op = "send"
			}
			return p.opError(op, err)
		}
		switch res.Blocked {
		case zsock.SrcEmpty:
			err = src.Wait(ctx, true, false)
		case zsock.DstFull:
			err = dst.Wait(ctx, false, true)
		}
		if err != nil && !stopped(ctx, err) {
			return p.opError("wait", err)
		}
	}
}

// flushHeld gives the message m holds, if any, to dst within the linger
// time once ctx has ended (see Run); what it cannot give, moveDirect counts
// dropped.
func (p *Proxy) flushHeld(ctx context.Context, m *zsock.Mover, dst *zsock.Socket, c *counters) error {
	sctx, cancel := p.replyContext(ctx)
	defer cancel()
	for m.Held() {
		res, err := m.Move(0)
		c.sent.Add(uint64(res.Sent))
		c.dropped.Add(uint64(res.Dropped))
		if err != nil || !m.Held() {
			return nil
		}
		if err := dst.Wait(sctx, false, true); err != nil {
			return nil
		}
	}
	return nil
}

// subscriptionCheck is how long after a forwarder sent to the back its
// XPUB is checked for subscriptions that no edge announced.
const subscriptionCheck = 5 * time.Millisecond

// forwardSubscriptions is a forwarder's back-to-front direction: it passes
// the subscriptions queued by the back's Incoming to the front, in order.
//
// A receive parked on the back would make every message sent there pay a
// ZMQ_EVENTS read (zsock checks for the waiter whether the send took its
// signal): a quarter of the forwarder's throughput. The reactor reads the
// back's subscriptions instead, when its ZMQ_FD fires. A send processes
// libzmq's commands too, now and then, and may so take that signal before
// the reactor sees it; so once messages move, the back is also read here,
// subscriptionCheck later, and again as long as they keep moving.
func (p *Proxy) forwardSubscriptions(ctx context.Context) error {
	timer := time.NewTimer(subscriptionCheck)
	timer.Stop()
	defer timer.Stop()
	var check <-chan time.Time // armed: a check is due
	moved := p.moved           // nil while armed
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.subs.ready:
		case <-moved:
			timer.Reset(subscriptionCheck)
			check, moved = timer.C, nil
			continue
		case <-check:
			check, moved = nil, p.moved
			err := p.back.Do(func(z *zmq.Socket) error {
				for {
					msg, err := z.RecvMessageBytes(zmq.DONTWAIT)
					if err != nil {
						return nil // EAGAIN: nothing (more) there
					}
					p.subs.push(msg)
				}
			})
			if err != nil {
				if stopped(ctx, err) {
					return nil
				}
				return p.opError("receive", err)
			}
		}
		for _, msg := range p.subs.take() {
			p.toFront.received.Add(1)
			if p.o.capture != nil {
				p.capture(false, msg)
			}
			sctx, cancel := p.replyContext(ctx)
			err := p.front.SendMessage(sctx, msg...)
			cancel()
			if err != nil {
				p.toFront.dropped.Add(1)
				if stopped(sctx, err) {
					return nil
				}
				return p.opError("send", err)
			}
			p.toFront.sent.Add(1)
		}
	}
}

func (p *Proxy) capture(toBack bool, msg [][]byte) {
	defer func() {
		if r := recover(); r != nil {
			p.report(&HandlerError{Err: fmt.Errorf("capture panicked: %v", r), Panic: r})
		}
	}()
	p.o.capture(toBack, msg)
}

// Endpoints returns the front's endpoints, then the back's, bound ones
// with their ephemeral ports resolved.
func (p *Proxy) Endpoints() []string { return p.conn.Endpoints() }

// Front returns the front's endpoints; Back the back's.
func (p *Proxy) Front() []string { return p.front.Endpoints() }

// Back returns the back's endpoints.
func (p *Proxy) Back() []string { return p.back.Endpoints() }

// Stats returns the Proxy's counters, by direction.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{FrontToBack: p.toBack.snapshot(), BackToFront: p.toFront.snapshot(), Connections: p.stats.snapshot()}
}

// Close closes both sides at once: Run returns ErrClosed, and messages it
// had taken but not given are dropped and counted. Close is idempotent.
func (p *Proxy) Close() error { return p.close(p) }
