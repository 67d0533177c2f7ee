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

// frameOf is frame i of size n: bytes that differ from every other
// frame's, so a pooled buffer reused while libzmq still held it would show
// as another frame's contents.
func frameOf(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j/4096)
	}
	copy(b, fmt.Sprintf("frame %d:", i))
	return b
}

// Large frames go through the send buffer pool (zk.c) on every send path,
// many in libzmq's queues at once, and each arrives with its own bytes;
// once the sockets are closed and the context terminated, libzmq has given
// every buffer back and the pool keeps at most its bound.
func TestSendPool(t *testing.T) {
	_, out0, minFrame, keep := poolStats()
	sizes := []int{minFrame - 1, minFrame, minFrame + 1, 5 * minFrame / 4, 3 << 20}
	for _, tr := range []string{"inproc", "tcp"} {
		t.Run("tr="+tr, func(t *testing.T) {
			zctx, err := NewContext(0)
			require.NoError(t, err)
			addr := "tcp://127.0.0.1:*"
			if tr == "inproc" {
				addr = fmt.Sprintf("inproc://pool-%d", zctx.seq.Add(1))
			}
			push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0, hwm(1000)},
				Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
			require.NoError(t, err)
			pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0, hwm(1000)},
				Endpoints: []endpoint.Endpoint{{Addr: push.Bound()[0]}}})
			require.NoError(t, err)
			ctx := testCtx(t)

			// Every message is sent before any is received: the buffers
			// are all out at once.
			var want [][][]byte
			i := 0
			for _, n := range sizes {
				a, b := frameOf(i, n), frameOf(i+1, n)
				require.NoError(t, push.SendBytes(ctx, a, false))
				require.NoError(t, push.SendMessage(ctx, a, b))
				head := []byte("head ")
				require.NoError(t, push.SendConcat(ctx, head, b))
				want = append(want, [][]byte{a}, [][]byte{a, b}, [][]byte{append(head, b...)})
				i += 2
			}
			for k, w := range want {
				got, err := pull.RecvMessage(ctx)
				require.NoError(t, err)
				require.Len(t, got, len(w), "message %d", k)
				for f := range w {
					require.True(t, bytes.Equal(w[f], got[f]), "message %d frame %d: wrong bytes", k, f)
				}
			}

			// A send that fails gives its buffer back too: a PUSH without
			// a peer takes nothing.
			require.NoError(t, pull.Close())
			lone, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0}})
			require.NoError(t, err)
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, lone.SendBytes(short, frameOf(0, 2*minFrame), false), context.DeadlineExceeded)

			require.NoError(t, lone.Close())
			require.NoError(t, push.Close())
			require.NoError(t, zctx.Term())
			kept, out, _, _ := poolStats()
			require.Equal(t, out0, out, "buffers libzmq has not given back")
			require.LessOrEqual(t, kept, keep)
			require.Positive(t, kept, "the pool keeps buffers for the next frames")
		})
	}
}
