package zmqkit

import (
	"context"
	"testing"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/cbench"
)

// pushPullSizes are the push/pull benchmarks' message sizes.
var pushPullSizes = []size{size16B, size64B, size1KiB, size64KiB, size1MiB}

// BenchmarkPushPull compares a zmqkit PPPusher→PPPuller (impl=zmqkit) with
// a hand-written pebbe/zmq4 PUSH→PULL loop (impl=pebbe) and C libzmq's
// (impl=c, cbench.PushPull), all with libzmq's default high-water marks of
// 1000, so the pusher blocks rather than drops. One op is one message
// pushed and pulled, Push in one goroutine (thread, in C) and Pull in
// another.
func BenchmarkPushPull(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp"} {
		for _, sz := range pushPullSizes {
			name := "tr=" + tr + "/size=" + sz.name + "/impl="
			b.Run(name+"zmqkit", func(b *testing.B) { measureStream(b, sz.n, zmqkitPushPull(b, tr, sz.n, false)) })
			b.Run(name+"zmqkit-append", func(b *testing.B) { measureStream(b, sz.n, zmqkitPushPull(b, tr, sz.n, true)) })
			b.Run(name+"zmqkit-batch", func(b *testing.B) { measureBatch(b, sz.n, zmqkitPushPullBatch(b, tr, sz.n)) })
			if sz.n >= size64KiB.n {
				b.Run(name+"zmqkit-nocopy", func(b *testing.B) { measureStream(b, sz.n, zmqkitPushPullNoCopy(b, tr, sz.n)) })
			}
			b.Run(name+"pebbe", func(b *testing.B) { measureStream(b, sz.n, pebbePushPull(b, tr, sz.n)) })
			b.Run(name+"c", func(b *testing.B) {
				d, err := cbench.PushPull(tr, sz.n, b.N)
				reportC(b, sz.n, d, err, "msgs/s")
			})
		}
	}
}

// zmqkitPushPull is a PPPusher bound on tr and a PPPuller connected to it;
// the puller receives with Receive, or with appendRecv into one reused
// buffer (AppendReceive, impl=zmqkit-append).
func zmqkitPushPull(b *testing.B, tr string, size int, appendRecv bool) stream {
	push, pull := newPushPull(b, tr, nil, nil)
	ctx := context.Background()
	msg := make([]byte, size)
	recv := func() error {
		got, err := pull.Receive(ctx)
		return wantLen(len(got), size, err)
	}
	if appendRecv {
		var buf []byte
		recv = func() error {
			var err error
			buf, err = pull.AppendReceive(ctx, buf[:0])
			return wantLen(len(buf), size, err)
		}
	}
	return stream{send: func() error { return push.Push(ctx, msg) }, recv: recv}
}

// noCopyBufs is how many buffers the impl=zmqkit-nocopy sender cycles
// through.
const noCopyBufs = 8

// zmqkitPushPullNoCopy is zmqkitPushPull with the pusher sending with
// PushNoCopy, as a sender that reuses its buffers would: it cycles through
// noCopyBufs buffers and waits for a buffer's Tracker before it sends the
// buffer again (impl=zmqkit-nocopy). The puller receives with
// AppendReceive.
func zmqkitPushPullNoCopy(b *testing.B, tr string, size int) stream {
	push, pull := newPushPull(b, tr, nil, nil)
	ctx := context.Background()
	var bufs [noCopyBufs]struct {
		msg []byte
		t   *Tracker
	}
	for i := range bufs {
		bufs[i].msg = make([]byte, size)
	}
	next := 0
	send := func() error {
		buf := &bufs[next%noCopyBufs]
		next++
		if buf.t != nil {
			if err := buf.t.Wait(ctx); err != nil {
				return err
			}
		}
		var err error
		buf.t, err = push.PushNoCopy(ctx, buf.msg)
		return err
	}
	var got []byte
	recv := func() error {
		var err error
		got, err = pull.AppendReceive(ctx, got[:0])
		return wantLen(len(got), size, err)
	}
	return stream{send: send, recv: recv}
}

// zmqkitPushPullBatch is zmqkitPushPull moving messages with PushBatch and
// ReceiveBatch (impl=zmqkit-batch).
func zmqkitPushPullBatch(b *testing.B, tr string, size int) batchStream {
	push, pull := newPushPull(b, tr, nil, nil)
	ctx := context.Background()
	msgs := make([][]byte, sendBatch)
	for i := range msgs {
		msgs[i] = make([]byte, size)
	}
	return batchStream{
		send: func(n int) (int, error) { return push.PushBatch(ctx, msgs[:n]) },
		recv: func() (int, error) {
			got, err := pull.ReceiveBatch(ctx, MaxBatch)
			for _, m := range got {
				if err := wantLen(len(m), size, nil); err != nil {
					return 0, err
				}
			}
			return len(got), err
		},
	}
}

// pebbePushPull is the hand-written loop's PUSH bound on tr and PULL
// connected to it, on their own pebbe context, closed by b's cleanup.
func pebbePushPull(b *testing.B, tr string, size int) stream {
	// zmqkit sets both marks on both sockets, to libzmq's default.
	hwm := setAll(sndHWM(DefaultHWM), rcvHWM(DefaultHWM))
	push, pull := pebbePair(b, zmq.PUSH, zmq.PULL, hwm, hwm)
	require.NoError(b, push.Bind(bindEndpoint(b, tr)))
	ep, err := push.GetLastEndpoint()
	require.NoError(b, err)
	require.NoError(b, pull.Connect(ep))
	msg := make([]byte, size)
	return stream{
		send: func() error {
			_, err := push.SendBytes(msg, 0)
			return err
		},
		recv: func() error {
			got, err := pull.RecvBytes(0)
			return wantLen(len(got), size, err)
		},
	}
}

// pebbePair makes two sockets of types bindT and connT on a new pebbe
// context and applies setBind and setConn (high-water marks, CURVE keys) to
// them, before they bind or connect. b's cleanup closes them with linger 0
// and terminates the context; whatever goroutine used them must have
// stopped by then.
func pebbePair(b *testing.B, bindT, connT zmq.Type, setBind, setConn func(*zmq.Socket) error) (bound, conn *zmq.Socket) {
	b.Helper()
	zctx, err := zmq.NewContext()
	require.NoError(b, err)
	var socks []*zmq.Socket
	b.Cleanup(func() {
		for _, s := range socks {
			require.NoError(b, s.SetLinger(0))
			require.NoError(b, s.Close())
		}
		require.NoError(b, zctx.Term())
	})
	for _, st := range []struct {
		t   zmq.Type
		set func(*zmq.Socket) error
	}{{bindT, setBind}, {connT, setConn}} {
		s, err := zctx.NewSocket(st.t)
		require.NoError(b, err)
		socks = append(socks, s)
		if st.set != nil {
			require.NoError(b, st.set(s))
		}
	}
	return socks[0], socks[1]
}

// setAll applies each of sets that is not nil, in order.
func setAll(sets ...func(*zmq.Socket) error) func(*zmq.Socket) error {
	return func(s *zmq.Socket) error {
		for _, set := range sets {
			if set == nil {
				continue
			}
			if err := set(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// sndHWM and rcvHWM set a socket's high-water marks.
func sndHWM(n int) func(*zmq.Socket) error {
	return func(s *zmq.Socket) error { return s.SetSndhwm(n) }
}

func rcvHWM(n int) func(*zmq.Socket) error {
	return func(s *zmq.Socket) error { return s.SetRcvhwm(n) }
}
