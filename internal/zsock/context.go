package zsock

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// used counts the libzmq sockets made and not closed: the Sockets,
	// and the socket libzmq makes for each monitor. A socket is made only
	// once a place is reserved here, so the limit is found without asking
	// libzmq (whose failure leaves pending inproc connections that abort
	// its context's termination at the limit).
	used atomic.Int64
	seq  atomic.Uint64
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

// reserve takes n places under the socket limit, or fails with
// ErrSocketLimit; release gives them back.
func (c *Context) reserve(n int) error {
	for {
		u := c.used.Load()
		if u+int64(n) > int64(c.max) {
			return c.limitError()
		}
		if c.used.CompareAndSwap(u, u+int64(n)) {
			return nil
		}
	}
}

func (c *Context) release(n int) { c.used.Add(-int64(n)) }

func (c *Context) limitError() error {
	return fmt.Errorf("%w: the Context holds at most %d sockets (an object takes 1 to 3, an RRClient up to 6; raise it with WithMaxSockets)", ErrSocketLimit, c.max)
}

// reapWait bounds how long a socket is retried when libzmq refuses it for
// the limit although a place was reserved: a closed socket's place is
// freed by libzmq's reaper thread a little after zmq_close returns.
const reapWait = time.Second

// retryReaped calls make until it succeeds, fails other than with EMFILE
// for the socket limit, or reapWait has passed.
func retryReaped(make func() error) error {
	deadline := time.Now().Add(reapWait)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
		err := make()
		if err == nil || zmq.AsErrno(err) != zmq.Errno(syscall.EMFILE) || fdsExhausted() || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
	}
}

// newZMQSocket makes a libzmq socket in a place it reserves, telling the
// socket limit apart from the process's descriptor limit, which libzmq
// both report as EMFILE.
func (c *Context) newZMQSocket(typ zmq.Type) (*zmq.Socket, error) {
	if c.term { // the caller holds mu for reading
		return nil, ErrClosed
	}
	if err := c.reserve(1); err != nil {
		return nil, err
	}
	var sock *zmq.Socket
	err := retryReaped(func() error {
		var err error
		sock, err = c.zctx.NewSocket(typ)
		if err != nil && sock != nil {
			_ = sock.Close() // NewSocket on a terminated context returns both
		}
		return err
	})
	if err == nil {
		return sock, nil
	}
	c.release(1)
	return nil, c.socketError(fmt.Sprintf("new %s socket", typ), err)
}

// socketError is the error of a libzmq call that makes a socket.
func (c *Context) socketError(what string, err error) error {
	switch {
	case errors.Is(err, zmq.ETERM):
		return ErrClosed
	case zmq.AsErrno(err) == zmq.Errno(syscall.EMFILE) && !fdsExhausted():
		return c.limitError() // sockets this package does not count
	}
	return fmt.Errorf("zmqkit: %s: %w", what, err)
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
