package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Stats are an object's counters since it was created.
type Stats struct {
	Sent          uint64 // messages handed to libzmq
	Received      uint64 // messages taken from libzmq, malformed ones included
	Malformed     uint64 // frames that failed to decode
	HandlerErrors uint64 // handler calls that returned an error or panicked
	HandlerPanics uint64 // handler calls that panicked (also in HandlerErrors)
	Dropped       uint64 // messages discarded (late replies, say)
	// ProtocolErrors counts connections the object made that libzmq
	// dropped for a protocol error (a message over WithMaxMessageSize, a
	// peer that does not speak ZMTP) and zmqkit made again (see
	// ErrConnectionDropped).
	ProtocolErrors uint64
	// AuthFailures counts CURVE connections refused: on a server, clients
	// its policy denied and handshakes that failed (a plain client, a
	// wrong server key); on a client, refusals and failed handshakes.
	AuthFailures uint64

	// Connection counters, kept when the object has WithEvents (they come
	// from libzmq's socket monitor; inproc connections have none).
	Connects          uint64 // connections accepted or made
	Disconnects       uint64 // connections ended
	HandshakeFailures uint64 // connections whose handshake failed
	Peers             int64  // connections open now
	EventsDropped     uint64 // events the WithEvents callback fell too far behind to get
}

type counters struct {
	sent, received, malformed, handlerErrors, handlerPanics, dropped, protocolErrors, authFailures atomic.Uint64
	connects, disconnects, handshakeFailures, eventsDropped                                        atomic.Uint64
	peers                                                                                          atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Sent:          c.sent.Load(),
		Received:      c.received.Load(),
		Malformed:     c.malformed.Load(),
		HandlerErrors: c.handlerErrors.Load(),
		HandlerPanics: c.handlerPanics.Load(),
		Dropped:       c.dropped.Load(),

		ProtocolErrors: c.protocolErrors.Load(),
		AuthFailures:   c.authFailures.Load(),

		Connects:          c.connects.Load(),
		Disconnects:       c.disconnects.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		Peers:             c.peers.Load(),
		EventsDropped:     c.eventsDropped.Load(),
	}
}

// base is what every zmqkit object is made of: its options, its Context,
// its connection and its counters. The exported types embed it.
type base struct {
	kind  kind
	o     options
	zctx  *Context
	conn  conn            // never nil once the object is made
	done  <-chan struct{} // closed when the object closes
	stats counters
	zap   *zapHandler   // a CURVE server's Context's, with o.zapDomain
	ev    *eventMonitor // with WithEvents
	ready atomic.Bool   // conn is set (for goroutines that may run before)

	closeOnce sync.Once
	closeErr  error
}

// conn is what an object is connected through: a zsock socket, or a pair
// link that replaces its socket when the peer restarts. The data
// operations stay on the concrete types, where they cost no interface
// call.
type conn interface {
	Endpoints() []string
	Attach(endpoint.Endpoint) error
	Done() <-chan struct{}
	Waiters() int // calls waiting now; tests end calls that really blocked
	Close() error
}

// open applies the options for kind k, parses the endpoints, resolves the
// Context, makes the object's connection with dial and registers self, the
// exported object, on the Context, which closes it if it is still open
// when the Context closes.
func (b *base) open(self closer, k kind, endpoints string, defaultBind bool, opts []Option, dial func([]endpoint.Endpoint) (conn, error)) error {
	o, err := applyOptions(k, opts)
	if err != nil {
		return err
	}
	eps, err := endpoint.Parse(endpoints, defaultBind)
	if err != nil {
		return err
	}
	zctx := o.zctx
	if zctx == nil {
		if zctx, err = DefaultContext(); err != nil {
			return err
		}
	}
	b.kind, b.o, b.zctx = k, o, zctx
	if c := o.curve; c != nil && c.server {
		// The handler runs before the socket exists: without one, libzmq
		// would admit any client.
		if b.zap, err = zctx.zapHandler(); err != nil {
			return err
		}
		b.o.zapDomain = b.zap.register(&zapDomain{policy: c.policy, deny: b.denied})
	}
	if o.onEvent != nil {
		b.ev = newEventMonitor(b, o.onEvent)
	}
	c, err := dial(eps)
	if err != nil {
		b.unregisterZAP()
		b.stopEvents()
		return endpointError(err)
	}
	b.conn, b.done = c, c.Done()
	b.ready.Store(true)
	if err := zctx.register(self); err != nil {
		_ = c.Close() // the Context closed meanwhile
		b.unregisterZAP()
		b.stopEvents()
		return err
	}
	b.o.logger.Debug("zmqkit: open", "kind", k, "endpoints", c.Endpoints())
	return nil
}

