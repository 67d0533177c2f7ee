package zmqkit

import (
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The side-by-side benchmarks are named in key=value form,
//
//	Benchmark<Pattern>/[op=<what>/]tr=<transport>/size=<bytes>/impl=<zmqkit|pebbe|c>
//
// so that benchstat compares them by implementation (make bench runs
// `benchstat -col /impl`): impl=zmqkit is this package, impl=pebbe the same
// loop written by hand over pebbe/zmq4, impl=c the same loop in C
// (internal/cbench). tr=tcp+curve is tcp with CURVE security. Every
// implementation of a row reports the same metrics from the same interval
// (see reportRate): ns/op, MB/s, and msgs/s or reqs/s.

// size is a message size and its name in benchmark names.
type size struct {
	name string
	n    int
}

var (
	size16B   = size{"16B", 16}
	size64B   = size{"64B", 64}
	size1KiB  = size{"1KiB", 1 << 10}
	size64KiB = size{"64KiB", 64 << 10}
	size1MiB  = size{"1MiB", 1 << 20}
)

// benchBody returns the text body that makes a "1000 text <body>" frame of
// exactly n bytes.
func benchBody(n int) string {
	return strings.Repeat("x", n-len("1000 text "))
}

// stream is one implementation of a one-way message stream, set up and
// connected: send sends one message, recv receives one and checks it.
// Whatever it holds is released by the benchmark's cleanup.
type stream struct {
	send, recv func() error
}

// measureStream times b.N messages of size bytes, sent by s.send on one
// goroutine and taken by s.recv on this one, and reports them with
// reportRate in msgs/s. One message goes through first, untimed, so the
// connection is up and both ends have run (as in the C loops). The zmqkit,
// pebbe and C rows of a comparison are all timed from the first send to the
// last receive; the C loop does the same in C.
func measureStream(b *testing.B, size int, s stream) {
	one := func(f func() error) (int, error) {
		if err := f(); err != nil {
			return 0, err
		}
		return 1, nil
	}
	measureBatch(b, size, batchStream{
		send: func(int) (int, error) { return one(s.send) },
		recv: func() (int, error) { return one(s.recv) },
	})
}

// batchStream is a stream that moves messages in batches: send sends up to
// n messages and says how many went, recv receives a batch and says how
// many it held.
type batchStream struct {
	send func(n int) (int, error)
	recv func() (int, error)
}

// sendBatch is how many messages a batch row's sender hands over at once.
const sendBatch = 64

// measureBatch is measureStream for a batchStream: b.N messages, sent in
// batches of up to sendBatch on one goroutine and received in batches on
// this one (a stream's batches are of one message).
func measureBatch(b *testing.B, size int, s batchStream) {
	if _, err := s.send(1); err != nil {
		b.Fatal(err)
	}
	if _, err := s.recv(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for sent := 0; sent < b.N; {
			n, err := s.send(min(sendBatch, b.N-sent))
			if err != nil {
				errc <- fmt.Errorf("send %d: %w", sent+n, err)
				return
			}
			sent += n
		}
		errc <- nil
	}()
	for got := 0; got < b.N; {
		n, err := s.recv()
		if err != nil {
			b.Fatalf("receive %d: %v", got, err)
		}
		got += n
	}
	elapsed := time.Since(start)
	b.StopTimer()
	require.NoError(b, <-errc)
	reportRate(b, size, b.N, elapsed, "msgs/s")
}

// reportRate reports n operations of size bytes each that took elapsed:
// ns/op, MB/s and unit (msgs/s or reqs/s). It replaces the framework's own
// ns/op and MB/s, so that every implementation of a row, the C loops
// included (which time themselves and leave out their set-up), is reported
// from the interval it measured.
func reportRate(b *testing.B, size, n int, elapsed time.Duration, unit string) {
	b.Helper()
	sec := elapsed.Seconds()
	b.SetBytes(int64(size))
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(size)*float64(n)/1e6/sec, "MB/s")
	b.ReportMetric(float64(n)/sec, unit)
}

// reportC reports a C loop's run of b.N operations (see reportRate).
func reportC(b *testing.B, size int, elapsed time.Duration, err error, unit string) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	reportRate(b, size, b.N, elapsed, unit)
}

// wantLen is a receive's error, or one for a message of the wrong length.
func wantLen(got, want int, err error) error {
	if err == nil && got != want {
		err = fmt.Errorf("got %d bytes, want %d", got, want)
	}
	return err
}

// settle returns the memory earlier benchmarks freed to the OS now, so that
// the runtime's background scavenger does not do it during the timed loop
// of whichever benchmark happens to run next (the throughput benchmarks
// before these churn through hundreds of megabytes).
func settle() { debug.FreeOSMemory() }
