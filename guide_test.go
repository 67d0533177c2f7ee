package zmqkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The ZeroMQ Guide's programs, as its examples (ported to Go in
// pebbe/zmq4) use their sockets, on the other side of zmqkit objects: a
// zmqkit program must be able to talk to any ZeroMQ program.

// untilReceived sends with send every 10 ms until recv gets something (a
// slow joiner's subscription has arrived), and returns what it got.
func untilReceived[T any](t *testing.T, send func() error, recv func(ctx context.Context) (T, error)) T {
	t.Helper()
	ctx := testCtx(t)
	for {
		require.NoError(t, send())
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		v, err := recv(rctx)
		cancel()
		if err == nil {
			return v
		}
		require.NoError(t, ctx.Err(), "nothing ever arrived")
	}
}

// wuserver publishes "%05d %d %d" (zipcode, temperature, humidity); its
// clients subscribe to a zipcode prefix. A Subscriber reads those frames
// as the Python module does: the zipcode as msgid, leading zero and all.
func TestGuideWeatherServer(t *testing.T) {
	zctx := newTestContext(t)
	pub := rawSocket(t, zctx, zmq.PUB)
	require.NoError(t, pub.Bind("tcp://127.0.0.1:*"))
	ep, err := pub.GetLastEndpoint()
	require.NoError(t, err)

	all, err := NewSubscriber(ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, all)
	nyc, err := NewSubscriber(ep, WithZMQContext(zctx), WithMsgIDs(10001))
	require.NoError(t, err)
	closeOnCleanup(t, nyc)
	zero, err := NewSubscriber(ep, WithZMQContext(zctx), WithMsgIDs(1)) // receives nothing by id ...
	require.NoError(t, err)
	closeOnCleanup(t, zero)
	require.NoError(t, zero.SubscribePrefix([]byte("02815 "))) // ... but the zipcode's prefix

	send := func(s string) func() error { return func() error { _, err := pub.Send(s, 0); return err } }
	m := untilReceived(t, send(fmt.Sprintf("%05d %d %d", 2815, 34, 65)), all.Receive)
	assert.Equal(t, Message{ID: 2815, Type: "34", Body: []byte("65")}, m)
	m = untilReceived(t, send(fmt.Sprintf("%05d %d %d", 10001, -3, 80)), nyc.Receive)
	assert.Equal(t, Message{ID: 10001, Type: "-3", Body: []byte("80")}, m)
	m = untilReceived(t, send(fmt.Sprintf("%05d %d %d", 2815, 12, 40)), zero.Receive)
	assert.Equal(t, 2815, m.ID)
}

// syncpub publishes a count of "Rhubarb" updates, then a bare "END";
// syncsub receives until "END". Both sides with zmqkit: a Publisher with
// PublishFrames for the bare frames, and a Subscriber reading them with
// ReceiveFrames.
func TestGuideSyncPubSub(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	t.Run("zmqkit syncpub, Guide syncsub", func(t *testing.T) {
		pub, err := NewPublisher("tcp://127.0.0.1:*", WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, pub)
		sub := rawSocket(t, zctx, zmq.SUB)
		require.NoError(t, sub.SetSubscribe(""))
		require.NoError(t, sub.Connect(pub.Endpoints()[0]))
		untilReceived(t, func() error { return pub.PublishFrames(ctx, []byte("sync")) }, func(context.Context) (string, error) {
			return sub.Recv(zmq.DONTWAIT)
		})
		for i := 0; i < 10; i++ {
			require.NoError(t, pub.PublishFrames(ctx, []byte("Rhubarb")))
		}
		require.NoError(t, pub.PublishFrames(ctx, []byte("END")))
		updates := 0
		for {
			s, err := sub.Recv(0)
			require.NoError(t, err)
			if s == "END" {
				break
			}
			if s == "Rhubarb" {
				updates++
			}
		}
		assert.Equal(t, 10, updates)
	})
	t.Run("Guide syncpub, zmqkit syncsub", func(t *testing.T) {
		pub := rawSocket(t, zctx, zmq.PUB)
		require.NoError(t, pub.Bind("tcp://127.0.0.1:*"))
		ep, err := pub.GetLastEndpoint()
		require.NoError(t, err)
		sub, err := NewSubscriber(ep, WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, sub)
		untilReceived(t, func() error { _, err := pub.Send("sync", 0); return err }, sub.ReceiveFrames)
		for i := 0; i < 10; i++ {
			_, err := pub.Send("Rhubarb", 0)
			require.NoError(t, err)
		}
		_, err = pub.Send("END", 0)
		require.NoError(t, err)
		updates := 0
		for {
			frames, err := sub.ReceiveFrames(ctx)
			require.NoError(t, err)
			if string(frames[0]) == "END" {
				break
			}
			if string(frames[0]) == "Rhubarb" {
				updates++
			}
		}
		assert.Equal(t, 10, updates)
	})
}