// openSocket is open for the types on one zsock socket, which mk describes
// (its type, wait, extra options and monitor), once the options are
// applied (b.o); it returns the socket.
func (b *base) openSocket(self closer, k kind, endpoints string, defaultBind bool, opts []Option, mk func() zsock.Config) (*zsock.Socket, error) {
	var sock *zsock.Socket
	err := b.open(self, k, endpoints, defaultBind, opts, func(eps []endpoint.Endpoint) (conn, error) {
		cfg := mk()
		cfg.Options = append(b.o.socketOptions(), cfg.Options...)
		cfg.Endpoints = eps
		cfg.Monitor = b.monitor(cfg.Monitor)
		cfg.Redial, cfg.OnRedial = b.redial()
		var err error
		if sock, err = b.zctx.newSocket(cfg); err != nil {
			return nil, err
		}
		return sock, nil
	})
	return sock, err
}

func (b *base) close(self closer) error {
	b.closeOnce.Do(func() {
		b.closeErr = b.conn.Close() // stops the socket's monitor
		b.unregisterZAP()
		b.stopEvents()
		b.zctx.untrack(self)
		b.o.logger.Debug("zmqkit: closed", "kind", b.kind)
	})
	return b.closeErr
}

// addEndpoint binds or connects one more endpoint.
func (b *base) addEndpoint(ep string, defaultBind bool) error {
	e, err := endpoint.ParseOne(ep, defaultBind)
	if err != nil {
		return err
	}
	if err := b.conn.Attach(e); err != nil {
		return b.opError("add endpoint", endpointError(err))
	}
	return nil
}

// sendFrames sends frames as one message with send, counting it; the
// frame-sending verbs of every type (op names them in errors).
func (b *base) sendFrames(ctx context.Context, op string, frames [][]byte, send func(context.Context, [][]byte) error) error {
	if len(frames) == 0 {
		return b.opError(op, invalidArg("no frames to send"))
	}
	if err := send(ctx, frames); err != nil {
		return b.opError(op, err)
	}
	b.stats.sent.Add(1)
	return nil
}

// receiveFrames receives one whole message with recv, counting it.
func (b *base) receiveFrames(ctx context.Context, recv func(context.Context) ([][]byte, error)) ([][]byte, error) {
	frames, err := recv(ctx)
	if err != nil {
		return nil, b.opError("receive", err)
	}
	b.stats.received.Add(1)
	return frames, nil
}

// sockSend adapts a socket's SendMessage to sendFrames.
func sockSend(s *zsock.Socket) func(context.Context, [][]byte) error {
	return func(ctx context.Context, frames [][]byte) error { return s.SendMessage(ctx, frames...) }
}

// opError wraps a failed operation's error in an *OpError.
func (b *base) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Kind: b.kind.String(), Op: op, Err: err}
}

// single turns RecvBytes' *zsock.FramesError into a counted
// *MalformedError: single-frame patterns refuse multi-frame messages whole
// rather than pass on their first frame as if it were all.
func (b *base) single(msg []byte, err error) ([]byte, error) {
	if err == nil { // the hot path: errors.As would allocate for &fe
		return msg, nil
	}
	var fe *zsock.FramesError
	if errors.As(err, &fe) {
		b.stats.received.Add(1)
		return nil, b.multiFrame(fe)
	}
	return msg, err
}

// multiFrame counts a message of several frames that a single-frame
// pattern refused, and returns it as a *MalformedError.
func (b *base) multiFrame(fe *zsock.FramesError) error {
	b.stats.malformed.Add(1)
	return malformed(fe.First, fe, "message of %d frames, want 1", fe.Frames)
}

// MaxBatch is the most messages ReceiveBatch returns, and PushBatch and
// PublishBatch send, with one cgo call.
const MaxBatch = zsock.MaxBatch

