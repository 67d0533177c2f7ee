package zmqkit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newPushPull makes a PPPusher bound on tr and a PPPuller (without handler)
// connected to it, on one test context.
func newPushPull(t testing.TB, tr string, pushOpts, pullOpts []Option) (*PPPusher, *PPPuller) {
	t.Helper()
	zctx := newTestContext(t)
	push, err := NewPPPusher(bindEndpoint(t, tr), append([]Option{WithZMQContext(zctx)}, pushOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, push)
	pull, err := NewPPPuller(push.Endpoints()[0], append([]Option{WithZMQContext(zctx)}, pullOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	return push, pull
}

func TestPushPullTransports(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			push, pull := newPushPull(t, tr, nil, nil)
			ctx := testCtx(t)
			const n = 500
			go func() {
				for i := 0; i < n; i++ {
					if err := push.Push(ctx, []byte(strconv.Itoa(i))); err != nil {
						t.Errorf("push %d: %v", i, err)
						return
					}
				}
			}()
			for i := 0; i < n; i++ {
				msg, err := pull.Receive(ctx)
				require.NoError(t, err)
				require.Equal(t, strconv.Itoa(i), string(msg))
			}
			// Empty messages are messages too.
			require.NoError(t, push.Push(ctx, nil))
			msg, err := pull.Receive(ctx)
			require.NoError(t, err)
			assert.Empty(t, msg)
			assert.Equal(t, uint64(n+1), push.Stats().Sent)
			assert.Equal(t, uint64(n+1), pull.Stats().Received)
		})
	}
}

// TestPushPullMillion is the bar: nothing lost between one pusher
// and one puller, in order, through Run with the default concurrency of 1.
func TestPushPullMillion(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 50_000
	}
	zctx := newTestContext(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	push, err := NewPPPusher("tcp://127.0.0.1:*", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)

	var next uint64 // touched only by the single handler goroutine, then after Run
	var firstBad atomic.Value
	done := make(chan struct{})
	h := func(ctx context.Context, msg []byte) error {
		got := binary.BigEndian.Uint64(msg)
		if got != next && firstBad.Load() == nil {
			firstBad.Store(fmt.Sprintf("message %d arrived when %d was due", got, next))
		}
		next++
		if next == uint64(n) {
			close(done)
		}
		return nil
	}
	puller, err := NewPPPuller(push.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, puller)
	stop := runInBackground(t, func(ctx context.Context) error { return puller.Run(ctx, h) })

	start := time.Now()
	buf := make([]byte, 8)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(buf, uint64(i))
		if err := push.Push(ctx, buf); err != nil {
			require.NoError(t, err, "push %d", i)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("only %d of %d messages arrived", puller.Stats().Received, n)
	}
	require.ErrorIs(t, stop(), context.Canceled)
	t.Logf("%d messages in %v", n, time.Since(start))
	assert.Nil(t, firstBad.Load(), "order kept")
	assert.Equal(t, uint64(n), next)
	assert.Equal(t, uint64(n), push.Stats().Sent)
	assert.Equal(t, uint64(n), puller.Stats().Received)
	assert.Zero(t, puller.Stats().HandlerErrors)
}

