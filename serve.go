package zmqkit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// MaxConcurrency bounds WithConcurrency.
const MaxConcurrency = 1 << 16

// serve is the loop of every Run: it receives with recv until ctx ends or
// the object closes, and calls handle for each message, up to n at once.
// With n = 1 handle runs on the caller's goroutine, so messages are handled
// one at a time in order. With more, worker goroutines are started as the
// messages need them (never more than n, and nothing is allocated per
// unit of n), each taking the next message when it is free. recv deals with
// what it can (a malformed message: report it and receive again) and
// returns only to stop.
//
// serve returns once every handle call has returned: ErrClosed if the
// object closed, else ctx's error if ctx ended, else recv's error.
func serve[T any](b *base, ctx context.Context, n int, recv func(context.Context) (T, error), handle func(context.Context, T)) error {
	runCtx, release := b.runContext(ctx)
	defer release()
	var (
		wg      sync.WaitGroup
		work    = make(chan T) // unbuffered: a message is handed to a free worker
		workers int
		err     error
	)
	for {
		m, rerr := recv(runCtx)
		if rerr != nil {
			if !stopped(runCtx, rerr) {
				err = rerr
			}
			break
		}
		if n == 1 {
			handle(runCtx, m)
			continue
		}
		select {
		case work <- m:
		default:
			if workers < n {
				workers++
				wg.Add(1)
				go func() {
					defer wg.Done()
					handle(runCtx, m)
					for m := range work {
						handle(runCtx, m)
					}
				}()
			} else {
				work <- m // wait for a worker: the handlers are the bound
			}
		}
	}
	close(work)
	wg.Wait()
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return err
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
