package zmqkit

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyPairServer is a pyzmq PAIR that binds argv[1] (default: an ephemeral
// port) and prints the address,
// answers each message upper-cased, and on "hello" first sends "unprompted"
// and then the answer; it exits after "quit".
const pyPairServer = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PAIR)
s.bind(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:*")
print(s.getsockopt_string(zmq.LAST_ENDPOINT))
while True:
    m = s.recv()
    if m == b"quit":
        break
    if m == b"hello":
        s.send(b"unprompted")
    s.send(m.upper())
s.close(0)
ctx.term()
`

// pyPairClient is a pyzmq PAIR that connects to argv[1], makes argv[2]
// requests, checks each reply, then sends "fail" and prints the error
// reply's text.
const pyPairClient = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PAIR)
s.connect(sys.argv[1])
ok = 0
for i in range(int(sys.argv[2])):
    s.send(b"m%d" % i)
    if s.recv() == b"M%d" % i:
        ok += 1
print(ok)
s.send(b"fail")
r = s.recv()
prefix = b"\x00zmqkit-error\x00"
print(r[len(prefix):].decode() if r.startswith(prefix) else "no error reply: %r" % r)
s.close(0)
ctx.term()
`

func TestPairClientInteropPyzmq(t *testing.T) {
	py := startPython(t, pyPairServer)
	ep := strings.TrimSpace(py.Line(t))
	cli, err := NewPairClient(ep, WithZMQContext(newTestContext(t)))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	ctx := testCtx(t)
	for i := 0; i < 200; i++ {
		reply, err := cli.Request(ctx, []byte("m"+strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, "M"+strconv.Itoa(i), string(reply))
	}
	// Duplex: the Python side speaks first, then answers.
	require.NoError(t, cli.Send(ctx, []byte("hello")))
	for _, want := range []string{"unprompted", "HELLO"} {
		msg, err := cli.Receive(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, string(msg))
	}
	require.NoError(t, cli.Send(ctx, []byte("quit")))
	py.Wait(t)

	// The Python server restarts on the same address: the client goes on.
	py = startPython(t, pyPairServer, ep)
	assert.Equal(t, ep, strings.TrimSpace(py.Line(t)))
	assert.Equal(t, "AFTER RESTART", requestEventually(t, cli, "after restart"))
	require.NoError(t, cli.Send(ctx, []byte("quit")))
	py.Wait(t)
}

func TestPairServerInteropPyzmq(t *testing.T) {
	srv, err := NewPairServer("tcp://127.0.0.1:*", upper, WithZMQContext(newTestContext(t)))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	stop := runInBackground(t, srv.Run)
	// A second Python client after the first has exited: libzmq's PAIR
	// alone would often not serve it.
	for run := 0; run < 2; run++ {
		py := startPython(t, pyPairClient, srv.Endpoints()[0], "200")
		assert.Equal(t, "200", py.Line(t), "every reply right")
		assert.Equal(t, "handler says no", py.Line(t), "error reply in RRServer's format")
		py.Wait(t)
	}
	require.ErrorIs(t, stop(), context.Canceled)
	assert.Equal(t, uint64(402), srv.Stats().Received)
}