// TestPushFanOut is the seed's master and ten workers: one pusher, ten
// pullers, each gets a share and the total is exact.
func TestPushFanOut(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const workers, tasks = 10, 1000
			zctx := newTestContext(t)
			ctx := testCtx(t)
			push, err := NewPPPusher(bindEndpoint(t, tr), WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, push)

			var probed sync.WaitGroup
			probed.Add(workers)
			var total atomic.Int64
			shares := make([]atomic.Int64, workers)
			for w := 0; w < workers; w++ {
				var seenProbe bool // only this worker's handler goroutine touches it
				handler := func(ctx context.Context, msg []byte) error {
					if string(msg) == "probe" {
						if !seenProbe {
							seenProbe = true
							probed.Done()
						}
						return nil
					}
					shares[w].Add(1)
					total.Add(1)
					return nil
				}
				pull, err := NewPPPuller(push.Endpoints()[0], WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, pull)
				stop := runInBackground(t, func(ctx context.Context) error { return pull.Run(ctx, handler) })
				t.Cleanup(func() { assert.ErrorIs(t, stop(), context.Canceled) })
			}

			// Handshake: probe until every worker has seen one, so all ten
			// are connected before the tasks are dealt out.
			allProbed := make(chan struct{})
			go func() { probed.Wait(); close(allProbed) }()
		probing:
			for {
				require.NoError(t, push.Push(ctx, []byte("probe")))
				select {
				case <-allProbed:
					break probing
				case <-time.After(time.Millisecond):
				case <-ctx.Done():
					t.Fatal("not every worker connected")
				}
			}

			for i := 0; i < tasks; i++ {
				require.NoError(t, push.Push(ctx, []byte(strconv.Itoa(i))))
			}
			require.Eventually(t, func() bool { return total.Load() >= tasks }, 10*time.Second, time.Millisecond)
			assert.Equal(t, int64(tasks), total.Load(), "total is exact")
			for w := range shares {
				assert.Positive(t, shares[w].Load(), "worker %d got a share", w)
			}
		})
	}
}

// TestPushFanIn: many pushers connect to one puller that binds.
func TestPushFanIn(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const pushers, each = 4, 300
			zctx := newTestContext(t)
			ctx := testCtx(t)
			pull, err := NewPPPuller("@"+bindEndpoint(t, tr), WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, pull)
			var wg sync.WaitGroup
			for p := 0; p < pushers; p++ {
				push, err := NewPPPusher(">"+pull.Endpoints()[0], WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, push)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						if err := push.Push(ctx, []byte(fmt.Sprintf("%d:%d", p, i))); err != nil {
							t.Errorf("pusher %d: %v", p, err)
							return
						}
					}
				}()
			}
			next := make([]int, pushers)
			for n := 0; n < pushers*each; n++ {
				msg, err := pull.Receive(ctx)
				require.NoError(t, err)
				var p, i int
				_, err = fmt.Sscanf(string(msg), "%d:%d", &p, &i)
				require.NoError(t, err)
				require.Equal(t, next[p], i, "pusher %d's messages in order, none lost", p)
				next[p]++
			}
			wg.Wait()
			for p := range next {
				assert.Equal(t, each, next[p])
			}
		})
	}
}

func TestPushBlocksWithoutPeerUntilCtxEnds(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			zctx := newTestContext(t)
			push, err := NewPPPusher(bindEndpoint(t, tr), WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, push)

			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer dcancel()
			assert.ErrorIs(t, push.Push(dctx, []byte("nobody")), context.DeadlineExceeded)

			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- push.Push(ctx, []byte("nobody")) }()
			awaitBlocked(t, push.sock, 1)
			cancel()
			select {
			case err := <-errc:
				assert.ErrorIs(t, err, context.Canceled)
			case <-time.After(5 * time.Second):
				t.Fatal("Push did not return after its ctx ended")
			}

			go func() { errc <- push.Push(context.Background(), []byte("nobody")) }()
			awaitBlocked(t, push.sock, 1)
			require.NoError(t, push.Close())
			select {
			case err := <-errc:
				assert.ErrorIs(t, err, ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("Push did not return after Close")
			}
			require.NoError(t, push.Close(), "Close is idempotent")
			assert.ErrorIs(t, push.Push(context.Background(), nil), ErrClosed)
			assert.Zero(t, push.Stats().Sent)
		})
	}
}

