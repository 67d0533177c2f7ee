package zmqkit

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/cbench"
)

// pubSubSizes are the pub/sub benchmarks' frame sizes.
var pubSubSizes = []size{size64B, size1KiB}

// BenchmarkPubSub compares a zmqkit Publisher→Subscriber (impl=zmqkit)
// with the same frames sent by a hand-written pebbe/zmq4 PUB→SUB loop
// (impl=pebbe) and by C libzmq's (impl=c, cbench.PubSub). One op is one
// message published and received. tr=tcp+curve is tcp with CURVE on both
// sides (no C loop), beside the plain tcp row, so CURVE's cost shows.
//
// All three run with cbench.PubSub's settings: no high-water mark on the
// messages' way (PUB's ZMQ_SNDHWM and SUB's ZMQ_RCVHWM are 0: WithSendHWM(0)
// and WithRecvHWM(0) for zmqkit), since a PUB drops at its mark and a
// dropped message would never be received; the subscriptions' way keeps
// libzmq's default. So nothing is dropped and the publisher never waits.
// What a row measures is b.N frames from the first publish to the last
// receive with the publisher sending flat out: the subscriber's rate
// whenever the publisher is faster. The publisher then runs ahead, and the
// backlog (up to b.N frames: about 150 MB in a 1 s run of the C loop at 1
// KiB over tcp) queues in libzmq and competes with the receiver for the
// cores. A faster publisher builds a bigger backlog, so these rows compare
// how each implementation copes with that, not bare costs per message;
// BenchmarkPaced compares them at a rate both keep up with.
func BenchmarkPubSub(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp", "tcp+curve"} {
		sizes := pubSubSizes
		if tr == "tcp+curve" {
			sizes = []size{size64B}
		}
		for _, sz := range sizes {
			name := "tr=" + tr + "/size=" + sz.name + "/impl="
			b.Run(name+"zmqkit", func(b *testing.B) { measureStream(b, sz.n, zmqkitPubSub(b, tr, sz.n)) })
			b.Run(name+"zmqkit-batch", func(b *testing.B) { measureBatch(b, sz.n, zmqkitPubSubBatch(b, tr, sz.n)) })
			b.Run(name+"pebbe", func(b *testing.B) { measureStream(b, sz.n, pebbePubSub(b, tr, sz.n)) })
			if tr != "tcp+curve" {
				b.Run(name+"c", func(b *testing.B) {
					d, err := cbench.PubSub(tr, sz.n, b.N)
					reportC(b, sz.n, d, err, "msgs/s")
				})
			}
		}
	}
}

// benchCurve is a CURVE server's and a client's key pairs.
type benchCurve struct{ server, client KeyPair }

// newBenchCurve makes a fresh pair of key pairs, or none (nil) unless tr is
// "tcp+curve"; it returns the real transport, "tcp" for "tcp+curve".
func newBenchCurve(b *testing.B, tr string) (*benchCurve, string) {
	b.Helper()
	if tr != "tcp+curve" {
		return nil, tr
	}
	var c benchCurve
	var err error
	c.server, err = NewKeyPair()
	require.NoError(b, err)
	c.client, err = NewKeyPair()
	require.NoError(b, err)
	return &c, "tcp"
}

// zmqkitOptions are the CURVE options for the server and the client side,
// or none.
func (c *benchCurve) zmqkitOptions() (server, client []Option) {
	if c == nil {
		return nil, nil
	}
	return []Option{WithCurveServer(c.server, AllowKeys(c.client.Public))},
		[]Option{WithCurveClient(c.client, c.server.Public)}
}

// pebbeOptions set the same keys on pebbe sockets by hand, or nothing. A
// pebbe context has no ZAP handler (pebbe's AuthStart serves only its
// default context), so libzmq admits every CURVE client there, where the
// zmqkit server checks the client's key against its policy once per
// connection: the same encryption, a check the zmqkit side pays only at the
// handshake, which fits a throughput comparison.
func (c *benchCurve) pebbeOptions() (server, client func(*zmq.Socket) error) {
	if c == nil {
		return nil, nil
	}
	return func(s *zmq.Socket) error {
			if err := s.SetCurveServer(1); err != nil {
				return err
			}
			return s.SetCurveSecretkey(c.server.Secret)
		}, func(s *zmq.Socket) error {
			if err := s.SetCurveServerkey(c.server.Public); err != nil {
				return err
			}
			if err := s.SetCurvePublickey(c.client.Public); err != nil {
				return err
			}
			return s.SetCurveSecretkey(c.client.Secret)
		}
}

// zmqkitPubSub is a Publisher bound on tr and a Subscriber to msgid 1000
// connected to it, subscribed and drained (see BenchmarkPubSub for the
// settings).
func zmqkitPubSub(b *testing.B, tr string, size int) stream {
	pub, sub, body := newBenchPubSub(b, tr, size)
	ctx := context.Background()
	return stream{
		send: func() error { return pub.Publish(ctx, body) },
		recv: func() error {
			m, err := sub.Receive(ctx)
			return wantLen(len(m.Body), len(body), err)
		},
	}
}

