// Package pairlink keeps a ZeroMQ PAIR connection usable across restarts of
// its peer.
//
// libzmq's PAIR takes one peer and does not recover well when that peer
// restarts over TCP or IPC. Checked against libzmq 4.3.4:
//   - A PAIR has one slot for a peer. A connection gets the slot when its
//     handshake completes and the slot is free; any other is refused, but
//     libzmq keeps its TCP connection open, so that peer believes it is
//     connected while nothing flows, for as long as the connection lives.
//     A departed peer keeps the slot until the socket has read what it
//     left (a PAIR that only sends never frees it), so a bound PAIR whose
//     client restarts often refuses the new one.
//   - A non-ZMTP client whose first byte is not 0xff (an HTTP or TLS probe,
//     say) is taken for a ZMTP 1.0 peer: its connection gets the slot with
//     no handshake event, and keeps it until it leaves or ZMQ_HANDSHAKE_IVL
//     (30 s by default) expires — unless the socket refuses ZMTP 1.0 peers
//     (libzmq does when ZAP is on: zmqkit's sockets have a ZAP domain), which
//     Config.RefusesOldPeers tells the link. A client that connects and
//     stays silent never gets the slot.
//   - A connecting PAIR reconnects by itself after a lost connection, but
//     not after a protocol error (a bogus greeting, a message over
//     ZMQ_MAXMSGSIZE, a refused CURVE handshake): it then stays
//     disconnected for good.
//
// A Link therefore watches its socket with a libzmq monitor and replaces the
// socket (closes it and opens a fresh one on the same endpoints, bound ones
// at the address first bound, so an ephemeral port is kept) when:
//   - the peer leaves: the connection known to hold the slot, or, on a
//     connecting socket, the one whose handshake succeeded;
//   - while no connection is known to hold the slot (see the tracker), a
//     peer completes its handshake while another connection is open, or a
//     connection that may have held the slot leaves (one that failed its
//     ZMTP 3 handshake with a protocol or authentication error never did):
//     the peer may have been refused, and libzmq never serves it later;
//   - libzmq gave up on a connection it made (no reconnection announced
//     within a moment of the loss): at once for the peer's (reported to
//     OnDropped), after a back-off for one whose handshake failed.
//
// Callers blocked on the old socket carry on, on the new one. Messages the
// old socket had received but nobody had read yet are kept and returned
// first; messages it had not sent yet are dropped.
package pairlink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// ErrReset is returned by calls pinned to one connection (a generation)
// once the link has moved to a new one.
var ErrReset = errors.New("zmqkit: pair connection reset by a peer restart")

// ErrUnsent is returned instead of ErrReset (and matches it) when the
// generation was replaced before any peer had completed a handshake on
// it: nothing sent on it can have reached a peer, so it may be sent again.
var ErrUnsent error = unsentError{}

type unsentError struct{}

func (unsentError) Error() string {
	return "zmqkit: pair socket replaced before a peer connected; nothing sent on it was delivered"
}

func (unsentError) Is(target error) bool { return target == ErrReset }

// NewSocketFunc creates a socket of type typ bound or connected to eps,
// monitored by mon when it is not nil.
type NewSocketFunc func(typ zmq.Type, eps []endpoint.Endpoint, mon *zsock.Monitor) (*zsock.Socket, error)

// Config says how a Link makes and reports.
type Config struct {
	Endpoints []endpoint.Endpoint
	NewSocket NewSocketFunc
	// OnRestart is called (from the link's goroutine) after the socket was
	// replaced, with why; OnError for a failure to replace it, which is
	// retried; OnDropped when libzmq dropped the peer's connection to
	// endpoint for a protocol error and would not have made it again (the
	// link does, by replacing the socket). None may call Close: Close waits
	// for that goroutine.
	OnRestart func(gen uint64, why string)
	OnError   func(error)
	OnDropped func(endpoint string)
	// RefusesOldPeers says that the sockets NewSocket makes refuse ZMTP
	// 1.0 and 2.0 peers (libzmq does when ZAP is on: a ZAP domain, or
	// CURVE). A connection then holds the slot only once its handshake has
	// succeeded, so one that leaves before, or is open while another's
	// handshake succeeds, is no reason to replace the socket.
	RefusesOldPeers bool
}

type generation struct {
	n      uint64
	sock   *zsock.Socket
	events chan zsock.Event // the socket's peer events; nil when not monitored (inproc only)
	gone   chan struct{}    // closed when the generation is retired
	// handshook is set by the monitor as soon as a handshake succeeded,
	// before the supervisor reads the event; retire reads it once the
	// monitor has stopped.
	handshook atomic.Bool
}

