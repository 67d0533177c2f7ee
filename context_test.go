package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/zsock"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

func TestEndpointsParsing(t *testing.T) {
	for _, tc := range []struct {
		in          string
		defaultBind bool
		want        []endpoint.Endpoint
	}{
		{"tcp://*:5555", true, []endpoint.Endpoint{{Bind: true, Addr: "tcp://*:5555"}}},
		{"tcp://localhost:5555", false, []endpoint.Endpoint{{Bind: false, Addr: "tcp://localhost:5555"}}},
		{"@tcp://127.0.0.1:*, >ipc:///tmp/x,inproc://y", false, []endpoint.Endpoint{
			{Bind: true, Addr: "tcp://127.0.0.1:*"}, {Bind: false, Addr: "ipc:///tmp/x"}, {Bind: false, Addr: "inproc://y"},
		}},
		{">tcp://[::1]:80", true, []endpoint.Endpoint{{Bind: false, Addr: "tcp://[::1]:80"}}},
		{"tcp://eth0:5555", true, []endpoint.Endpoint{{Bind: true, Addr: "tcp://eth0:5555"}}},
	} {
		got, err := endpoint.Parse(tc.in, tc.defaultBind)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestBadEndpointsAreClearErrors(t *testing.T) {
	for _, tc := range []struct{ in, why string }{
		{"", "empty endpoint list"},
		{"tcp://a:1,,tcp://b:2", "empty endpoint"},
		{"localhost:5555", "want transport://address"},
		{"udp://127.0.0.1:5555", `unsupported transport "udp"`},
		{"tcp://", "missing address"},
		{"tcp://127.0.0.1", "want host:port"},
		{"tcp://:5555", "missing host"},
		{"tcp://127.0.0.1:99999", "port \"99999\""},
		{"tcp://127.0.0.1:http", "port \"http\""},
		{">tcp://127.0.0.1:*", "cannot connect to an ephemeral port"},
		{">tcp://*:5555", "cannot connect to *"},
		{"ipc://a b", "white space"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := NewPublisher(tc.in, WithZMQContext(newTestContext(t)))
			require.ErrorIs(t, err, ErrInvalidEndpoint)
			assert.ErrorContains(t, err, tc.why)
			assert.True(t, strings.HasPrefix(err.Error(), "zmqkit: "), err.Error())
		})
	}
}

func TestAddressInUseAndEphemeralPorts(t *testing.T) {
	zctx := newTestContext(t)
	p1, err := NewPublisher("tcp://127.0.0.1:*,inproc://eph", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, p1)
	eps := p1.Endpoints()
	require.Len(t, eps, 2)
	assert.Regexp(t, `^tcp://127\.0\.0\.1:\d+$`, eps[0])
	assert.NotContains(t, eps[0], "*")
	assert.Equal(t, "inproc://eph", eps[1])

	_, err = NewPublisher(eps[0], WithZMQContext(zctx))
	require.Error(t, err)
	var ee *EndpointError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "bind", ee.Op)
	assert.Equal(t, eps[0], ee.Endpoint)
	assert.True(t, errors.Is(err, syscall.EADDRINUSE), "errno kept: %v", err)
	assert.Equal(t, `zmqkit: bind "`+eps[0]+`": address already in use`, err.Error())

	_, err = NewPublisher("inproc://eph", WithZMQContext(zctx))
	require.ErrorAs(t, err, &ee)
	// A failed constructor leaves nothing open: the context still closes.
}

