package zmqkit

import (
	"errors"
	"fmt"
	"sync"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Context is a libzmq context together with the zmqkit objects on it.
// inproc:// endpoints reach only objects on the same Context. A Context is
// safe for concurrent use.
//
// Most programs never make one: objects created without WithContext share a
// process-wide default context, made on first use. Make your own to isolate a
// group of objects (a test, a plugin) or to close them all at once.
type Context struct {
	zctx *zmq.Context

	mu     sync.RWMutex // construction holds it for reading, Close for writing
	closed bool
	omu    sync.Mutex // guards objs
	objs   map[closer]struct{}

	closeOnce sync.Once
	closeErr  error
}

type closer interface{ Close() error }

// NewContext creates a libzmq context. Close it when done: its Close closes
// every object still open on it.
func NewContext() (*Context, error) {
	z, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmqkit: new context: %w", err)
	}
	// libzmq's default of 1023 sockets is low for a process-wide context.
	if err := z.SetMaxSockets(8192); err != nil {
		_ = z.Term() // no socket exists yet, so Term cannot block
		return nil, fmt.Errorf("zmqkit: new context: %w", err)
	}
	return &Context{zctx: z, objs: map[closer]struct{}{}}, nil
}

var defaultContext struct {
	mu sync.Mutex
	c  *Context
}

// DefaultContext returns the process-wide context that objects use unless
// given WithContext, creating it on first use. Closing it closes every
// object on it; the next object made without WithContext then gets a new
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
		var errs []error
		for _, o := range objs {
			if err := o.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := c.zctx.Term(); err != nil {
			errs = append(errs, fmt.Errorf("zmqkit: terminate context: %w", err))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// newSocket creates a socket, under the read lock, so that Close never
// terminates libzmq while a socket is being made, and never after: a
// socket made on a terminated libzmq context would be a use after free.
func (c *Context) newSocket(typ zmq.Type, o *options, eps []endpoint.Endpoint, extra ...zsock.Option) (*zsock.Socket, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	return zsock.New(c.zctx, typ, append(o.socketOptions(), extra...), eps)
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
