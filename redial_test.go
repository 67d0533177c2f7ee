package zmqkit

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bogusServer listens on a tcp port and answers the first connection with
// a ZMTP 3.0 greeting for a mechanism nobody has, which libzmq takes for a
// protocol error and never reconnects after; it returns the endpoint and a
// func that waits for that connection to end, then frees the port.
func bogusServer(t *testing.T) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		greeting := make([]byte, 64)
		greeting[0], greeting[9], greeting[10], greeting[11] = 0xff, 0x7f, 3, 0
		copy(greeting[12:], "BOGUS")
		_, _ = c.Write(greeting)
		_, _ = io.Copy(io.Discard, c) // until the client hangs up
	}()
	return "tcp://" + l.Addr().String(), func() {
		t.Helper()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("the object never connected to the bogus server, or never hung up")
		}
		require.NoError(t, l.Close())
	}
}

// A connecting object whose first "server" does not speak ZMTP (another
// service on the port, before the real one) reaches the real peer that
// binds the address next: zmqkit connects again where libzmq gives up, and
// reports the drop. (Before, only objects made WithMaxMessageSize or as
// CURVE clients did: the others stayed disconnected for good.)
func TestConnectAfterNonZMTPServerEveryType(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exchange func(t *testing.T, zctx *Context, ep string, hangUp func(), opts []Option) Stats
	}{
		{"Subscriber", func(t *testing.T, zctx *Context, ep string, hangUp func(), opts []Option) Stats {
			sub, err := NewSubscriber(ep, opts...)
			require.NoError(t, err)
			closeOnCleanup(t, sub)
			hangUp()
			pub, err := NewPublisher("@"+ep, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, pub)
			awaitSubscribed(t, pub, sub)
			return sub.Stats()
		}},
		{"RRClient", func(t *testing.T, zctx *Context, ep string, hangUp func(), opts []Option) Stats {
			cli, err := NewRRClient(ep, opts...)
			require.NoError(t, err)
			closeOnCleanup(t, cli)
			hangUp()
			srv, err := NewRRServer("@"+ep, echo, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, srv)
			runServer(t, srv)
			reply, err := cli.Request(testCtx(t), []byte("x"))
			require.NoError(t, err)
			assert.Equal(t, "reply:x", string(reply))
			return cli.Stats()
		}},
		{"PPPuller", func(t *testing.T, zctx *Context, ep string, hangUp func(), opts []Option) Stats {
			pull, err := NewPPPuller(ep, opts...)
			require.NoError(t, err)
			closeOnCleanup(t, pull)
			hangUp()
			return pushTo(t, zctx, ep, pull)
		}},
		// A connection added with AddEndpoint to an object made without
		// one over tcp or ipc is watched too. (Before, only the
		// constructor's endpoints decided, and the object stayed
		// disconnected for good.)
		{"PPPuller/AddEndpoint", func(t *testing.T, zctx *Context, ep string, hangUp func(), opts []Option) Stats {
			pull, err := NewPPPuller("@inproc://late-connect", opts...)
			require.NoError(t, err)
			closeOnCleanup(t, pull)
			require.NoError(t, pull.AddEndpoint(ep))
			hangUp()
			return pushTo(t, zctx, ep, pull)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			zctx := newTestContext(t)
			ep, hangUp := bogusServer(t)
			var rec errorRecorder
			st := tc.exchange(t, zctx, ep, hangUp, []Option{WithZMQContext(zctx), WithReconnectInterval(20*time.Millisecond, 0), rec.option()})
			assert.EqualValues(t, 1, st.ProtocolErrors)
			require.Eventually(t, func() bool {
				for _, err := range rec.errors() {
					if errors.Is(err, ErrConnectionDropped) {
						return true
					}
				}
				return false
			}, 10*time.Second, time.Millisecond, "the drop was not reported")
		})
	}
}

// pushTo binds a PPPusher on ep, pushes one message to pull, checks it
// arrives, and returns pull's counters.
func pushTo(t *testing.T, zctx *Context, ep string, pull *PPPuller) Stats {
	t.Helper()
	push, err := NewPPPusher("@"+ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	require.NoError(t, push.Push(testCtx(t), []byte("x")))
	got, err := pull.Receive(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, "x", string(got))
	return pull.Stats()
}