// TestPushBlocksAtHighWaterMark: with a puller that does not read, Push
// stops at the high-water marks and resumes when the puller reads. (Over
// inproc: on tcp and ipc the kernel's buffers hold far more than the marks.)
func TestPushBlocksAtHighWaterMark(t *testing.T) {
	push, pull := newPushPull(t, "inproc", []Option{WithSendHWM(10)}, []Option{WithRecvHWM(10)})
	ctx := testCtx(t)
	sent := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := push.Push(pctx, []byte(strconv.Itoa(sent)))
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		sent++
		require.Less(t, sent, 100_000, "Push never blocked")
	}
	assert.GreaterOrEqual(t, sent, 10)
	for i := 0; i < sent; i++ {
		msg, err := pull.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i), string(msg), "nothing lost at the mark")
	}
	require.NoError(t, push.Push(ctx, []byte("after")))
	msg, err := pull.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "after", string(msg))
}

func TestPullEndsByCtxAndClose(t *testing.T) {
	_, pull := newPushPull(t, "inproc", nil, nil)
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := pull.Receive(dctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	errc := make(chan error, 1)
	go func() {
		_, err := pull.Receive(context.Background())
		errc <- err
	}()
	awaitBlocked(t, pull.sock, 1)
	require.NoError(t, pull.Close())
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Pull did not return after Close")
	}
	_, err = pull.Receive(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, pull.Run(context.Background(), nil), ErrInvalidArgument, "no handler")
}

func TestPullerRunReportsHandlerFailures(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var rec errorRecorder
			zctx := newTestContext(t)
			ctx := testCtx(t)
			push, err := NewPPPusher(bindEndpoint(t, tr), WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, push)
			got := make(chan string, 10)
			handler2 := func(ctx context.Context, msg []byte) error {
				switch string(msg) {
				case "fail":
					return errors.New("handler says no")
				case "panic":
					panic("handler blew up")
				}
				got <- string(msg)
				return nil
			}
			pull, err := NewPPPuller(push.Endpoints()[0], WithZMQContext(zctx), rec.option())
			require.NoError(t, err)
			closeOnCleanup(t, pull)
			stop := runInBackground(t, func(ctx context.Context) error { return pull.Run(ctx, handler2) })
			for _, s := range []string{"a", "fail", "b", "panic", "c"} {
				require.NoError(t, push.Push(ctx, []byte(s)))
			}
			for _, want := range []string{"a", "b", "c"} {
				select {
				case s := <-got:
					assert.Equal(t, want, s, "concurrency 1 keeps order")
				case <-ctx.Done():
					t.Fatal("handler never saw", want)
				}
			}
			require.ErrorIs(t, stop(), context.Canceled)
			st := pull.Stats()
			assert.Equal(t, uint64(5), st.Received)
			assert.Equal(t, uint64(2), st.HandlerErrors)
			assert.Equal(t, uint64(1), st.HandlerPanics)
			reported := rec.errors()
			require.Len(t, reported, 2)
			requireHandlerFailures(t, reported, "handler says no")
		})
	}
}

func TestPullerRunConcurrencyAndClose(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	push, err := NewPPPusher(bindEndpoint(t, "inproc"), WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	// Four handlers must be in flight at once for any of them to finish.
	var barrier sync.WaitGroup
	barrier.Add(4)
	done := make(chan struct{}, 4)
	handler3 := func(ctx context.Context, msg []byte) error {
		barrier.Done()
		barrier.Wait()
		done <- struct{}{}
		return nil
	}
	pull, err := NewPPPuller(push.Endpoints()[0], WithZMQContext(zctx), WithConcurrency(4))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- pull.Run(context.Background(), handler3) }()
	for i := 0; i < 4; i++ {
		require.NoError(t, push.Push(ctx, []byte{byte(i)}))
	}
	for i := 0; i < 4; i++ {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("four handlers never ran at once")
		}
	}
	require.NoError(t, pull.Close())
	select {
	case err := <-runErr:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	assert.ErrorIs(t, pull.Run(context.Background(), func(context.Context, []byte) error { return nil }), ErrClosed)
}

