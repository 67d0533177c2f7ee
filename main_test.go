package zmqkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports is the matrix every pattern test body runs over.
var transports = []string{"inproc", "ipc", "tcp"}

var inprocSeq atomic.Int64

// bindEndpoint returns an endpoint to bind on transport tr: a fresh inproc
// name, an ipc path in a short temporary folder (ipc paths are limited to
// about 100 bytes), or tcp on an ephemeral loopback port.
func bindEndpoint(t testing.TB, tr string) string {
	t.Helper()
	switch tr {
	case "inproc":
		return fmt.Sprintf("inproc://test-%d", inprocSeq.Add(1))
	case "ipc":
		dir, err := os.MkdirTemp("", "zk")
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
		return "ipc://" + filepath.Join(dir, "s")
	case "tcp":
		return "tcp://127.0.0.1:*"
	}
	t.Fatalf("unknown transport %q", tr)
	return ""
}

// newTestContext returns a Context closed when the test ends, so objects a
// test forgets cannot leak into the next one.
func newTestContext(t testing.TB) *Context {
	t.Helper()
	zctx, err := NewContext()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zctx.Close()) })
	return zctx
}

// testCtx is a context bounded so that a bug fails the test instead of
// hanging it.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// closeOnCleanup registers c.Close, checked, with the test.
func closeOnCleanup(t testing.TB, c interface{ Close() error }) {
	t.Helper()
	t.Cleanup(func() { require.NoError(t, c.Close()) })
}

// errorRecorder collects what an object reports to its error callback.
type errorRecorder struct {
	mu   sync.Mutex
	errs []error
}

// option is the WithErrorHandler that records into r.
func (r *errorRecorder) option() Option {
	return WithErrorHandler(func(err error) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	})
}

// errors returns a copy of what was reported so far.
func (r *errorRecorder) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// requireHandlerFailures checks reported errors that start with a handler
// returning want and a handler panicking with "handler blew up".
func requireHandlerFailures(t testing.TB, reported []error, want string) {
	t.Helper()
	require.GreaterOrEqual(t, len(reported), 2)
	var he *HandlerError
	require.ErrorAs(t, reported[0], &he)
	assert.EqualError(t, he.Err, want)
	require.ErrorAs(t, reported[1], &he)
	assert.Equal(t, "handler blew up", he.Panic)
	assert.NotEmpty(t, he.Stack)
}

// runInBackground starts run and returns a function that stops it (by
// cancelling its ctx) and returns its error.
func runInBackground(t testing.TB, run func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() }) // joined even when the test fails early
	return stop
}

// requireAllReturn requires n results on errc, each matching target, within
// a bound that only a hang exceeds.
func requireAllReturn(t testing.TB, errc <-chan error, n int, target error) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case err := <-errc:
			assert.ErrorIs(t, err, target)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d blocked calls did not return", n-i, n)
		}
	}
}

// awaitBlocked waits until n calls are parked on s (an object's conn or a
// socket), so that ending them tests the wake-up of a blocked call, not
// the check at a call's start.
func awaitBlocked(t testing.TB, s interface{ Waiters() int }, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Waiters() >= n }, 5*time.Second, time.Millisecond,
		"%d calls never blocked", n)
}

// blockingHandler is a RequestHandler whose calls wait until release is
// closed, after telling entered; it answers "reply:" + the request.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
}

func newBlockingHandler(n int) *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}, n), release: make(chan struct{})}
}

func (h *blockingHandler) handle(_ context.Context, req []byte) ([]byte, error) {
	h.entered <- struct{}{}
	<-h.release
	return append([]byte("reply:"), req...), nil
}

// awaitEntered waits until n calls are in the handler.
func (h *blockingHandler) awaitEntered(t testing.TB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-h.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d handler calls never started", n-i, n)
		}
	}
}

// serverStop describes a server under test for what happens to the
// replies of handlers running when it stops: start serves n requests at
// once with h and sends them, replies receives the replies that reach the
// client until want have or ctx ends.
type serverStop struct {
	start   func(t *testing.T, h RequestHandler, n int) (run func(context.Context) error, stop func() error, stats func() Stats)
	send    func(t *testing.T, n int)
	replies func(ctx context.Context, want int) int
}

// testServerStop checks the rule for both servers: when Run's ctx ends,
// the replies of handlers already running are sent; Close is immediate,
// and their replies are dropped and counted, never sent after Close.
func testServerStop(t *testing.T, mk func(t *testing.T) serverStop) {
	const n = 3
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprint("graceful=", graceful), func(t *testing.T) {
			s := mk(t)
			h := newBlockingHandler(n)
			run, closeSrv, stats := s.start(t, h.handle, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- run(ctx) }()
			s.send(t, n)
			h.awaitEntered(t, n)
			if graceful {
				cancel()
			} else {
				require.NoError(t, closeSrv())
			}
			close(h.release)
			select {
			case err := <-runErr:
				if graceful {
					require.ErrorIs(t, err, context.Canceled)
				} else {
					require.ErrorIs(t, err, ErrClosed)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			st := stats()
			if graceful {
				assert.Equal(t, Stats{Received: n, Sent: n}, st)
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer rcancel()
				assert.Equal(t, n, s.replies(rctx, n), "replies that reached the client")
			} else {
				assert.Equal(t, Stats{Received: n, Dropped: n}, st)
				rctx, rcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer rcancel()
				assert.Zero(t, s.replies(rctx, n), "replies sent after Close")
			}
		})
	}
}

// closeDefaultContext returns a cleanup that closes the default Context,
// whose reactor (and ZAP handler) would otherwise outlive the test.
func closeDefaultContext(t testing.TB) func() {
	return func() {
		d, err := DefaultContext()
		require.NoError(t, err)
		require.NoError(t, d.Close())
	}
}
