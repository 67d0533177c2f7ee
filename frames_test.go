package zmqkit

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The single-frame patterns (SUB, PULL, PAIR) refuse a multi-frame message
// whole, as a *MalformedError, rather than pass its first frame on as if it
// were all of it; the next message comes through normally.

func requireMultiFrame(t testing.TB, err error) {
	t.Helper()
	var me *MalformedError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "message of 3 frames, want 1", me.Reason)
}

func TestSubscriberRefusesMultiFrameMessages(t *testing.T) {
	pub, sub := newPubSub(t, "inproc", nil, []Option{WithMsgIDs(1000)})
	ctx := testCtx(t)
	require.NoError(t, pub.sock.SendMessage(ctx, []byte("1000 text a"), []byte("b"), []byte("c")))
	require.NoError(t, pub.Publish(ctx, "next"))
	_, err := receive(ctx, sub)
	requireMultiFrame(t, err)
	m, err := receive(ctx, sub)
	require.NoError(t, err)
	assert.Equal(t, "next", m.Text())
	assert.Equal(t, uint64(1), sub.Stats().Malformed)
}

func TestPullerRefusesMultiFrameMessages(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	var rec errorRecorder
	got := make(chan string, 1)
	handler := func(_ context.Context, msg []byte) error {
		got <- string(msg)
		return nil
	}
	pull, err := NewPPPuller("@inproc://frames", WithZMQContext(zctx), rec.option())
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	push, err := NewPPPusher(">inproc://frames", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)

	require.NoError(t, push.sock.SendMessage(ctx, []byte("a"), []byte("b"), []byte("c")))
	require.NoError(t, push.Push(ctx, []byte("first")))
	require.NoError(t, push.sock.SendMessage(ctx, []byte("a"), []byte("b"), []byte("c")))
	require.NoError(t, push.Push(ctx, []byte("next")))

	_, err = pull.Receive(ctx)
	requireMultiFrame(t, err)
	msg, err := pull.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "first", string(msg))

	stop := runInBackground(t, func(ctx context.Context) error { return pull.Run(ctx, handler) })
	select {
	case s := <-got:
		assert.Equal(t, "next", s, "Run reports the bad message and goes on")
	case <-ctx.Done():
		t.Fatal("Run stopped at a multi-frame message")
	}
	require.ErrorIs(t, stop(), context.Canceled)
	errs := rec.errors()
	require.Len(t, errs, 1)
	requireMultiFrame(t, errs[0])
	assert.Equal(t, uint64(2), pull.Stats().Malformed)
}

// rawPair returns a bare pebbe PAIR socket on zctx (see rawSocket).
func rawPair(t testing.TB, zctx *Context) *zmq.Socket { return rawSocket(t, zctx, zmq.PAIR) }

// rawSocket returns a bare pebbe socket of type typ on zctx, as a program
// that is not zmqkit's would use, closed (linger 0) before the test's
// context is. Receives time out after 10 s.
func rawSocket(t testing.TB, zctx *Context, typ zmq.Type) *zmq.Socket {
	t.Helper()
	s, err := zctx.zc.ZMQ().NewSocket(typ)
	require.NoError(t, err)
	require.NoError(t, s.SetRcvtimeo(10*time.Second))
	t.Cleanup(func() {
		require.NoError(t, s.SetLinger(0))
		require.NoError(t, s.Close())
	})
	return s
}

func TestPairServerAnswersMultiFrameMessagesWithAnErrorReply(t *testing.T) {
	zctx := newTestContext(t)
	var rec errorRecorder
	srv, err := NewPairServer("inproc://pair-frames", upper, WithZMQContext(zctx), rec.option())
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	stop := runInBackground(t, srv.Run)

	peer := rawPair(t, zctx)
	require.NoError(t, peer.Connect("inproc://pair-frames"))
	_, err = peer.SendMessage("a", "b", "c")
	require.NoError(t, err)
	reply, err := peer.RecvBytes(0)
	require.NoError(t, err)
	assert.Equal(t, ErrorReplyPrefix+"message of 3 frames, want 1", string(reply))
	_, err = peer.Send("still serving", 0)
	require.NoError(t, err)
	reply, err = peer.RecvBytes(0)
	require.NoError(t, err)
	assert.Equal(t, "STILL SERVING", string(reply))

	require.ErrorIs(t, stop(), context.Canceled)
	errs := rec.errors()
	require.Len(t, errs, 1)
	requireMultiFrame(t, errs[0])
}

func TestPairClientRefusesMultiFrameMessages(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	peer := rawPair(t, zctx)
	require.NoError(t, peer.Bind("inproc://pair-client-frames"))
	cli, err := NewPairClient("inproc://pair-client-frames", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)

	_, err = peer.SendMessage("a", "b", "c")
	require.NoError(t, err)
	_, err = peer.Send("next", 0)
	require.NoError(t, err)
	_, err = cli.Receive(ctx)
	requireMultiFrame(t, err)
	msg, err := cli.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "next", string(msg))
}

// Multi-frame messages go through whole where a type sends and receives
// frames: push/pull and both directions of a pair.
func TestFramesBothWays(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	frames := [][]byte{[]byte("topic"), {}, []byte("body")}

	push, err := NewPPPusher("inproc://frames-pp", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	pull, err := NewPPPuller("inproc://frames-pp", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	require.NoError(t, push.PushFrames(ctx, frames...))
	got, err := pull.ReceiveFrames(ctx)
	require.NoError(t, err)
	assert.Equal(t, frames, got)
	require.ErrorIs(t, push.PushFrames(ctx), ErrInvalidArgument)

	srv, err := NewPairServer("inproc://frames-pair", upper, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	cli, err := NewPairClient("inproc://frames-pair", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	require.NoError(t, srv.SendFrames(ctx, frames...))
	got, err = cli.ReceiveFrames(ctx)
	require.NoError(t, err)
	assert.Equal(t, frames, got)
	require.NoError(t, cli.SendFrames(ctx, []byte("one frame")))
	stop := runInBackground(t, srv.Run)
	reply, err := cli.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ONE FRAME", string(reply))
	require.ErrorIs(t, stop(), context.Canceled)
	assert.EqualValues(t, 2, cli.Stats().Received)
	assert.EqualValues(t, 2, srv.Stats().Sent)
}