func TestGoodOptionsAreApplied(t *testing.T) {
	zctx := newTestContext(t)
	// Good values of the same options are accepted and applied.
	sub, err := NewSubscriber("inproc://opts", WithZMQContext(zctx), WithMsgIDs(1, 2), WithEncoding("gbk"),
		WithRecvHWM(20), WithLinger(1500*time.Microsecond), WithConcurrency(3),
		WithReconnectInterval(50*time.Millisecond, time.Second), WithHeartbeat(time.Second, 3*time.Second),
		WithMaxMessageSize(1<<20))
	require.NoError(t, err)
	closeOnCleanup(t, sub)
	assert.Equal(t, "gbk", sub.Codec().Encoding())
	require.NoError(t, sub.sock.Do(func(z *zmq.Socket) error {
		hwm, err := z.GetRcvhwm()
		require.NoError(t, err)
		assert.Equal(t, 20, hwm)
		linger, err := z.GetLinger()
		require.NoError(t, err)
		assert.Equal(t, 2*time.Millisecond, linger, "rounded up, not truncated to 1ms")
		ivl, err := z.GetReconnectIvl()
		require.NoError(t, err)
		assert.Equal(t, 50*time.Millisecond, ivl)
		max, err := z.GetMaxmsgsize()
		require.NoError(t, err)
		assert.Equal(t, int64(1<<20), max)
		return nil
	}))
}

// rawObject is a bare zmqkit object around any socket type, for tests of
// the machinery under every pattern.
type rawObject struct {
	b    base
	sock *zsock.Socket
}

func (r *rawObject) Close() error { return r.b.close(r) }

// openRaw makes a rawObject of socket type typ.
func openRaw(t testing.TB, typ zmq.Type, endpoints string, opts ...Option) *rawObject {
	t.Helper()
	r := &rawObject{}
	var err error
	r.sock, err = r.b.openSocket(r, kindPusher, endpoints, false, opts, func() zsock.Config { return zsock.Config{Type: typ} })
	require.NoError(t, err)
	return r
}

func TestContextCloseClosesObjectsAndDoesNotHang(t *testing.T) {
	zctx, err := NewContext()
	require.NoError(t, err)
	pub, err := NewPublisher("tcp://127.0.0.1:*", WithZMQContext(zctx))
	require.NoError(t, err)
	sub, err := NewSubscriber(pub.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)

	// Unsent messages for a peer that never came: the case that makes a
	// libzmq context with an unbounded linger hang in Term.
	r := openRaw(t, zmq.PUSH, ">tcp://127.0.0.1:1", WithZMQContext(zctx), WithLinger(0))
	r2 := openRaw(t, zmq.PUSH, ">tcp://127.0.0.1:1", WithZMQContext(zctx))
	for _, o := range []*rawObject{r, r2} {
		require.NoError(t, o.sock.SendBytes(testCtx(t), []byte("never delivered"), false))
	}

	recvErr := make(chan error, 1)
	go func() {
		_, err := sub.Receive(context.Background())
		recvErr <- err
	}()

	start := time.Now()
	require.NoError(t, zctx.Close())
	took := time.Since(start)
	t.Logf("Context.Close took %v", took)
	assert.Less(t, took, time.Second, "bounded linger: Close must not hang")
	select {
	case err := <-recvErr:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Receive did not return when its context closed")
	}
	assert.ErrorIs(t, pub.Publish(context.Background(), "x"), ErrClosed)
	require.NoError(t, pub.Close(), "closing again after the context closed it")
	require.NoError(t, zctx.Close(), "idempotent")

	_, err = NewPublisher("inproc://late", WithZMQContext(zctx))
	assert.ErrorIs(t, err, ErrClosed)
}

func TestDefaultContext(t *testing.T) {
	d1, err := DefaultContext()
	require.NoError(t, err)
	pub, err := NewPublisher("inproc://default-ctx")
	require.NoError(t, err)
	sub, err := NewSubscriber("inproc://default-ctx")
	require.NoError(t, err, "inproc works between objects on the default context")
	awaitSubscribed(t, pub, sub)

	require.NoError(t, d1.Close())
	assert.ErrorIs(t, pub.Publish(context.Background(), "x"), ErrClosed)
	d2, err := DefaultContext()
	require.NoError(t, err)
	assert.NotSame(t, d1, d2, "a closed default context is replaced on next use")
	p2, err := NewPublisher("inproc://default-ctx")
	require.NoError(t, err)
	require.NoError(t, p2.Close())
	require.NoError(t, d2.Close())
}

