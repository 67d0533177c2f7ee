// Package pairlink keeps a ZeroMQ PAIR connection usable across restarts of
// its peer.
//
// libzmq's PAIR takes one peer and does not recover well when that peer
// restarts over TCP or IPC. Checked against libzmq 4.3.4:
//   - A bound PAIR whose client restarts often accepts the new connection
//     before it has retired the old one; it then refuses the new pipe but
//     keeps the TCP connection open, so the new client believes it is
//     connected while nothing flows, for as long as the connection lives.
//   - A connecting PAIR reconnects by itself, but its reconnect "hiccup"
//     drops every message queued while it was disconnected, and a reconnect
//     racing the old server's closing listener can leave it stranded too.
//
// A Link therefore watches its socket with a libzmq monitor and, when the
// peer it was talking to disconnects, closes the socket and opens a fresh one
// on the same endpoints (bound ones at the address first bound, so an
// ephemeral port is kept). Callers blocked on the old socket carry on, on
// the new one. Messages the old socket had received but nobody had read yet
// are kept and returned first.
package pairlink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// ErrReset is returned by calls pinned to one connection (a generation)
// once the link has moved to a new one.
var ErrReset = errors.New("zmqkit: pair connection reset by a peer restart")

// NewSocketFunc creates a socket of type typ bound or connected to eps,
// monitored by mon when it is not nil.
type NewSocketFunc func(typ zmq.Type, eps []endpoint.Endpoint, mon *zsock.Monitor) (*zsock.Socket, error)

// Config says how a Link makes and reports.
type Config struct {
	Endpoints []endpoint.Endpoint
	NewSocket NewSocketFunc
	// OnRestart is called (from the link's goroutine) after the socket was
	// replaced; OnError for a failure to replace it, which is retried.
	// Neither may call Close: Close waits for that goroutine.
	OnRestart func(gen uint64)
	OnError   func(error)
}

type generation struct {
	n      uint64
	sock   *zsock.Socket
	events chan zsock.Event // the socket's peer events; nil when not monitored (inproc only)
	gone   chan struct{}    // closed when the generation is retired
}

type carried struct {
	msg [][]byte
	gen uint64
}

// Link is a PAIR socket that is replaced when its peer goes away. It is safe
// for concurrent use; one goroutine may send while another receives.
type Link struct {
	cfg Config

	mu       sync.Mutex
	reopenTo []endpoint.Endpoint // every endpoint, bound ones resolved
	cur      *generation         // nil while being replaced
	gen      uint64              // of cur, or of the next one while replacing
	changed  chan struct{}
	carry    []carried

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc
	superCtx  context.Context // ends when the link closes
	super     sync.WaitGroup  // the supervisor, once the link is watched
	watched   bool            // guarded by mu: the supervisor runs
}

// New opens the first socket and, unless every endpoint is inproc (where
// peers cannot restart behind a socket's back), starts watching it.
func New(cfg Config) (*Link, error) {
	l := &Link{cfg: cfg, changed: make(chan struct{}), done: make(chan struct{})}
	l.superCtx, l.stop = context.WithCancel(context.Background())
	watched := false
	for _, ep := range cfg.Endpoints {
		if !strings.HasPrefix(ep.Addr, "inproc://") {
			watched = true
		}
	}
	g, err := l.open(cfg.Endpoints, watched, 1)
	if err != nil {
		l.stop()
		return nil, err
	}
	l.reopenTo = resolve(cfg.Endpoints, g.sock.Bound())
	l.cur, l.gen = g, 1
	if watched {
		l.watched = true
		l.super.Add(1)
		go l.supervise(l.superCtx, g)
	}
	return l, nil
}

// watch starts watching a link made with inproc endpoints only, which one
// more endpoint of another transport now needs: a monitor on the socket in
// service, before the endpoint is attached, and the supervisor. l.mu is
// held.
func (l *Link) watch(g *generation) error {
	if l.watched {
		return nil
	}
	g.events = make(chan zsock.Event, 64)
	if err := g.sock.Monitor(g.monitor()); err != nil {
		g.events = nil
		return err
	}
	l.watched = true
	l.super.Add(1)
	go l.supervise(l.superCtx, g)
	return nil
}

// resolve returns eps with each bound endpoint's address replaced by the
// one really bound (bound, in order), so that a reopened socket binds the
// same ephemeral port.
func resolve(eps []endpoint.Endpoint, bound []string) []endpoint.Endpoint {
	out := make([]endpoint.Endpoint, 0, len(eps))
	for _, ep := range eps {
		if ep.Bind && len(bound) > 0 {
			ep.Addr, bound = bound[0], bound[1:]
		}
		out = append(out, ep)
	}
	return out
}

