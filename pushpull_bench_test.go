package zmqkit

import (
	"context"
	"testing"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"
)

// BenchmarkPushPull compares a zmqkit PPPusher→PPPuller with a hand-written
// pebbe/zmq4 PUSH→PULL loop, in the same run and with the same settings
// (libzmq's default high-water marks of 1000, so the pusher blocks rather
// than drops). One op is one message pushed and pulled, Push in one
// goroutine and Pull in another. make bench prints the ratio of their
// msgs/s.
func BenchmarkPushPull(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp"} {
		for _, size := range benchSizes {
			b.Run(tr+"/"+size.name+"/zmqkit", func(b *testing.B) { benchZmqkitPushPull(b, tr, size.n) })
			b.Run(tr+"/"+size.name+"/pebbe", func(b *testing.B) { benchPebbePushPull(b, tr, size.n) })
		}
	}
}

func benchZmqkitPushPull(b *testing.B, tr string, size int) {
	push, pull := newPushPull(b, tr, nil, nil)
	ctx := context.Background()
	msg := make([]byte, size)
	measureStream(b, size, func() error {
		return push.Push(ctx, msg)
	}, func() error {
		got, err := pull.Receive(ctx)
		return wantLen(len(got), size, err)
	})
}

func benchPebbePushPull(b *testing.B, tr string, size int) {
	zctx, err := zmq.NewContext()
	require.NoError(b, err)
	push, err := zctx.NewSocket(zmq.PUSH)
	require.NoError(b, err)
	pull, err := zctx.NewSocket(zmq.PULL)
	require.NoError(b, err)
	defer func() {
		for _, s := range []*zmq.Socket{push, pull} {
			require.NoError(b, s.SetLinger(0))
			require.NoError(b, s.Close())
		}
		require.NoError(b, zctx.Term())
	}()
	for _, s := range []*zmq.Socket{push, pull} {
		require.NoError(b, s.SetSndhwm(DefaultHWM))
		require.NoError(b, s.SetRcvhwm(DefaultHWM))
	}
	require.NoError(b, push.Bind(bindEndpoint(b, tr)))
	ep, err := push.GetLastEndpoint()
	require.NoError(b, err)
	require.NoError(b, pull.Connect(ep))

	msg := make([]byte, size)
	measureStream(b, size, func() error {
		_, err := push.SendBytes(msg, 0)
		return err
	}, func() error {
		got, err := pull.RecvBytes(0)
		return wantLen(len(got), size, err)
	})
}