func TestPushPullBadEndpointsAndContextClose(t *testing.T) {
	_, err := NewPPPusher("tcp://nohost", WithZMQContext(newTestContext(t)))
	assert.ErrorIs(t, err, ErrInvalidEndpoint)
	_, err = NewPPPuller("", WithZMQContext(newTestContext(t)))
	assert.ErrorIs(t, err, ErrInvalidEndpoint)
	_, err = NewPPPuller("inproc://x", WithConcurrency(0))
	assert.ErrorIs(t, err, ErrInvalidOption)

	// Context.Close closes what is still open and unblocks its callers.
	zctx, err := NewContext()
	require.NoError(t, err)
	push, err := NewPPPusher("inproc://ctxclose", WithZMQContext(zctx))
	require.NoError(t, err)
	pull, err := NewPPPuller("inproc://other", WithZMQContext(zctx))
	require.NoError(t, err)
	errc := make(chan error, 2)
	go func() { errc <- push.Push(context.Background(), []byte("x")) }()
	go func() {
		_, err := pull.Receive(context.Background())
		errc <- err
	}()
	require.NoError(t, zctx.Close())
	requireAllReturn(t, errc, 2, ErrClosed)
}

// A message over WithMaxMessageSize makes libzmq drop the puller's
// connection, and libzmq would never make it again: zmqkit reports it,
// counts it and connects again, so later messages arrive.
func TestPullerRecoversFromOversizeMessage(t *testing.T) {
	for _, tr := range []string{"tcp", "ipc"} {
		t.Run(tr, func(t *testing.T) {
			var rec errorRecorder
			push, pull := newPushPull(t, tr, nil, []Option{WithMaxMessageSize(100), rec.option()})
			ctx := testCtx(t)
			require.NoError(t, push.Push(ctx, []byte("small")))
			got, err := pull.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "small", string(got))

			require.NoError(t, push.Push(ctx, make([]byte, 1000)))
			require.Eventually(t, func() bool { return pull.Stats().ProtocolErrors == 1 }, 10*time.Second, time.Millisecond)
			errs := rec.errors()
			require.Len(t, errs, 1)
			require.ErrorIs(t, errs[0], ErrConnectionDropped)
			assert.Contains(t, errs[0].Error(), "WithMaxMessageSize")

			require.NoError(t, push.Push(ctx, []byte("after")))
			got, err = pull.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "after", string(got))
		})
	}
}

// AppendReceive reuses the caller's buffer, grows it for a bigger message,
// refuses a multi-frame message leaving buf as it was, and ends with ctx
// and Close like Receive.
func TestPullerAppendReceive(t *testing.T) {
	push, pull := newPushPull(t, "tcp", nil, nil)
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("m"), 1<<20)
	buf := make([]byte, 0, 64)
	for _, m := range [][]byte{[]byte("one"), big, []byte("two"), {}} {
		require.NoError(t, push.Push(ctx, m))
		var err error
		buf, err = pull.AppendReceive(ctx, buf[:0])
		require.NoError(t, err)
		require.Equal(t, m, buf, "a message of %d bytes", len(m))
	}
	require.GreaterOrEqual(t, cap(buf), len(big))
	require.NoError(t, push.Push(ctx, []byte("reused")))
	out, err := pull.AppendReceive(ctx, buf[:0])
	require.NoError(t, err)
	require.Equal(t, "reused", string(out))
	require.Same(t, &buf[:1][0], &out[0], "received into buf's memory")

	require.NoError(t, push.PushFrames(ctx, []byte("a"), []byte("b")))
	out, err = pull.AppendReceive(ctx, append(buf[:0], "kept"...))
	require.ErrorIs(t, err, ErrMalformed)
	require.Equal(t, "kept", string(out))
	assert.Equal(t, uint64(6), pull.Stats().Received)
	assert.Equal(t, uint64(1), pull.Stats().Malformed)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	out, err = pull.AppendReceive(cctx, buf[:0])
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, out)
	require.NoError(t, pull.Close())
	_, err = pull.AppendReceive(ctx, nil)
	require.ErrorIs(t, err, ErrClosed)
}

