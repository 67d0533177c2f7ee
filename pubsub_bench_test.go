package zmqkit

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"
)

// benchSizes are the frame sizes the pub/sub and push/pull benchmarks use.
var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1024}}

// benchBody returns the text body that makes a "1000 text <body>" frame of
// exactly n bytes.
func benchBody(n int) string {
	return strings.Repeat("x", n-len("1000 text "))
}

// BenchmarkPubSub compares a zmqkit Publisher→Subscriber with the same
// frames sent by a hand-written pebbe/zmq4 PUB→SUB loop, in the same run.
// One op is one message published and received. make bench prints the
// ratio of their msgs/s.
func BenchmarkPubSub(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp"} {
		for _, size := range benchSizes {
			b.Run(tr+"/"+size.name+"/zmqkit", func(b *testing.B) { benchZmqkitPubSub(b, tr, size.n) })
			b.Run(tr+"/"+size.name+"/pebbe", func(b *testing.B) { benchPebbePubSub(b, tr, size.n) })
		}
	}
}

// measureStream times b.N messages of size bytes, sent by send on one
// goroutine and taken by recv on this one, and reports their msgs/s. The
// zmqkit and pebbe sides of a comparison run through the same loop.
func measureStream(b *testing.B, size int, send, recv func() error) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if err := send(); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		if err := recv(); err != nil {
			b.Fatalf("receive %d: %v", i, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	require.NoError(b, <-errc)
}

// wantLen is a receive's error, or one for a message of the wrong length.
func wantLen(got, want int, err error) error {
	if err == nil && got != want {
		err = fmt.Errorf("got %d bytes, want %d", got, want)
	}
	return err
}

func benchZmqkitPubSub(b *testing.B, tr string, size int) {
	// No high-water mark on either side, as in the pebbe loop: a PUB drops
	// at the mark, and a dropped message would never be received.
	pub, sub := newPubSub(b, tr, []Option{WithSendHWM(0)}, []Option{WithRecvHWM(0), WithMsgIDs(1000)})
	require.NoError(b, sub.Unsubscribe(probeID))
	ctx := context.Background()
	body := benchBody(size)
	// Probes may still be queued: drain with a short deadline.
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		_, err := sub.Receive(dctx)
		cancel()
		if err != nil {
			break
		}
	}
	measureStream(b, size, func() error {
		return pub.Publish(ctx, body)
	}, func() error {
		m, err := sub.Receive(ctx)
		return wantLen(len(m.Body), len(body), err)
	})
}

func benchPebbePubSub(b *testing.B, tr string, size int) {
	zctx, err := zmq.NewContext()
	require.NoError(b, err)
	pub, err := zctx.NewSocket(zmq.PUB)
	require.NoError(b, err)
	sub, err := zctx.NewSocket(zmq.SUB)
	require.NoError(b, err)
	defer func() {
		for _, s := range []*zmq.Socket{pub, sub} {
			require.NoError(b, s.SetLinger(0))
			require.NoError(b, s.Close())
		}
		require.NoError(b, zctx.Term())
	}()
	for _, s := range []*zmq.Socket{pub, sub} {
		require.NoError(b, s.SetSndhwm(0))
		require.NoError(b, s.SetRcvhwm(0))
	}
	require.NoError(b, pub.Bind(bindEndpoint(b, tr)))
	ep, err := pub.GetLastEndpoint()
	require.NoError(b, err)
	require.NoError(b, sub.SetSubscribe("1000 "))
	require.NoError(b, sub.SetSubscribe("1 "))
	require.NoError(b, sub.Connect(ep))
	// The same handshake as the zmqkit side: probe until one arrives.
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
	measureStream(b, size, func() error {
		_, err := pub.SendBytes(frame, 0)
		return err
	}, func() error {
		got, err := sub.RecvBytes(0)
		return wantLen(len(got), len(frame), err)
	})
}

// BenchmarkReceiveWakeup measures how long a blocked Receive takes to
// return once its ctx is cancelled (the bar is well under 100 ms).
func BenchmarkReceiveWakeup(b *testing.B) {
	_, sub := newPubSub(b, "inproc", nil, []Option{WithMsgIDs(5)})
	b.ResetTimer()
	var total time.Duration
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
		t0 := time.Now()
		cancel()
		total += (<-done).Sub(t0)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/wakeup")
}