// receiveBatch is the batch receive of the single-frame patterns: the
// well-formed messages ready, up to limit, waiting for the first. Messages of
// several frames are counted, reported and skipped, as Run does.
func (b *base) receiveBatch(ctx context.Context, sock *zsock.Socket, limit int) ([][]byte, error) {
	if limit < 1 {
		return nil, invalidArg("batch of %d messages", limit)
	}
	for {
		msgs, bad, err := sock.RecvBatch(ctx, limit)
		if err != nil {
			return nil, err
		}
		b.stats.received.Add(uint64(len(msgs) + len(bad)))
		for _, fe := range bad {
			b.report(b.opError("receive", b.multiFrame(fe)))
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
	}
}

// redial has zsock make again the connections libzmq drops for good: it
// never reconnects one it dropped for a protocol error (a message over
// WithMaxMessageSize, a peer that does not speak ZMTP, such as another
// service on the port before the real one, or a CURVE client's failed
// handshake). zsock watches every tcp or ipc endpoint an object connects,
// from its constructor or AddEndpoint, with a libzmq monitor started at the
// first (inproc has no protocol to fail).
func (b *base) redial() (bool, func(string, bool)) { return true, b.redialed }

// redialed counts and reports a connection zsock made again after libzmq
// dropped it for a protocol error; a failed handshake was reported as an
// AuthError already.
func (b *base) redialed(ep string, handshakeFailed bool) {
	if handshakeFailed && b.o.curve != nil { // reported by securityMonitor
		b.o.logger.Debug("zmqkit: connecting again after a failed handshake", "kind", b.kind, "endpoint", ep)
		return
	}
	b.report(&OpError{Kind: b.kind.String(), Op: "receive", Endpoint: ep,
		Err: fmt.Errorf("%w (a message over WithMaxMessageSize, or a peer that does not speak ZMTP); connecting again", ErrConnectionDropped)})
	b.stats.protocolErrors.Add(1)
}

// securityMonitor watches a CURVE object's handshakes (nil for a plain
// one): each failure is counted and reported as an *AuthError. A server
// leaves its ZAP denials to the handler, which knows who was denied.
func (b *base) securityMonitor() *zsock.Monitor {
	c := b.o.curve
	if c == nil {
		return nil
	}
	events := zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
	if !c.server {
		events |= zmq.EVENT_HANDSHAKE_FAILED_AUTH
	}
	return &zsock.Monitor{Events: events, On: func(ev zsock.Event) {
		b.stats.authFailures.Add(1)
		b.report(&AuthError{Endpoint: ev.Endpoint, Reason: handshakeFailure(ev, c.server)})
	}}
}

// handshakeFailure says why a CURVE handshake failed, in the words of the
// side that saw it.
func handshakeFailure(ev zsock.Event, server bool) string {
	switch {
	case ev.Kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		return fmt.Sprintf("the server refused this client (ZAP status %d)", ev.Value)
	case ev.Value == 0x11000002: // ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
		if server {
			return "handshake failed: the client does not use CURVE"
		}
		return "handshake failed: the server does not use CURVE"
	case ev.Value == 0x11000001, ev.Value == 0x10000003: // CRYPTOGRAPHIC, KEY_EXCHANGE
		if server {
			return "handshake failed: the client's keys do not fit (a wrong server key?)"
		}
		return "handshake failed: the server's key is not the one given"
	case ev.Kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
		return fmt.Sprintf("handshake failed: protocol error %#x", ev.Value)
	}
	return fmt.Sprintf("handshake failed (errno %d)", ev.Value)
}

// monitor is what one of the object's sockets is monitored with: the
// socket's own needs (own, from pairlink), the CURVE handshakes and the
// connection events, those that apply; nil for none.
func (b *base) monitor(own *zsock.Monitor) *zsock.Monitor {
	m := joinMonitors(own, b.securityMonitor())
	if b.ev != nil {
		m = joinMonitors(m, b.ev.monitor())
	}
	return m
}

func (b *base) stopEvents() {
	if b.ev != nil {
		b.ev.stop()
	}
}

// denied counts and reports a client the ZAP handler refused.
func (b *base) denied(address, publicKey, reason string) {
	b.stats.authFailures.Add(1)
	ep := ""
	if b.ready.Load() { // the handler may ask while the socket binds
		ep = strings.Join(b.conn.Endpoints(), ",")
	}
	b.report(&AuthError{Endpoint: ep, PeerAddress: address, PublicKey: publicKey, Reason: "client refused: " + reason})
}

func (b *base) unregisterZAP() {
	if b.zap != nil && b.o.zapDomain != "" {
		b.zap.unregister(b.o.zapDomain)
	}
}

// report sends an asynchronous failure to the error callback and the log.
func (b *base) report(err error) {
	b.o.logger.Warn("zmqkit: "+b.kind.String(), "err", err)
	if b.o.onError == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			b.o.logger.Error("zmqkit: the error callback panicked", "kind", b.kind, "panic", r, "err", err)
		}
	}()
	b.o.onError(err)
}

// call runs a handler, turning a panic into a *HandlerError, counting and
// reporting failures. It returns the handler's error (or the panic's).
func (b *base) call(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			b.stats.handlerPanics.Add(1)
			err = &HandlerError{Err: fmt.Errorf("panic: %v", r), Panic: r, Stack: debug.Stack()}
		}
		if err != nil {
			b.stats.handlerErrors.Add(1)
			var he *HandlerError
			if !errors.As(err, &he) {
				err = &HandlerError{Err: err}
			}
			b.report(err)
		}
	}()
	return f()
}

// runContext returns a context that ends when ctx ends or the object closes,
// with the function that releases it (and joins its helper goroutine).
func (b *base) runContext(ctx context.Context) (context.Context, func()) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-b.done:
			cancel()
		case <-runCtx.Done():
		}
	}()
	return runCtx, func() { cancel(); <-done }
}

// stopped reports whether err means a serve loop should end.
func stopped(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrClosed)
}