// A bound PPPusher closed with messages queued delivers them all: Close
// leaves its tcp and ipc listeners to libzmq's close, which keeps the
// connections they accepted for the linger time. (It used to unbind them
// first, which cut those connections short: about one run in four lost a
// few hundred of the 10,000 queued messages.)
func TestBoundPusherCloseDeliversQueue(t *testing.T) {
	for _, tr := range []string{"tcp"} {
		t.Run(tr, func(t *testing.T) {
			const n, runs = 10000, 8
			ctx := testCtx(t)
			zctx := newTestContext(t)
			for run := range runs {
				push, err := NewPPPusher(bindEndpoint(t, tr), WithZMQContext(zctx))
				require.NoError(t, err)
				pull, err := NewPPPuller(push.Endpoints()[0], WithZMQContext(zctx))
				require.NoError(t, err)
				// The puller drains while the pusher pushes: the pipes hold
				// fewer than n.
				gotc := make(chan int, 1)
				go func() {
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					got := 0
					for ; got < n; got++ {
						msg, err := pull.Receive(rctx)
						if err != nil || string(msg) != strconv.Itoa(got) {
							break
						}
					}
					gotc <- got
				}()
				for i := range n {
					require.NoError(t, push.Push(ctx, []byte(strconv.Itoa(i))))
				}
				require.NoError(t, push.Close())
				got := <-gotc
				require.NoError(t, pull.Close())
				require.Equal(t, n, got, "run %d: received %d of %d after the pusher closed", run, got, n)
			}
		})
	}
}

// PushNoCopy: a sender that refills its two buffers as soon as their
// Trackers are done sends 300 messages, each with its own bytes, and every
// one arrives as it was sent. A Tracker done too early would let a refill
// tear a message libzmq was still reading. A message queued when its
// pusher closes is dropped once the linger runs out, and its Tracker is
// then done; a closed pusher returns ErrClosed and no Tracker.
func TestPushNoCopy(t *testing.T) {
	for _, tr := range []string{"inproc", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			push, pull := newPushPull(t, tr, nil, nil)
			ctx := testCtx(t)
			const n, size = 300, 96 << 10
			fill := func(b []byte, i int) {
				for j := range b {
					b[j] = byte(i + j/1024)
				}
			}
			errc := make(chan error, 1)
			go func() {
				var bufs [2][]byte
				var trackers [2]*Tracker
				for i := range n {
					k := i % 2
					if trackers[k] != nil {
						if err := trackers[k].Wait(ctx); err != nil {
							errc <- err
							return
						}
					}
					if bufs[k] == nil {
						bufs[k] = make([]byte, size)
					}
					fill(bufs[k], i)
					var err error
					if trackers[k], err = push.PushNoCopy(ctx, bufs[k]); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			want := make([]byte, size)
			var got []byte
			for i := range n {
				var err error
				got, err = pull.AppendReceive(ctx, got[:0])
				require.NoError(t, err)
				fill(want, i)
				require.True(t, bytes.Equal(want, got), "message %d differs from what was sent", i)
			}
			require.NoError(t, <-errc)
			assert.Equal(t, uint64(n), push.Stats().Sent)
		})
	}
	t.Run("close", func(t *testing.T) {
		ctx := testCtx(t)
		// The puller reads nothing: once the kernel's buffers and the
		// pipes are full, the last message pushed waits in the pusher.
		push, _ := newPushPull(t, "tcp", []Option{WithSendHWM(1), WithLinger(10 * time.Millisecond)}, []Option{WithRecvHWM(1)})
		var last *Tracker
		for {
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			tracker, err := push.PushNoCopy(short, make([]byte, 100<<10))
			cancel()
			if err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.Nil(t, tracker)
				break
			}
			last = tracker
		}
		require.NotNil(t, last)
		select {
		case <-last.Done():
			t.Fatal("done while the message is queued")
		default:
		}
		require.NoError(t, push.Close())
		require.NoError(t, last.Wait(ctx))
		tracker, err := push.PushNoCopy(ctx, []byte("late"))
		require.ErrorIs(t, err, ErrClosed)
		require.Nil(t, tracker)
	})
}
