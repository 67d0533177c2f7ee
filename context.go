package zmqkit

import (
	"errors"
	"sync"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Context is a libzmq context together with the zmqkit objects on it.
// inproc:// endpoints reach only objects on the same Context. A Context is
// safe for concurrent use.
//
// Most programs never make one: objects created without WithZMQContext share a
// process-wide default context, made on first use. Make your own to isolate a
// group of objects (a test, a plugin) or to close them all at once.
type Context struct {
	zc *zsock.Context

	mu     sync.RWMutex // construction holds it for reading, Close for writing
	closed bool
	omu    sync.Mutex // guards objs
	objs   map[closer]struct{}

	zapMu sync.Mutex
	zap   *zapHandler // started for the first CURVE server; see zap.go

	closeOnce sync.Once
	closeErr  error
}

type closer interface{ Close() error }

// NewContext creates a libzmq context. Close it when done: its Close closes
// every object still open on it.
func NewContext(opts ...ContextOption) (*Context, error) {
	o := contextOptions{maxSockets: DefaultMaxSockets}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	zc, err := zsock.NewContext(o.maxSockets)
	if err != nil {
		return nil, err
	}
	return &Context{zc: zc, objs: map[closer]struct{}{}}, nil
}

// DefaultMaxSockets is a Context's socket limit unless WithMaxSockets says
// otherwise: room for 10,000 objects of any type (a PairServer or
// PairClient over tcp or ipc uses three libzmq sockets, every other object
// one). Each socket also takes a file descriptor, so the process's
// descriptor limit (ulimit -n) may bind first.
const DefaultMaxSockets = zsock.DefaultMaxSockets

// ErrSocketLimit is wrapped by the error a constructor returns when its
// Context's socket limit (WithMaxSockets) is reached.
var ErrSocketLimit = zsock.ErrSocketLimit

// ContextOption configures a Context at NewContext.
type ContextOption func(*contextOptions) error

type contextOptions struct {
	maxSockets int
}

// WithMaxSockets sets how many libzmq sockets the Context may hold at once
// (ZMQ_MAX_SOCKETS). Default DefaultMaxSockets.
func WithMaxSockets(n int) ContextOption {
	return func(o *contextOptions) error {
		if n < 1 || n > maxSocketsLimit {
			return invalid("WithMaxSockets", "%d is not between 1 and %d", n, maxSocketsLimit)
		}
		o.maxSockets = n
		return nil
	}
}

// maxSocketsLimit bounds WithMaxSockets: libzmq allocates a slot per
// socket up front.
const maxSocketsLimit = 1 << 20

var defaultContext struct {
	mu sync.Mutex
	c  *Context
}

// DefaultContext returns the process-wide context that objects use unless
// given WithZMQContext, creating it on first use. Closing it closes every
// object on it; the next object made without WithZMQContext then gets a new
// default context.
func DefaultContext() (*Context, error) {
	defaultContext.mu.Lock()
	defer defaultContext.mu.Unlock()
	if c := defaultContext.c; c != nil && !c.isClosed() {
		return c, nil
	}
	c, err := NewContext()
	if err != nil {
		return nil, err
	}
	defaultContext.c = c
	return c, nil
}

func (c *Context) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// Close closes every object still open on the context (their blocked calls
// return ErrClosed), then terminates the libzmq context. Because every
// zmqkit socket has a bounded linger (WithLinger, 200 ms by default), Close
// returns within that time even when messages wait for peers that never
// came. Close is idempotent.
func (c *Context) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.omu.Lock()
		objs := make([]closer, 0, len(c.objs))
		for o := range c.objs {
			objs = append(objs, o)
		}
		c.omu.Unlock()
		errs := closeAll(objs)
		// The ZAP handler stops after the last secured socket closed:
		// libzmq admits any client while none is bound.
		c.zapMu.Lock()
		if c.zap != nil {
			c.zap.stop()
		}
		c.zapMu.Unlock()
		if err := c.zc.Term(); err != nil {
			errs = append(errs, err)
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// closeAll closes objs, up to closers at once: an object's Close waits
// for libzmq to report its listeners closed, and one after the other
// those waits add up.
func closeAll(objs []closer) []error {
	const closers = 64
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, closers)
	)
	for _, o := range objs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := o.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// newSocket creates a socket; after Close it fails with ErrClosed.
func (c *Context) newSocket(cfg zsock.Config) (*zsock.Socket, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	return zsock.New(c.zc, cfg) // ErrClosed too once libzmq's context is terminating
}

// register puts a fully built object on the context, so Close closes it;
// after Close it fails with ErrClosed and the caller closes the object
// itself. An object is therefore on the context whole or not at all (a
// socket it made meanwhile only delays Close's termination of libzmq
// until the caller has closed it).
func (c *Context) register(obj closer) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	c.omu.Lock()
	c.objs[obj] = struct{}{}
	c.omu.Unlock()
	return nil
}

func (c *Context) untrack(obj closer) {
	c.omu.Lock()
	delete(c.objs, obj)
	c.omu.Unlock()
}

// zapHandler returns the Context's ZAP handler, starting it on first use.
func (c *Context) zapHandler() (*zapHandler, error) {
	c.mu.RLock() // Close stops the handler only after marking c closed
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.zapMu.Lock()
	defer c.zapMu.Unlock()
	if c.zap == nil {
		h, err := startZAP(c.zc)
		if err != nil {
			return nil, err
		}
		c.zap = h
	}
	return c.zap, nil
}
