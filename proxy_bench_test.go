package zmqkit

import (
	"context"
	"errors"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"
)

// proxyKind is one kind of proxy in BenchmarkProxy: its constructor, the
// socket types of its two sides and of the end sockets that reach them,
// and the high-water mark of every socket on the messages' way.
type proxyKind struct {
	name           string
	mk             func(front, back string, opts ...Option) (*Proxy, error)
	front, back    zmq.Type // the proxy's sockets
	sender, recver zmq.Type // the end sockets, connected to front and back
	hwm            int
}

var proxyKinds = []proxyKind{
	// libzmq's default marks: the sender blocks when the proxy falls behind.
	{"streamer", NewStreamer, zmq.PULL, zmq.PUSH, zmq.PUSH, zmq.PULL, DefaultHWM},
	// No mark, as in BenchmarkPubSub: a PUB or XPUB at its mark drops, and
	// a dropped message would never be received.
	{"forwarder", NewForwarder, zmq.XSUB, zmq.XPUB, zmq.PUB, zmq.SUB, 0},
}

// BenchmarkProxy compares a zmqkit Proxy (impl=zmqkit) with pebbe's
// zmq4.Proxy, that is C zmq_proxy (impl=pebbe), moving the same frames
// from a sender through the proxy to a receiver, over tcp loopback in one
// process. The ends are the same hand-written pebbe sockets for both, on a
// context of their own, so the two rows differ only in the proxy; both
// proxies bind both sides, and their sockets have the same marks and
// linger. One op is one message sent and received (see measureStream).
func BenchmarkProxy(b *testing.B) {
	for _, k := range proxyKinds {
		for _, sz := range []size{size64B, size1KiB} {
			name := "kind=" + k.name + "/tr=tcp/size=" + sz.name + "/impl="
			b.Run(name+"zmqkit", func(b *testing.B) {
				front, back := zmqkitProxy(b, k)
				measureStream(b, sz.n, proxyEnds(b, k, front, back, sz.n))
			})
			b.Run(name+"pebbe", func(b *testing.B) {
				front, back := pebbeProxy(b, k)
				measureStream(b, sz.n, proxyEnds(b, k, front, back, sz.n))
			})
		}
	}
}

// zmqkitProxy runs a zmqkit proxy of kind k on a Context of its own, bound
// on tcp loopback, until b's cleanup, and returns its two endpoints.
func zmqkitProxy(b *testing.B, k proxyKind) (front, back string) {
	b.Helper()
	zctx := newTestContext(b)
	p, err := k.mk(bindEndpoint(b, "tcp"), bindEndpoint(b, "tcp"), WithZMQContext(zctx),
		WithSendHWM(k.hwm), WithRecvHWM(k.hwm), WithLinger(0))
	require.NoError(b, err)
	closeOnCleanup(b, p)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		require.ErrorIs(b, <-errc, context.Canceled)
	})
	return p.Front()[0], p.Back()[0]
}

// pebbeProxy runs zmq4.Proxy between two pebbe sockets of kind k's types,
// on a pebbe context of its own, bound on tcp loopback, until b's cleanup,
// and returns their endpoints. zmq_proxy returns only when its context is
// terminated (ETERM), and Term waits until every socket of the context is
// closed: so the cleanup terminates the context, and the proxy's goroutine,
// which alone uses the two sockets, closes them once zmq_proxy returns.
func pebbeProxy(b *testing.B, k proxyKind) (front, back string) {
	b.Helper()
	zctx, err := zmq.NewContext()
	require.NoError(b, err)
	var socks []*zmq.Socket
	started := false
	errc := make(chan error, 1)
	b.Cleanup(func() {
		if !started { // set-up failed: nobody else closes the sockets
			for _, s := range socks {
				require.NoError(b, s.Close())
			}
		}
		require.NoError(b, zctx.Term())
		if started {
			require.NoError(b, <-errc)
		}
	})
	var eps []string
	for _, t := range []zmq.Type{k.front, k.back} {
		s, err := zctx.NewSocket(t)
		require.NoError(b, err)
		socks = append(socks, s)
		require.NoError(b, setAll(sndHWM(k.hwm), rcvHWM(k.hwm), func(s *zmq.Socket) error { return s.SetLinger(0) })(s))
		require.NoError(b, s.Bind(bindEndpoint(b, "tcp")))
		ep, err := s.GetLastEndpoint()
		require.NoError(b, err)
		eps = append(eps, ep)
	}
	started = true
	go func() {
		err := zmq.Proxy(socks[0], socks[1], nil)
		if errors.Is(err, zmq.ETERM) {
			err = nil
		}
		errc <- errors.Join(err, socks[0].Close(), socks[1].Close())
	}()
	return eps[0], eps[1]
}

// proxyEnds is kind k's sender connected to a proxy's front and receiver
// connected to its back, on a pebbe context of their own (closed by b's
// cleanup), with the path through the proxy up: for a forwarder, the
// receiver's subscription to "1000 " has reached the sender (by the probe
// handshake of pebbePubSub). Every frame is size bytes.
func proxyEnds(b *testing.B, k proxyKind, front, back string, size int) stream {
	b.Helper()
	hwm := setAll(sndHWM(k.hwm), rcvHWM(k.hwm))
	send, recv := pebbePair(b, k.sender, k.recver, hwm, hwm)
	frame := make([]byte, size)
	if k.recver == zmq.SUB {
		frame = []byte("1000 text " + benchBody(size))
		require.NoError(b, recv.SetSubscribe("1000 "))
		require.NoError(b, recv.SetSubscribe("1 "))
	}
	require.NoError(b, recv.Connect(back))
	require.NoError(b, send.Connect(front))
	if k.recver == zmq.SUB {
		require.NoError(b, recv.SetRcvtimeo(10*time.Millisecond))
		for {
			_, err := send.Send("1 text probe", 0)
			require.NoError(b, err)
			if _, err := recv.RecvBytes(0); err == nil {
				break
			}
		}
		require.NoError(b, recv.SetUnsubscribe("1 "))
		require.NoError(b, recv.SetRcvtimeo(5*time.Millisecond))
		for {
			if _, err := recv.RecvBytes(0); err != nil {
				break
			}
		}
		require.NoError(b, recv.SetRcvtimeo(-1))
	}
	return stream{
		send: func() error {
			_, err := send.SendBytes(frame, 0)
			return err
		},
		recv: func() error {
			got, err := recv.RecvBytes(0)
			return wantLen(len(got), len(frame), err)
		},
	}
}
