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

// base is what every zmqkit object is made of: its options, its context, its
// socket and its counters. The exported types embed it and forward to it.
type base struct {
	kind  string // "publisher", ... for errors and logs
	o     options
	zctx  *Context
	sock  *zsock.Socket
	done  <-chan struct{} // closed when the object closes
	stats counters

	closeOnce sync.Once
	closeErr  error
}

// init parses endpoints, resolves the context and opens the socket that
// cfg describes (its type, wait and extra options). self is the exported
// object, which the Context closes if it is still open when the Context
// closes.
func (b *base) init(self closer, kind string, cfg zsock.Config, endpoints string, defaultBind bool, opts []Option) error {
	eps, err := b.prepare(kind, endpoints, defaultBind, opts)
	if err != nil {
		return err
	}
	cfg.Options = append(b.o.socketOptions(), cfg.Options...)
	cfg.Endpoints = eps
	if b.o.maxMsgSize > 0 && hasConnect(eps) {
		// An oversize message makes libzmq drop the connection for good.
		cfg.Redial, cfg.OnRedial = true, b.redialed
	}
	if b.sock, err = b.zctx.newSocket(cfg); err != nil {
		return err
	}
	b.done = b.sock.Done()
	if err := b.zctx.register(self); err != nil {
		_ = b.sock.Close() // the Context closed meanwhile
		return err
	}
	b.o.logger.Debug("zmqkit: open", "kind", kind, "endpoints", b.sock.Endpoints())
	return nil
}

// prepare applies the options, parses the endpoints and resolves the
// Context: everything before a socket is made.
func (b *base) prepare(kind, endpoints string, defaultBind bool, opts []Option) ([]endpoint.Endpoint, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	eps, err := endpoint.Parse(endpoints, defaultBind)
	if err != nil {
		return nil, err
	}
	zctx := o.zctx
	if zctx == nil {
		if zctx, err = DefaultContext(); err != nil {
			return nil, err
		}
	}
	b.kind, b.o, b.zctx = kind, o, zctx
	return eps, nil
}

func (b *base) close(self closer) error {
	b.closeOnce.Do(func() {
		b.closeErr = b.sock.Close()
		b.zctx.untrack(self)
		b.o.logger.Debug("zmqkit: closed", "kind", b.kind)
	})
	return b.closeErr
}

// wrap adds the operation to libzmq errors; ctx errors, ErrClosed and
// malformed frames (which describe themselves) stay as they are.
func (b *base) wrap(op string, err error) error {
	if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrMalformed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("zmqkit: %s %s: %w", b.kind, op, err)
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
	b.report(fmt.Errorf("%w: %s (a message over WithMaxMessageSize, or a peer that does not speak ZMTP); connecting again", ErrConnectionDropped, ep))
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
	b.o.logger.Warn("zmqkit: "+b.kind, "err", err)
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