// A Context holds 10,000 objects by default, and a full Context says that
// its socket limit, not the process's descriptors, is what ran out.
func TestContextSocketLimit(t *testing.T) {
	zctx, err := NewContext(WithMaxSockets(5))
	require.NoError(t, err)
	defer func() { require.NoError(t, zctx.Close()) }()
	var made int
	for ; made < 10; made++ {
		_, err = NewPublisher(bindEndpoint(t, "inproc"), WithZMQContext(zctx))
		if err != nil {
			break
		}
	}
	assert.Equal(t, 5, made)
	require.ErrorIs(t, err, ErrSocketLimit)
	assert.Equal(t, "zmqkit: socket limit reached: the Context holds at most 5 sockets (an object takes 1 to 3, an RRClient up to 6; raise it with WithMaxSockets)", err.Error())

	for _, n := range []int{0, -1, 1<<20 + 1} {
		_, err := NewContext(WithMaxSockets(n))
		require.ErrorIs(t, err, ErrInvalidOption, "WithMaxSockets(%d)", n)
		assert.Contains(t, err.Error(), "WithMaxSockets")
	}

	big := newTestContext(t)
	const objects = 10000
	objs := make([]closer, 0, objects)
	for i := 0; i < objects; i++ {
		lc := lifecycles[i%len(lifecycles)]
		o, err := lc.open(bindEndpoint(t, "inproc"), WithZMQContext(big))
		require.NoError(t, err, "object %d (%s)", i, lc.name)
		objs = append(objs, o)
	}
	for _, o := range objs {
		require.NoError(t, o.Close())
	}
}

// At small limits every type fails cleanly with ErrSocketLimit (also when
// the place runs out for a monitor, not the object's own socket); a place
// freed by Close is usable at once; and the Context then closes. Before,
// a monitor refused by libzmq left a pending inproc connection, and libzmq
// aborted the process in zmq_ctx_term (ctx.cpp:169).
func TestContextSocketLimitEveryType(t *testing.T) {
	for _, tr := range []string{"tcp", "inproc"} {
		for _, lc := range lifecycles {
			for _, limit := range []int{1, 2, 3, 4} {
				t.Run(fmt.Sprintf("%s/%s/%d", lc.name, tr, limit), func(t *testing.T) {
					zctx, err := NewContext(WithMaxSockets(limit))
					require.NoError(t, err)
					var objs []closer
					defer func() {
						for _, o := range objs {
							require.NoError(t, o.Close())
						}
						require.NoError(t, zctx.Close())
					}()
					opts := []Option{WithZMQContext(zctx), WithEvents(func(Event) {})} // a monitor more
					var eps []string
					for len(objs) <= limit {
						ep := bindEndpoint(t, tr)
						if !lc.bind {
							ep = "@" + ep
						}
						o, err2 := lc.open(ep, opts...)
						if err2 != nil {
							err = err2
							break
						}
						objs = append(objs, o)
						real := o.(interface{ Endpoints() []string }).Endpoints()[0] // the port really bound
						if !lc.bind {
							real = "@" + real
						}
						eps = append(eps, real)
					}
					require.ErrorIs(t, err, ErrSocketLimit, "%d objects", len(objs))
					assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), err.Error())
					assert.Contains(t, err.Error(), fmt.Sprintf("at most %d sockets", limit))
					if len(objs) == 0 {
						return
					}
					last, ep := objs[len(objs)-1], eps[len(eps)-1]
					objs = objs[:len(objs)-1]
					require.NoError(t, last.Close())
					o, err := lc.open(ep, opts...)
					require.NoError(t, err, "reopening %s right after Close at the limit", ep)
					objs = append(objs, o)
				})
			}
		}
	}
}
