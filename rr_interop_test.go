package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyREQ is a plain pyzmq REQ client, as the Python module's RRClient is: it
// sends each argument after the endpoint and prints each reply's repr.
const pyREQ = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REQ)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.connect(sys.argv[1])
for msg in sys.argv[2:]:
    s.send(msg.encode())
    parts = s.recv_multipart()
    assert len(parts) == 1, parts
    print(repr(parts[0]))
s.close()
ctx.term()
`

func TestRRInteropPythonREQToRRServer(t *testing.T) {
	for _, tr := range []string{"ipc", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			h := func(ctx context.Context, req []byte) ([]byte, error) {
				if string(req) == "fail" {
					return nil, errors.New("bad request")
				}
				return echo(ctx, req)
			}
			zctx := newTestContext(t)
			srv, err := NewRRServer(bindEndpoint(t, tr), h, WithZMQContext(zctx), WithConcurrency(4))
			require.NoError(t, err)
			closeOnCleanup(t, srv)
			runServer(t, srv)

			p := startPython(t, pyREQ, srv.Endpoints()[0], "Hello", "fail", "", "再见")
			assert.Equal(t, `b'reply:Hello'`, p.Line(t))
			assert.Equal(t, `b'\x00zmqkit-error\x00bad request'`, p.Line(t))
			assert.Equal(t, `b'reply:'`, p.Line(t))
			assert.Equal(t, `b'reply:\xe5\x86\x8d\xe8\xa7\x81'`, p.Line(t))
			p.Wait(t)
		})
	}
}

// pyREP is a plain pyzmq REP server, as the Python module's RRServer is: it
// binds, prints its endpoint, answers "rep:" + request n times, then waits
// for a line on stdin before closing (so no reply is lost to linger).
const pyREP = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
s.setsockopt(zmq.LINGER, 1000)
s.bind(sys.argv[1])
print(s.getsockopt(zmq.LAST_ENDPOINT).decode())
for _ in range(int(sys.argv[2])):
    s.send(b"rep:" + s.recv())
sys.stdin.readline()
s.close()
ctx.term()
`

func TestRRInteropRRClientToPythonREP(t *testing.T) {
	for _, tr := range []string{"ipc", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			const goroutines, each = 8, 25
			ep := bindEndpoint(t, tr)
			if tr == "tcp" {
				ep = "tcp://127.0.0.1:0" // pyzmq's spelling of an ephemeral port
			}
			p := startPython(t, pyREP, ep, fmt.Sprint(goroutines*each))
			ep = p.Line(t)

			zctx := newTestContext(t)
			cli, err := NewRRClient(ep, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, cli)
			ctx := testCtx(t)
			requestFromMany(t, ctx, cli, goroutines, each, "rep:")
			p.Send(t, "done")
			p.Wait(t)
			assert.Equal(t, uint64(goroutines*each), cli.Stats().Received)
		})
	}
}
