package zmqkit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chanRecv is a serve receive from a channel: it ends with ctx.
func chanRecv(in <-chan int) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		select {
		case m := <-in:
			return m, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// serve at concurrency n: handlers that block are joined by others up to
// n at once, never more; when they return, receiving goes on (someone
// leads again), and every message is handled exactly once.
func TestServeCrewBound(t *testing.T) {
	for _, n := range []int{2, 3, 8} {
		t.Run(fmt.Sprint("n=", n), func(t *testing.T) {
			done := make(chan struct{})
			b := &base{done: done}
			const total = 200
			in := make(chan int)
			var (
				running, peak atomic.Int64
				seen          sync.Map
				handled       sync.WaitGroup
			)
			handled.Add(total)
			full := make(chan struct{}, total) // one per call that found n running
			release := make(chan struct{})
			h := func(_ context.Context, m int) {
				r := running.Add(1)
				for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
				}
				if r == int64(n) {
					full <- struct{}{}
				}
				if m < n { // the first n block until all n run at once
					<-release
				}
				running.Add(-1)
				_, dup := seen.LoadOrStore(m, true)
				assert.False(t, dup, "message %d handled twice", m)
				handled.Done()
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			errc := make(chan error, 1)
			go func() { errc <- serve(b, ctx, n, chanRecv(in), h) }()
			for m := 0; m < n; m++ {
				in <- m
			}
			select {
			case <-full:
			case <-ctx.Done():
				t.Fatalf("%d blocking handlers never ran at once", n)
			}
			close(release)
			for m := n; m < total; m++ {
				in <- m
			}
			handled.Wait()
			cancel()
			require.ErrorIs(t, <-errc, context.Canceled)
			assert.LessOrEqual(t, peak.Load(), int64(n), "never more than n handlers at once")
		})
	}
}

// serve at concurrency n returns only once every handler has returned.
func TestServeCrewWaitsForHandlers(t *testing.T) {
	b := &base{done: make(chan struct{})}
	in := make(chan int)
	ctx, cancel := context.WithCancel(testCtx(t))
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	var returned atomic.Int64
	errc := make(chan error, 1)
	atReturn := make(chan int64, 1)
	go func() {
		errc <- serve(b, ctx, 4, chanRecv(in), func(context.Context, int) {
			entered <- struct{}{}
			<-release
			returned.Add(1)
		})
		atReturn <- returned.Load()
	}()
	in <- 1
	in <- 2
	<-entered
	<-entered
	cancel()
	close(release)
	require.ErrorIs(t, <-errc, context.Canceled)
	assert.Equal(t, int64(2), <-atReturn, "handlers returned before serve did")
}

// A receive that fails because the object is closing ends Run with
// ErrClosed, even before Close has closed done.
func TestServeClosingIsErrClosed(t *testing.T) {
	for _, n := range []int{1, 4} {
		b := &base{done: make(chan struct{})}
		err := serve(b, testCtx(t), n, func(context.Context) (int, error) {
			return 0, b.opError("receive", ErrClosed)
		}, func(context.Context, int) { t.Error("handler called") })
		require.ErrorIs(t, err, ErrClosed, "n=%d", n)
	}
}