// zmqkitPubSubBatch is zmqkitPubSub moving messages with PublishBatch and
// ReceiveBatch (impl=zmqkit-batch).
func zmqkitPubSubBatch(b *testing.B, tr string, size int) batchStream {
	pub, sub, body := newBenchPubSub(b, tr, size)
	ctx := context.Background()
	vs := make([]any, sendBatch)
	for i := range vs {
		vs[i] = body
	}
	return batchStream{
		send: func(n int) (int, error) { return pub.PublishBatch(ctx, vs[:n]) },
		recv: func() (int, error) {
			ms, err := sub.ReceiveBatch(ctx, MaxBatch)
			for _, m := range ms {
				if err := wantLen(len(m.Body), len(body), nil); err != nil {
					return 0, err
				}
			}
			return len(ms), err
		},
	}
}

// newBenchPubSub is the zmqkit rows' Publisher bound on tr and Subscriber
// to msgid 1000 connected to it, subscribed and drained, and the body of
// the given size they move.
func newBenchPubSub(b *testing.B, tr string, size int) (*Publisher, *Subscriber, string) {
	curve, tr := newBenchCurve(b, tr)
	pubCurve, subCurve := curve.zmqkitOptions()
	pubOpts := append([]Option{WithSendHWM(0)}, pubCurve...)
	subOpts := append([]Option{WithRecvHWM(0), WithMsgIDs(1000)}, subCurve...)
	pub, sub := newPubSub(b, tr, pubOpts, subOpts)
	require.NoError(b, sub.Unsubscribe(probeID))
	// Probes may still be queued: drain with a short deadline.
	for {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := sub.Receive(dctx)
		cancel()
		if err != nil {
			break
		}
	}
	return pub, sub, benchBody(size)
}

// pebbePubSub is the hand-written loop's PUB bound on tr and SUB to "1000 "
// connected to it, subscribed (by the same probe handshake as the zmqkit
// side) and drained.
func pebbePubSub(b *testing.B, tr string, size int) stream {
	curve, tr := newBenchCurve(b, tr)
	pubCurve, subCurve := curve.pebbeOptions()
	pub, sub := pebbePair(b, zmq.PUB, zmq.SUB, setAll(sndHWM(0), pubCurve), setAll(rcvHWM(0), subCurve))
	require.NoError(b, pub.Bind(bindEndpoint(b, tr)))
	ep, err := pub.GetLastEndpoint()
	require.NoError(b, err)
	require.NoError(b, sub.SetSubscribe("1000 "))
	require.NoError(b, sub.SetSubscribe("1 "))
	require.NoError(b, sub.Connect(ep))
	require.NoError(b, sub.SetRcvtimeo(10*time.Millisecond))
	for {
		_, err := pub.Send("1 text probe", 0)
		require.NoError(b, err)
		if _, err := sub.RecvBytes(0); err == nil {
			break
		}
	}
	require.NoError(b, sub.SetUnsubscribe("1 "))
	require.NoError(b, sub.SetRcvtimeo(5*time.Millisecond))
	for {
		if _, err := sub.RecvBytes(0); err != nil {
			break
		}
	}
	require.NoError(b, sub.SetRcvtimeo(-1))

	frame := []byte("1000 text " + benchBody(size))
	return stream{
		send: func() error {
			_, err := pub.SendBytes(frame, 0)
			return err
		},
		recv: func() error {
			got, err := sub.RecvBytes(0)
			return wantLen(len(got), len(frame), err)
		},
	}
}

// BenchmarkReceiveWakeup measures how long a blocked Receive takes to
// return once its ctx is cancelled, reported as the median and the 99th
// percentile: with the cancel right after the Receive parked
// (after=parked: the CPU is still busy), and with the process idle for a
// millisecond first (after=idle: the CPUs have gone to sleep, and waking
// one on a virtual machine is most of the time).
func BenchmarkReceiveWakeup(b *testing.B) {
	for _, idle := range []bool{false, true} {
		name := "after=parked"
		if idle {
			name = "after=idle"
		}
		b.Run(name, func(b *testing.B) { receiveWakeup(b, idle) })
	}
}

func receiveWakeup(b *testing.B, idle bool) {
	_, sub := newPubSub(b, "inproc", nil, []Option{WithMsgIDs(5)})
	b.ResetTimer()
	took := make([]time.Duration, b.N)
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan time.Time, 1)
		started := make(chan struct{})
		go func() {
			close(started)
			_, err := sub.Receive(ctx)
			if err == nil {
				panic("unexpected message")
			}
			done <- time.Now()
		}()
		<-started
		for sub.sock.Waiters() == 0 { // parked: only the wake-up is timed
			runtime.Gosched()
		}
		if idle {
			time.Sleep(time.Millisecond)
		}
		t0 := time.Now()
		cancel()
		took[i] = (<-done).Sub(t0)
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns/wakeup-p50")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "ns/wakeup-p99")
}