// retiredGens is how many retired generations the link remembers, for
// the pinned calls still to learn that theirs is gone.
const retiredGens = 16

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
	unpeered [retiredGens]uint64 // recently retired generations that never had a peer

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc
	superCtx  context.Context // ends when the link closes
	super     sync.WaitGroup  // the supervisor, once the link is watched
	watched   bool            // guarded by mu: the supervisor runs
	failures  int             // the supervisor's: replacements after failed handshakes in a row
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
		Events: watchEvents,
		On: func(ev zsock.Event) {
			if ev.Kind == zmq.EVENT_HANDSHAKE_SUCCEEDED {
				g.handshook.Store(true)
			}
			select {
			case g.events <- ev:
			case <-g.gone: // retired: nobody reads any more
			}
		},
	}
}

// supervise runs for the link's life: it waits until g's socket must be
// replaced, then replaces it.
func (l *Link) supervise(ctx context.Context, g *generation) {
	defer l.super.Done()
	for {
		why, ok := l.awaitReplace(ctx, g)
		if !ok {
			return
		}
		l.retire(g, true)
		if g = l.reopen(ctx, g.n+1); g == nil {
			return
		}
		if l.cfg.OnRestart != nil {
			l.cfg.OnRestart(g.n, why)
		}
	}
}

// awaitReplace reads g's events until its socket must be replaced (why,
// true) or the link closes (false).
func (l *Link) awaitReplace(ctx context.Context, g *generation) (string, bool) {
	l.mu.Lock()
	var connects []string
	for _, ep := range l.reopenTo {
		if !ep.Bind {
			connects = append(connects, ep.Addr)
		}
	}
	l.mu.Unlock()
	t := newTracker(connects...)
	t.strict = l.cfg.RefusesOldPeers
	for {
		var wake <-chan time.Time
		var timer *time.Timer
		if due, ok := t.next(); ok {
			timer = time.NewTimer(time.Until(due))
			wake = timer.C
		}
		var v verdict
		select {
		case ev := <-g.events:
			v = l.take(t, ev)
		case <-wake:
			// Events that came meanwhile go first (the loop may have been
			// held, by a host lookup say): a reconnection announced
			// before the check fell due cancels it.
			v = l.drainEvents(g, t)
			if !v.replace {
				v = t.expire(time.Now())
			}
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return "", false // the link is closing
		}
		if !v.replace {
			continue
		}
		if v.failed {
			l.failures++
		}
		if v.dropped != "" && l.cfg.OnDropped != nil {
			l.cfg.OnDropped(v.dropped)
		}
		return v.why, true
	}
}

// drainEvents gives t the events of g already queued, until one says to
// replace the socket.
func (l *Link) drainEvents(g *generation, t *tracker) verdict {
	for {
		select {
		case ev := <-g.events:
			if v := l.take(t, ev); v.replace {
				return v
			}
		default:
			return verdict{}
		}
	}
}

// take gives t one event of the link's socket.
func (l *Link) take(t *tracker, ev zsock.Event) verdict {
	if ev.Kind == zmq.EVENT_HANDSHAKE_SUCCEEDED {
		l.failures = 0
	}
	return t.event(ev, time.Now(), l.failures)
}

// retire takes g out of service: callers see no socket until the next one
// is installed, messages received but unread are kept (when keep is set),
// and the socket closes at once.
func (l *Link) retire(g *generation, keep bool) {
	l.mu.Lock()
	current := l.cur == g
	if current {
		l.cur = nil // callers wait for the next socket (or, pinned to g, for retire's end)
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
	// Only now, with the monitor stopped, is it known that no handshake
	// succeeded: a peer that got through while the supervisor decided to
	// retire g may have the messages sent on it. So the link moves past g
	// (and calls pinned to g learn ErrUnsent or ErrReset) only now.
	l.mu.Lock()
	if !g.handshook.Load() {
		l.unpeered[g.n%retiredGens] = g.n
	}
	if current {
		l.gen = g.n + 1
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.mu.Unlock()
}

// closeGen closes g's socket, which stops its monitor first.
func (l *Link) closeGen(g *generation) error {
	close(g.gone)
	return g.sock.Close()
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

// resetError is the error of a call pinned to generation gen, which was
// replaced: ErrUnsent if it never had a peer (as far as the link
// remembers), else ErrReset.
func (l *Link) resetError(gen uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unpeered[gen%retiredGens] == gen {
		return ErrUnsent
	}
	return ErrReset
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
// after, or ErrUnsent). It returns the generation that took msg.
func (l *Link) Send(ctx context.Context, msg [][]byte, gen uint64) (uint64, error) {
	for {
		s, n, changed := l.current()
		if gen != 0 && n != gen {
			return n, l.resetError(gen)
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
// returns ErrReset (or ErrUnsent) once the link has moved past generation
// gen and nothing kept is left.
func (l *Link) Recv(ctx context.Context, gen uint64) ([][]byte, uint64, error) {
	for {
		if c, ok := l.takeCarried(gen); ok {
			return c.msg, c.gen, nil
		}
		s, n, changed := l.current()
		if gen != 0 && n != gen {
			return nil, n, l.resetError(gen)
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
