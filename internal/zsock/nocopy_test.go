package zsock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

// releases counts SendNoCopy's release calls and says when all came.
type releases struct {
	n    atomic.Int64
	want atomic.Int64
	all  chan struct{}
}

func newReleases() *releases { return &releases{all: make(chan struct{}, 1)} }

// add returns the release function of one more frame.
func (r *releases) add() func() {
	r.want.Add(1)
	called := atomic.Bool{}
	return func() {
		if called.Swap(true) {
			panic("release called twice")
		}
		if r.n.Add(1) == r.want.Load() {
			select {
			case r.all <- struct{}{}:
			default:
			}
		}
	}
}

// await waits until every release function handed out has been called.
func (r *releases) await(t *testing.T, ctx context.Context) {
	t.Helper()
	for r.n.Load() != r.want.Load() {
		select {
		case <-r.all:
		case <-ctx.Done():
			t.Fatalf("%d of %d frames released", r.n.Load(), r.want.Load())
		}
	}
}

// Frames sent without a copy arrive whole, over inproc (where the receiver
// gets the sender's buffer) and tcp, alone, in a multi-frame message and
// several at once from one buffer; libzmq releases each exactly once, and
// on the pebbe fallback (a copy) before SendNoCopy returns.
func TestSendNoCopy(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		for _, tr := range []string{"inproc", "tcp"} {
			t.Run(fmt.Sprintf("fallback=%v/tr=%s", fallback, tr), func(t *testing.T) {
				testForceFallback.Store(fallback)
				t.Cleanup(func() { testForceFallback.Store(false) })
				zctx := newContext(t)
				addr := "tcp://127.0.0.1:*"
				if tr == "inproc" {
					addr = fmt.Sprintf("inproc://nocopy-%d", zctx.seq.Add(1))
				}
				push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0},
					Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
				require.NoError(t, err)
				t.Cleanup(func() { _ = push.Close() })
				pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0},
					Endpoints: []endpoint.Endpoint{{Addr: push.Bound()[0]}}})
				require.NoError(t, err)
				t.Cleanup(func() { _ = pull.Close() })
				require.Equal(t, fallback, push.recv.raw == nil)
				ctx := testCtx(t)
				rel := newReleases()
				send := func(b []byte, more bool) {
					t.Helper()
					before := rel.n.Load()
					require.NoError(t, push.SendNoCopy(ctx, b, more, rel.add()))
					if fallback || len(b) == 0 {
						require.Equal(t, before+1, rel.n.Load(), "released before SendNoCopy returns")
					}
				}
				var want [][][]byte
				for i, n := range []int{0, 1, 100, 64 << 10, 3 << 20} {
					b := frameOf(i, n)
					send(b, false)
					want = append(want, [][]byte{b})
				}
				head, tail := frameOf(10, 70<<10), frameOf(11, 5)
				send(head, true)
				send(tail, false)
				want = append(want, [][]byte{head, tail})
				shared := frameOf(12, 200<<10) // in flight three times at once
				for range 3 {
					send(shared, false)
					want = append(want, [][]byte{shared})
				}
				for i, w := range want {
					got, err := pull.RecvMessage(ctx)
					require.NoError(t, err)
					require.Equal(t, len(w), len(got), "message %d", i)
					for j := range w {
						require.True(t, string(w[j]) == string(got[j]), "message %d frame %d differs", i, j)
					}
				}
				rel.await(t, ctx)
			})
		}
	}
}

// A frame not sent, because ctx ended while the socket could take nothing
// or because the socket is closed, is released before SendNoCopy returns;
// one queued when the socket closes is released once libzmq drops it, by
// the time the context is terminated.
func TestSendNoCopyNotSent(t *testing.T) {
	zctx, err := NewContext(0)
	require.NoError(t, err)
	// Nothing listens at the endpoint: libzmq queues for the connection
	// it keeps trying to make.
	push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0, hwm(1)},
		Endpoints: []endpoint.Endpoint{{Addr: "tcp://127.0.0.1:1"}}})
	require.NoError(t, err)
	rel := newReleases()
	ctx := testCtx(t)
	b := frameOf(1, 100<<10)
	require.NoError(t, push.SendNoCopy(ctx, b, false, rel.add()))
	require.Zero(t, rel.n.Load(), "queued, not released")

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err = push.SendNoCopy(short, frameOf(2, 100<<10), false, rel.add()) // the queue is full
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, int64(1), rel.n.Load(), "the frame not sent is released")

	require.NoError(t, push.Close())
	err = push.SendNoCopy(ctx, frameOf(3, 100<<10), false, rel.add())
	require.True(t, errors.Is(err, ErrClosed), "got %v", err)
	require.NoError(t, zctx.Term())
	require.Equal(t, int64(3), rel.n.Load(), "the queued frame is released at last")
}

// A signal interrupting libzmq in a send without a copy loses nothing:
// the frame is sent again, and released once.
func TestEINTRInNoCopy(t *testing.T) {
	t.Cleanup(func() { injectEINTR(0) })
	zctx := newContext(t)
	push, pull := newPushPull(t, zctx, Netpoller)
	ctx := testCtx(t)
	rel := newReleases()
	b := frameOf(1, 64<<10)
	injectEINTR(1)
	require.NoError(t, push.SendNoCopy(ctx, b, false, rel.add()))
	require.Zero(t, eintrPending(), "the EINTR was hit")
	got, err := pull.RecvBytes(ctx)
	require.NoError(t, err)
	require.True(t, string(b) == string(got))
	rel.await(t, ctx)
}
