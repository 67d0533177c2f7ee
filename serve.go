package zmqkit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// MaxConcurrency bounds WithConcurrency.
const MaxConcurrency = 1 << 16

// serve is the loop of every Run: it receives with recv until ctx ends or
// the object closes, and calls handle for each message, up to n at once.
// With n = 1 handle runs on the caller's goroutine, so messages are handled
// one at a time in order. With more, the goroutines take turns as leader
// (see crew). recv deals with what it can (a malformed message: report it
// and receive again) and returns only to stop.
//
// serve returns once every handle call has returned: ErrClosed if the
// object closed, else ctx's error if ctx ended, else recv's error.
func serve[T any](b *base, ctx context.Context, n int, recv func(context.Context) (T, error), handle func(context.Context, T)) error {
	runCtx, release := b.runContext(ctx)
	defer release()
	var err error
	if n == 1 {
		for {
			m, rerr := recv(runCtx)
			if rerr != nil {
				err = rerr
				break
			}
			handle(runCtx, m)
		}
	} else {
		c := &crew[T]{ctx: runCtx, n: n, recv: recv, handle: handle, members: 1, leader: true}
		c.lead()
		c.wg.Wait()
		err = c.err
	}
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	if errors.Is(err, ErrClosed) {
		return ErrClosed // Close has begun; b.done is closed at its end
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if stopped(runCtx, err) {
		return nil
	}
	return err
}

// crew runs serve's handlers at a concurrency above 1, as leader and
// followers: one goroutine, the leader, receives a message and handles it
// itself, so a quick handler costs no hand-over between goroutines (which
// took microseconds a message: an echo server handing every request to a
// worker answered half as fast at concurrency 8 as at 1). If the handler
// is still running after promoteAfter (or, once handlers have been slow,
// as soon as it starts: see slow), the leader is demoted and another
// goroutine, new or the next to finish its handler, becomes leader and
// receives; at most n goroutines handle at once. A demoted goroutine,
// once its handler returns, leads again if no one leads, or else ends.
type crew[T any] struct {
	ctx    context.Context
	n      int
	recv   func(context.Context) (T, error)
	handle func(context.Context, T)
	turn   atomic.Uint64 // numbers the leader's handler calls
	// leading is the turn of the handler call the leader is in, 0 when it
	// is receiving: whoever takes it from that turn to 0 first, the
	// leader at the call's end or the timer, decides whether it was
	// demoted.
	leading atomic.Uint64
	wg      sync.WaitGroup // the goroutines started (not the caller's)
	// slow is set when a handler outlasted promoteAfter and cleared when
	// one does not: while it is set, the leader hands the lead over as it
	// starts a handler instead of when the timer fires, since a timer's
	// wake-up can take far longer than promoteAfter on an idle machine
	// (and would pace a crew of slow handlers to one call per wake-up).
	slow atomic.Bool

	mu      sync.Mutex
	members int  // goroutines in the crew
	leader  bool // one of them leads
	stop    bool // recv failed: no one leads again
	err     error
}

// promoteAfter is how long a handler runs on the receiving goroutine
// before another goroutine takes over receiving. Go's timers may fire up
// to a millisecond late when the process is otherwise idle.
const promoteAfter = 50 * time.Microsecond

// lead is a crew member's loop, entered as the leader.
func (c *crew[T]) lead() {
	var (
		timer *time.Timer
		armed *atomic.Uint64 // the turn timer is armed for
	)
	for {
		m, err := c.recv(c.ctx)
		if err != nil {
			c.mu.Lock()
			c.stop, c.leader = true, false
			c.err = err
			c.members--
			c.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return
		}
		turn := c.turn.Add(1)
		c.leading.Store(turn)
		if c.slow.Load() {
			c.demote(turn) // hand the lead over now
			start := time.Now()
			c.handle(c.ctx, m)
			if time.Since(start) < promoteAfter {
				c.slow.Store(false)
			}
			if !c.leadAgain() {
				return
			}
			continue
		}
		if timer == nil {
			// A new timer (and cell) each time one fired: a late call
			// of the old one must find its own turn, never this one.
			cell := new(atomic.Uint64)
			cell.Store(turn)
			armed = cell
			timer = time.AfterFunc(promoteAfter, func() { c.demote(cell.Load()) })
		} else {
			armed.Store(turn)
			timer.Reset(promoteAfter)
		}
		c.handle(c.ctx, m)
		if c.leading.CompareAndSwap(turn, 0) {
			if !timer.Stop() {
				timer = nil // it fired: its call finds the turn gone
			}
			continue
		}
		timer = nil // it fired and demoted this goroutine
		if !c.leadAgain() {
			return
		}
	}
}

// leadAgain is for a demoted member whose handler returned: it leads again
// if no one leads (true), or else leaves the crew (false).
func (c *crew[T]) leadAgain() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stop && !c.leader {
		c.leader = true
		return true
	}
	c.members--
	return false
}

