package zsock

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

// A Mover moves whole messages, in order, in batches of at most max; it
// says which side stopped it, holds a message the destination cannot take
// and sends it first once the destination can; a closed socket stops it
// with the message still held. Both on zk_move and on the fallback.
func TestMover(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			testForceFallback.Store(fallback)
			t.Cleanup(func() { testForceFallback.Store(false) })
			testMover(t, fallback)
		})
	}
}

func testMover(t *testing.T, fallback bool) {
	zctx := newContext(t)
	ctx := testCtx(t)
	in, src := newPushPull(t, zctx, Netpoller)
	dst, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0, hwm(1)}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dst.Close() })
	m := NewMover(src, dst)
	require.Equal(t, fallback, m.h == nil)

	res, err := m.Move(10)
	require.NoError(t, err)
	require.Equal(t, MoveResult{Blocked: SrcEmpty}, res)

	big := bytes.Repeat([]byte("b"), 3*scratchSize)
	msgs := [][][]byte{{[]byte("one")}, {[]byte("a"), {}, big, []byte("c")}, {{}}, {big}}
	for _, msg := range msgs {
		require.NoError(t, in.SendMessage(ctx, msg...))
	}
	waitIn(t, src)
	// No peer: the first message is taken and held.
	res, err = m.Move(10)
	require.NoError(t, err)
	require.Equal(t, MoveResult{Taken: 1, Blocked: DstFull}, res)
	require.True(t, m.Held())

	addr := fmt.Sprintf("inproc://mover-%d", zctx.seq.Add(1))
	out, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0, hwm(1)}, Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = out.Close() })
	require.NoError(t, dst.Attach(endpoint.Endpoint{Addr: addr}))
	want := msgs
	for len(want) > 0 {
		res, err := m.Move(2)
		require.NoError(t, err)
		require.LessOrEqual(t, res.Sent, 2)
		require.Zero(t, res.Dropped)
		for range res.Sent { // make room: the marks are 1
			got, err := out.RecvMessage(ctx)
			require.NoError(t, err)
			require.Equal(t, want[0], got)
			want = want[1:]
		}
		require.Equal(t, res.Blocked == DstFull, m.Held())
		if res.Blocked == DstFull {
			require.NoError(t, dst.Wait(ctx, false, true))
		}
	}
	res, err = m.Move(2)
	require.NoError(t, err)
	require.Equal(t, MoveResult{Blocked: SrcEmpty}, res)
	require.False(t, m.Close())

	// A closed socket stops a Mover, the held message still held: Close
	// reports it.
	lone, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = lone.Close() })
	m = NewMover(src, lone)
	require.NoError(t, in.SendBytes(ctx, []byte("last"), false))
	waitIn(t, src)
	res, err = m.Move(10)
	require.NoError(t, err)
	require.Equal(t, MoveResult{Taken: 1, Blocked: DstFull}, res)
	require.NoError(t, lone.Close())
	_, err = m.Move(10)
	require.ErrorIs(t, err, ErrClosed)
	require.True(t, m.Held())
	require.True(t, m.Close(), "the held message is reported")
	require.False(t, m.Close())
}

// waitIn waits until s has a message.
func waitIn(t *testing.T, s *Socket) {
	t.Helper()
	require.Eventually(t, func() bool {
		ev, err := eventsOf(s)
		return err == nil && ev&zmq.POLLIN != 0
	}, 5*time.Second, time.Millisecond)
}

// A message a Mover gives a DEALER whose pipe dies mid-message goes again
// whole (see TestDealerPipeDiesMidMessage), on zk_move and the fallback.
func TestMoverDealerPipeDies(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			testForceFallback.Store(fallback)
			t.Cleanup(func() { testForceFallback.Store(false) })
			dealerPipeDies(t, func(ctx context.Context, zctx *Context, dealer *Socket, msg func(int) [][]byte) error {
				in, src := newPushPull(t, zctx, Netpoller)
				go func() {
					for i := 0; ctx.Err() == nil; i++ {
						_ = in.SendMessage(ctx, msg(i)...)
					}
				}()
				m := NewMover(src, dealer)
				defer m.Close()
				for {
					res, err := m.Move(8)
					if err != nil {
						return err
					}
					switch res.Blocked {
					case SrcEmpty:
						err = src.Wait(ctx, true, false)
					case DstFull:
						err = dealer.Wait(ctx, false, true)
					}
					if err != nil {
						return err
					}
				}
			})
		})
	}
}

// zk_move retries a signal on any frame it receives or sends: the message
// still moves whole.
func TestMoverEINTR(t *testing.T) {
	t.Cleanup(func() { injectEINTR(0) })
	zctx := newContext(t)
	ctx := testCtx(t)
	in, src := newPushPull(t, zctx, Netpoller)
	dst, out := newPushPull(t, zctx, Netpoller)
	m := NewMover(src, dst)
	defer m.Close()
	msg := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 100), []byte("c")}
	for at := 1; at <= 2*len(msg); at++ {
		require.NoError(t, in.SendMessage(ctx, msg...))
		waitIn(t, src)
		injectEINTR(at)
		res, err := m.Move(1)
		injectEINTR(0)
		require.NoError(t, err)
		require.Equal(t, MoveResult{Taken: 1, Sent: 1}, res, "EINTR at frame %d", at)
		got, err := out.RecvMessage(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, got)
	}
}
