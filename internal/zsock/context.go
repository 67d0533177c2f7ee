package zsock

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	zmq "github.com/pebbe/zmq4"
)

// DefaultMaxSockets is the socket limit of a Context made with max 0. It
// leaves room for 10,000 objects of the costliest kind (a pair link holds a
// socket, its monitor and the monitor's reader).
const DefaultMaxSockets = 32768

// ErrSocketLimit is wrapped by the error New returns when the Context's
// socket limit (NewContext's max) is reached.
var ErrSocketLimit = errors.New("zmqkit: socket limit reached")

// Context is a libzmq context with the reactor that watches its sockets.
// Every Socket is made on one.
type Context struct {
	// mu makes socket creation and termination exclusive: a socket made
	// on a terminated libzmq context would be a use after free.
	mu   sync.RWMutex
	term bool

	zctx    *zmq.Context
	r       *reactor
	max     int
	sockets atomic.Int64 // open Sockets
	seq     atomic.Uint64
}

// NewContext makes a libzmq context that holds at most max sockets (0:
// DefaultMaxSockets) and starts its reactor.
func NewContext(max int) (*Context, error) {
	if max == 0 {
		max = DefaultMaxSockets
	}
	z, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmqkit: new context: %w", err)
	}
	if err := z.SetMaxSockets(max); err != nil {
		_ = z.Term() // no socket exists yet, so Term cannot block
		return nil, fmt.Errorf("zmqkit: new context: socket limit %d: %w", max, err)
	}
	r, err := newReactor()
	if err != nil {
		_ = z.Term()
		return nil, err
	}
	return &Context{zctx: z, r: r, max: max}, nil
}

// MaxSockets returns the context's socket limit.
func (c *Context) MaxSockets() int { return c.max }

// Sockets returns how many Sockets are open on the context.
func (c *Context) Sockets() int { return int(c.sockets.Load()) }

// Term terminates libzmq's context, once every socket is closed, then
// stops the reactor. No socket can be made from the moment it is called.
func (c *Context) Term() error {
	c.mu.Lock()
	c.term = true
	c.mu.Unlock()
	err := c.zctx.Term()
	c.r.close()
	if err != nil {
		return fmt.Errorf("zmqkit: terminate context: %w", err)
	}
	return nil
}

// newZMQSocket makes a libzmq socket, telling the socket limit apart from
// the process's descriptor limit, which libzmq both report as EMFILE.
func (c *Context) newZMQSocket(typ zmq.Type) (*zmq.Socket, error) {
	if c.term { // the caller holds mu for reading
		return nil, ErrClosed
	}
	sock, err := c.zctx.NewSocket(typ)
	if err == nil {
		return sock, nil
	}
	if sock != nil {
		_ = sock.Close() // NewSocket on a terminated context returns both
	}
	switch {
	case errors.Is(err, zmq.ETERM):
		return nil, ErrClosed
	case zmq.AsErrno(err) == zmq.Errno(syscall.EMFILE) && !fdsExhausted():
		return nil, fmt.Errorf("%w: socket limit %d of this Context reached (raise it with the Context's max sockets option)", ErrSocketLimit, c.max)
	}
	return nil, fmt.Errorf("zmqkit: new %s socket: %w", typ, err)
}

// fdsExhausted reports whether the process is at (or very near) its limit
// of open descriptors. It lists /proc/self/fd, so call it only on errors.
func fdsExhausted() bool {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return true
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return true // cannot tell; EMFILE from open says yes
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return true
	}
	return uint64(len(names))+8 >= lim.Cur
}

// ZMQ returns the libzmq context, for sockets zsock does not own (tests,
// foreign code). Such sockets are not pumped: close them before Term.
func (c *Context) ZMQ() *zmq.Context { return c.zctx }