// psenvpub publishes [topic, body] envelopes (topics "A" and "B");
// psenvsub subscribes to "B" and reads both frames. lvcache expects the
// same two frames from its publishers.
func TestGuideEnvelopes(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	t.Run("zmqkit psenvpub, Guide psenvsub", func(t *testing.T) {
		pub, err := NewPublisher("tcp://127.0.0.1:*", WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, pub)
		sub := rawSocket(t, zctx, zmq.SUB)
		require.NoError(t, sub.SetSubscribe("B"))
		require.NoError(t, sub.Connect(pub.Endpoints()[0]))
		got := untilReceived(t, func() error {
			if err := pub.PublishFrames(ctx, []byte("A"), []byte("We don't want to see this")); err != nil {
				return err
			}
			return pub.PublishFrames(ctx, []byte("B"), []byte("We would like to see this"))
		}, func(context.Context) ([]string, error) { return sub.RecvMessage(zmq.DONTWAIT) })
		assert.Equal(t, []string{"B", "We would like to see this"}, got)
	})
	t.Run("Guide psenvpub, zmqkit psenvsub", func(t *testing.T) {
		pub := rawSocket(t, zctx, zmq.PUB)
		require.NoError(t, pub.Bind("tcp://127.0.0.1:*"))
		ep, err := pub.GetLastEndpoint()
		require.NoError(t, err)
		sub, err := NewSubscriber(ep, WithZMQContext(zctx), WithMsgIDs(0))
		require.NoError(t, err)
		closeOnCleanup(t, sub)
		require.NoError(t, sub.SubscribePrefix([]byte("B")))
		got := untilReceived(t, func() error {
			if _, err := pub.SendMessage("A", "We don't want to see this"); err != nil {
				return err
			}
			_, err := pub.SendMessage("B", "We would like to see this")
			return err
		}, sub.ReceiveFrames)
		assert.Equal(t, [][]byte{[]byte("B"), []byte("We would like to see this")}, got)
		// Receive refuses the two-frame message whole, and says why.
		_, err = pub.SendMessage("B", "again")
		require.NoError(t, err)
		_, err = sub.Receive(ctx)
		require.ErrorIs(t, err, ErrMalformed)
	})
}

// taskvent pushes "0" as a start signal, then workloads as decimal
// strings; taskwork pulls them and pushes results to the sink.
func TestGuideTaskVentilator(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	vent := rawSocket(t, zctx, zmq.PUSH)
	require.NoError(t, vent.Bind("tcp://127.0.0.1:*"))
	ep, err := vent.GetLastEndpoint()
	require.NoError(t, err)
	pull, err := NewPPPuller(ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	sink, err := NewPPPuller("@tcp://127.0.0.1:*", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, sink)
	worker, err := NewPPPusher(">"+sink.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, worker)
	for _, w := range []string{"0", "17", "42"} {
		_, err := vent.Send(w, 0)
		require.NoError(t, err)
	}
	for _, want := range []string{"0", "17", "42"} {
		task, err := pull.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(task))
		require.NoError(t, worker.PushFrames(ctx, task))
		got, err := sink.Receive(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
}