// demote is the timer's: if the leader is still in the handler call of
// turn, it no longer leads, and a new goroutine does if the crew has room
// (else the next to finish its handler will).
func (c *crew[T]) demote(turn uint64) {
	// The turn is taken under mu, so that a leader whose handler returns
	// meanwhile and finds its turn taken (leadAgain) sees what demote did
	// to leader: else it could leave, thinking another leads, and be the
	// last member to go while serve waits, before demote adds the new one
	// (a WaitGroup Add after Wait has seen zero).
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.leading.CompareAndSwap(turn, 0) {
		return
	}
	c.slow.Store(true)
	c.leader = false
	if c.stop || c.members == c.n {
		return
	}
	c.members++
	c.leader = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.lead()
	}()
}

// replyContext is the ctx a server sends a reply with, for a handler that
// ran under runCtx: while runCtx lives, runCtx itself; once it has ended
// (Run is stopping), the reply still goes, waiting up to the object's
// linger time for room. A closed object sends nothing: its sends fail with
// ErrClosed whatever their ctx.
func (b *base) replyContext(runCtx context.Context) (context.Context, context.CancelFunc) {
	if runCtx.Err() == nil {
		return runCtx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(runCtx), max(b.o.linger, time.Millisecond))
}

// runHandler is the Run of the types that take a handler at Run
// (Subscriber, PPPuller, PairClient): serve, with malformed messages
// reported and skipped, and h called through call (its errors and panics
// recovered, counted and reported).
func runHandler[T any](b *base, ctx context.Context, recv func(context.Context) (T, error), h func(context.Context, T) error) error {
	if h == nil {
		return b.opError("run", invalidArg("nil handler"))
	}
	return serve(b, ctx, b.o.concurrency, skipMalformed(b, recv), func(ctx context.Context, m T) {
		_ = b.call(func() error { return h(ctx, m) }) // reported by call
	})
}

// skipMalformed wraps a receive for serve: a malformed message is reported
// (it was counted by recv) and the next one received.
func skipMalformed[T any](b *base, recv func(context.Context) (T, error)) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		for {
			m, err := recv(ctx)
			if err != nil && errors.Is(err, ErrMalformed) {
				b.report(err)
				continue
			}
			return m, err
		}
	}
}

// request is one request a server received: its body, or why it cannot be
// read, and what its reply needs to reach the client that asked.
type request struct {
	body     []byte
	bad      *MalformedError // answered with an error reply, not the handler
	envelope [][]byte        // RRServer: the envelope, delimiter included
	gen      uint64          // PairServer: the connection it came on
}

// serveRequests is the one server loop of RRServer and PairServer:
// receive, call the handler (or answer an unreadable request with an error
// reply), send the reply, count it as sent or dropped; with serve's
// concurrency and its stop rule (replyContext).
func (b *base) serveRequests(ctx context.Context, h RequestHandler, recv func(context.Context) (request, error), reply func(context.Context, request, []byte) error) error {
	return serve(b, ctx, b.o.concurrency, recv, func(ctx context.Context, r request) {
		var out []byte
		if r.bad != nil {
			out = errorReply(r.bad.Reason)
		} else {
			out = b.answer(ctx, h, r.body)
		}
		rctx, cancel := b.replyContext(ctx)
		err := reply(rctx, r, out)
		cancel()
		if err != nil {
			b.stats.dropped.Add(1)
			if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrPairReset) {
				b.report(b.opError("reply", err))
			}
			return
		}
		b.stats.sent.Add(1)
	})
}

// answer calls h through call (recovering, counting and reporting its
// failures); an error or panic becomes the error reply, so the peer that
// asked always gets an answer.
func (b *base) answer(ctx context.Context, h RequestHandler, req []byte) []byte {
	var reply []byte
	err := b.call(func() error {
		var err error
		reply, err = h(ctx, req)
		return err
	})
	if err == nil {
		return reply
	}
	text := err.Error()
	var he *HandlerError
	if errors.As(err, &he) && he.Err != nil {
		text = he.Err.Error()
	}
	return errorReply(text)
}

func errorReply(msg string) []byte {
	return append([]byte(ErrorReplyPrefix), msg...)
}
