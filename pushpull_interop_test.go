package zmqkit

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyPull is a pyzmq PULL that connects to argv[1], reads argv[2] messages
// and prints how many came in order, then the last one.
const pyPull = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PULL)
s.connect(sys.argv[1])
n = int(sys.argv[2])
inorder = 0
last = b""
for i in range(n):
    last = s.recv()
    if last == str(i).encode():
        inorder += 1
print(inorder, last.decode())
s.close(0)
ctx.term()
`

// pyPush is a pyzmq PUSH that binds an ephemeral port, prints it, pushes
// argv[1] messages and waits for the Go side's "done" before it exits.
const pyPush = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.bind("tcp://127.0.0.1:*")
print(s.getsockopt_string(zmq.LAST_ENDPOINT))
for i in range(int(sys.argv[1])):
    s.send(str(i).encode())
sys.stdin.readline()
s.close(0)
ctx.term()
`

func TestPushInteropPyzmqPull(t *testing.T) {
	const n = 2000
	push, err := NewPPPusher("tcp://127.0.0.1:*", WithZMQContext(newTestContext(t)))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	py := startPython(t, pyPull, push.Endpoints()[0], strconv.Itoa(n))
	ctx := testCtx(t)
	for i := 0; i < n; i++ {
		require.NoError(t, push.Push(ctx, []byte(strconv.Itoa(i))))
	}
	assert.Equal(t, strconv.Itoa(n)+" "+strconv.Itoa(n-1), py.Line(t), "every message, in order")
	py.Wait(t)
}

func TestPullInteropPyzmqPush(t *testing.T) {
	const n = 2000
	py := startPython(t, pyPush, strconv.Itoa(n))
	ep := strings.TrimSpace(py.Line(t))
	pull, err := NewPPPuller(ep, WithZMQContext(newTestContext(t)))
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	ctx := testCtx(t)
	for i := 0; i < n; i++ {
		msg, err := pull.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i), string(msg))
	}
	py.Send(t, "done")
	py.Wait(t)
}