// open makes one generation, monitored from before its first bind or
// connect so no connection goes unseen.
func (l *Link) open(eps []endpoint.Endpoint, monitored bool, n uint64) (*generation, error) {
	g := &generation{n: n, gone: make(chan struct{})}
	var mon *zsock.Monitor
	if monitored {
		g.events = make(chan zsock.Event, 64)
		mon = g.monitor()
	}
	s, err := l.cfg.NewSocket(zmq.PAIR, eps, mon)
	if err != nil {
		return nil, err
	}
	g.sock = s
	return g, nil
}

// monitor is what a generation's socket is monitored with: its peer's
// comings and goings, sent to g.events.
func (g *generation) monitor() *zsock.Monitor {
	return &zsock.Monitor{
		Events: zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
			zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH,
		On: func(ev zsock.Event) {
			select {
			case g.events <- ev:
			case <-g.gone: // retired: nobody reads any more
			}
		},
	}
}

// supervise runs for the link's life: it waits for the current peer to go,
// then replaces the socket.
func (l *Link) supervise(ctx context.Context, g *generation) {
	defer l.super.Done()
	for {
		if !l.awaitPeerGone(ctx, g) {
			return
		}
		l.retire(g, true)
		if g = l.reopen(ctx, g.n+1); g == nil {
			return
		}
		if l.cfg.OnRestart != nil {
			l.cfg.OnRestart(g.n)
		}
	}
}

// awaitPeerGone reads g's events until the peer it talks to disconnects
// (true) or the link closes (false). The peer is the first connection
// accepted or made whose handshake did not fail: a second one, which PAIR
// refuses to serve, and one refused in its handshake (a CURVE client the
// server denied), may come and go without consequence. (Handshake events
// carry no descriptor: a failure before the first success is taken to be
// the first connection's.)
func (l *Link) awaitPeerGone(ctx context.Context, g *generation) bool {
	peer, confirmed := -1, false
	for {
		var ev zsock.Event
		select {
		case ev = <-g.events:
		case <-ctx.Done():
			return false // the link is closing
		}
		switch ev.Kind {
		case zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED:
			if peer < 0 {
				peer, confirmed = ev.Value, false // the connection's descriptor
			}
		case zmq.EVENT_HANDSHAKE_SUCCEEDED:
			confirmed = true
		case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
			if !confirmed {
				peer = -1
			}
		case zmq.EVENT_DISCONNECTED:
			if ev.Value == peer {
				return true
			}
		}
	}
}

