package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

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
	// ProtocolErrors counts connections libzmq dropped for a protocol
	// error (a message over WithMaxMessageSize, a peer that does not speak
	// ZMTP) and zmqkit made again (see ErrConnectionDropped).
	ProtocolErrors uint64
}

type counters struct {
	sent, received, malformed, handlerErrors, handlerPanics, dropped, protocolErrors atomic.Uint64
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
	c, err := dial(eps)
	if err != nil {
		return endpointError(err)
	}
	b.conn, b.done = c, c.Done()
	if err := zctx.register(self); err != nil {
		_ = c.Close() // the Context closed meanwhile
		return err
	}
	b.o.logger.Debug("zmqkit: open", "kind", k, "endpoints", c.Endpoints())
	return nil
}

// openSocket is open for the types on one zsock socket, which cfg describes
// (its type, wait and extra options); it returns the socket.
func (b *base) openSocket(self closer, k kind, endpoints string, defaultBind bool, opts []Option, cfg zsock.Config) (*zsock.Socket, error) {
	var sock *zsock.Socket
	err := b.open(self, k, endpoints, defaultBind, opts, func(eps []endpoint.Endpoint) (conn, error) {
		cfg.Options = append(b.o.socketOptions(), cfg.Options...)
		cfg.Endpoints = eps
		if b.o.maxMsgSize > 0 && hasConnect(eps) {
			// An oversize message makes libzmq drop the connection for good.
			cfg.Redial, cfg.OnRedial = true, b.redialed
		}
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
		b.closeErr = b.conn.Close()
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
		b.stats.malformed.Add(1)
		return nil, malformed(fe.First, fe, "message of %d frames, want 1", fe.Frames)
	}
	return msg, err
}

// redialed counts and reports a connection zsock made again after libzmq
// dropped it for a protocol error.
func (b *base) redialed(ep string) {
	b.report(&OpError{Kind: b.kind.String(), Op: "receive", Endpoint: ep,
		Err: fmt.Errorf("%w (a message over WithMaxMessageSize, or a peer that does not speak ZMTP); connecting again", ErrConnectionDropped)})
	b.stats.protocolErrors.Add(1)
}

func hasConnect(eps []endpoint.Endpoint) bool {
	for _, ep := range eps {
		if !ep.Bind {
			return true
		}
	}
	return false
}

// report sends an asynchronous failure to the error callback and the log.
func (b *base) report(err error) {
	b.o.logger.Warn("zmqkit: "+b.kind.String(), "err", err)
	if b.o.onError != nil {
		b.o.onError(err)
	}
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