// retire takes g out of service: callers see no socket until the next one
// is installed, messages received but unread are kept (when keep is set),
// and the socket closes at once.
func (l *Link) retire(g *generation, keep bool) {
	l.mu.Lock()
	if l.cur == g {
		l.cur = nil
		l.gen = g.n + 1
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
	if keep {
		// Drained through zsock, whole messages: a multi-frame one is kept
		// whole, and refused whole by a single-frame Recv.
		var kept []carried
		for {
			msg, ok, err := g.sock.TryRecvMessage()
			if !ok || err != nil {
				break
			}
			kept = append(kept, carried{msg: msg, gen: g.n})
		}
		if len(kept) > 0 {
			l.mu.Lock()
			l.carry = append(l.carry, kept...)
			l.mu.Unlock()
		}
		// Unsent messages must not reach whoever connects next.
		_ = g.sock.Do(func(z *zmq.Socket) error { return z.SetLinger(0) })
	}
	l.closeGen(g)
}

func (l *Link) closeGen(g *generation) error {
	close(g.gone)
	return g.sock.Close() // stops its monitor first
}

// reopen opens generation n, retrying (a bound address is busy until the
// old socket's listener is gone) until it works or the link closes.
func (l *Link) reopen(ctx context.Context, n uint64) *generation {
	backoff := time.Millisecond
	reported := false
	for {
		l.mu.Lock()
		eps := l.reopenTo
		l.mu.Unlock()
		g, err := l.open(eps, true, n)
		if err == nil {
			l.mu.Lock()
			l.cur = g
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
			return g
		}
		if errors.Is(err, zsock.ErrClosed) {
			return nil // the context is closing, and with it the link
		}
		if !reported && l.cfg.OnError != nil {
			l.cfg.OnError(fmt.Errorf("zmqkit: pair: reopen after the peer left (retrying): %w", err))
			reported = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// current returns the socket in service (nil while replacing), its
// generation, and a channel closed when that changes.
func (l *Link) current() (*zsock.Socket, uint64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil, l.gen, l.changed
	}
	return l.cur.sock, l.cur.n, l.changed
}

// wait waits for the next socket after an ErrClosed or a gap.
func (l *Link) wait(ctx context.Context, changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return zsock.ErrClosed
	}
}

func (l *Link) isDone() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Send sends msg, one message of one or more frames, on whichever socket
// is in service; with gen != 0, only while generation gen is (ErrReset
// after). It returns the generation that took msg.
func (l *Link) Send(ctx context.Context, msg [][]byte, gen uint64) (uint64, error) {
	for {
		s, n, changed := l.current()
		if gen != 0 && n != gen {
			return n, ErrReset
		}
		if s == nil {
			if err := l.wait(ctx, changed); err != nil {
				return n, err
			}
			continue
		}
		var err error
		if len(msg) == 1 {
			err = s.SendBytes(ctx, msg[0], false)
		} else {
			err = s.SendMessage(ctx, msg...)
		}
		if errors.Is(err, zsock.ErrClosed) && !l.isDone() {
			if err := l.wait(ctx, changed); err != nil {
				return n, err
			}
			continue // replaced, not closed: msg was not taken
		}
		return n, err
	}
}

// Recv receives the next message, every frame of it, with the generation
// it came on: kept messages of a replaced socket first. With gen != 0, it
// returns ErrReset once the link has moved past generation gen and nothing
// kept is left.
func (l *Link) Recv(ctx context.Context, gen uint64) ([][]byte, uint64, error) {
	for {
		if c, ok := l.takeCarried(gen); ok {
			return c.msg, c.gen, nil
		}
		s, n, changed := l.current()
		if gen != 0 && n != gen {
			return nil, n, ErrReset
		}
		if s == nil {
			if err := l.wait(ctx, changed); err != nil {
				return nil, n, err
			}
			continue
		}
		msg, err := s.RecvMessage(ctx)
		if errors.Is(err, zsock.ErrClosed) && !l.isDone() {
			if err := l.wait(ctx, changed); err != nil {
				return nil, n, err
			}
			continue
		}
		return msg, n, err
	}
}

// takeCarried takes the oldest kept message of a replaced socket; a caller
// pinned to generation gen takes only that generation's, leaving the
// others to unpinned callers.
func (l *Link) takeCarried(gen uint64) (carried, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range l.carry {
		if gen == 0 || c.gen == gen {
			l.carry = append(l.carry[:i:i], l.carry[i+1:]...)
			return c, true
		}
	}
	return carried{}, false
}

// Attach binds or connects one more endpoint, on the socket in service
// and on every socket that replaces it.
func (l *Link) Attach(ep endpoint.Endpoint) error {
	for {
		s, _, changed := l.current()
		if s == nil {
			if err := l.wait(context.Background(), changed); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(ep.Addr, "inproc://") {
			l.mu.Lock()
			g := l.cur
			var err error
			if g != nil && g.sock == s {
				err = l.watch(g)
			}
			l.mu.Unlock()
			if err != nil {
				return err
			}
		}
		before := len(s.Bound())
		if err := s.Attach(ep); err != nil {
			if errors.Is(err, zsock.ErrClosed) && !l.isDone() {
				continue // replaced meanwhile: attach to the next one
			}
			return err
		}
		l.mu.Lock()
		l.reopenTo = append(l.reopenTo, resolve([]endpoint.Endpoint{ep}, s.Bound()[before:])...)
		l.mu.Unlock()
		return nil
	}
}

// Waiters reports how many calls wait on the socket in service.
func (l *Link) Waiters() int {
	if s, _, _ := l.current(); s != nil {
		return s.Waiters()
	}
	return 0
}

// Endpoints reports the current socket's endpoints (the first socket's, if
// one is being replaced: they are the same).
func (l *Link) Endpoints() []string {
	l.mu.Lock()
	g := l.cur
	l.mu.Unlock()
	if g == nil { // as zsock lists them: bound first, then connected
		l.mu.Lock()
		defer l.mu.Unlock()
		out := make([]string, 0, len(l.reopenTo))
		for _, bind := range []bool{true, false} {
			for _, ep := range l.reopenTo {
				if ep.Bind == bind {
					out = append(out, ep.Addr)
				}
			}
		}
		return out
	}
	return g.sock.Endpoints()
}

// Done is closed when the link is closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Close closes the link: blocked callers get ErrClosed, the watcher is
// joined, and the socket closes with its configured linger. Idempotent.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.stop()
		l.super.Wait()
		l.mu.Lock()
		g := l.cur
		l.cur = nil
		l.mu.Unlock()
		if g != nil {
			l.closeErr = l.closeGen(g)
		}
	})
	return l.closeErr
}
