package cbench

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type size struct {
	name string
	n    int
}

var (
	pushPullSizes = []size{{"16B", 16}, {"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}
	pubSubSizes   = []size{{"64B", 64}, {"1KiB", 1 << 10}}
	rrSizes       = []size{{"64B", 64}}
)

// rrInflight is how many requests the DEALER keeps outstanding: the C
// counterpart of one RRClient shared by 64 goroutines.
const rrInflight = 64

// BenchmarkC runs the C loops. One op is one message (push/pull, pub/sub)
// or one round trip (dealer/router, req/rep); each sub-benchmark calls its
// loop once with count = b.N. ns/op, MB/s and msgs/s (or reqs/s) are
// computed from the time the loop measured itself, which leaves out its
// set-up and tear-down; the framework's own clock would not.
func BenchmarkC(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp"} {
		for _, sz := range pushPullSizes {
			b.Run("pushpull/"+tr+"/"+sz.name, func(b *testing.B) {
				d, err := PushPull(tr, sz.n, b.N)
				report(b, sz.n, d, err, "msgs/s")
			})
		}
	}
	for _, tr := range []string{"inproc", "tcp"} {
		for _, sz := range pubSubSizes {
			b.Run("pubsub/"+tr+"/"+sz.name, func(b *testing.B) {
				d, err := PubSub(tr, sz.n, b.N)
				report(b, sz.n, d, err, "msgs/s")
			})
		}
	}
	for _, tr := range []string{"inproc", "tcp"} {
		for _, sz := range rrSizes {
			b.Run("dealerrouter/"+tr+"/"+sz.name, func(b *testing.B) {
				d, err := DealerRouter(tr, sz.n, b.N, rrInflight)
				report(b, sz.n, d, err, "reqs/s")
			})
			b.Run("reqrep/"+tr+"/"+sz.name, func(b *testing.B) {
				d, err := ReqRepLatency(tr, sz.n, b.N)
				report(b, sz.n, d*time.Duration(b.N), err, "reqs/s")
			})
		}
	}
}

// report replaces the framework's timings with the loop's own (elapsed for
// all b.N ops) and adds the rate in unit.
func report(b *testing.B, size int, elapsed time.Duration, err error, unit string) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	sec := elapsed.Seconds()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(size)*float64(b.N)/1e6/sec, "MB/s")
	b.ReportMetric(float64(b.N)/sec, unit)
}

// TestLoops runs every loop briefly over every transport.
func TestLoops(t *testing.T) {
	loops := []struct {
		name string
		run  func(tr string) (time.Duration, error)
	}{
		{"pushpull/16B", func(tr string) (time.Duration, error) { return PushPull(tr, 16, 2000) }},
		{"pushpull/0B", func(tr string) (time.Duration, error) { return PushPull(tr, 0, 100) }},
		{"pushpull/1MiB", func(tr string) (time.Duration, error) { return PushPull(tr, 1<<20, 20) }},
		{"pubsub/64B", func(tr string) (time.Duration, error) { return PubSub(tr, 64, 2000) }},
		{"pubsub/10B", func(tr string) (time.Duration, error) { return PubSub(tr, 10, 100) }},
		{"dealerrouter/64B", func(tr string) (time.Duration, error) { return DealerRouter(tr, 64, 500, rrInflight) }},
		// Fewer requests than may be in flight, and one at a time.
		{"dealerrouter/fewer", func(tr string) (time.Duration, error) { return DealerRouter(tr, 64, 10, rrInflight) }},
		{"dealerrouter/inflight1", func(tr string) (time.Duration, error) { return DealerRouter(tr, 0, 50, 1) }},
		{"reqrep/64B", func(tr string) (time.Duration, error) { return ReqRepLatency(tr, 64, 200) }},
		{"reqrep/count1", func(tr string) (time.Duration, error) { return ReqRepLatency(tr, 64, 1) }},
	}
	for _, tr := range []string{"inproc", "ipc", "tcp"} {
		for _, l := range loops {
			t.Run(tr+"/"+l.name, func(t *testing.T) {
				d, err := l.run(tr)
				require.NoError(t, err)
				assert.Positive(t, d)
			})
		}
	}
	assertNoLoopThreads(t)
}

// TestInvalid checks that arguments out of range are refused before any C
// runs.
func TestInvalid(t *testing.T) {
	for name, run := range map[string]func() (time.Duration, error){
		"transport":  func() (time.Duration, error) { return PushPull("udp", 64, 10) },
		"count":      func() (time.Duration, error) { return PushPull("inproc", 64, 0) },
		"size":       func() (time.Duration, error) { return PushPull("inproc", -1, 10) },
		"pubsubsize": func() (time.Duration, error) { return PubSub("inproc", 9, 10) },
		"inflight0":  func() (time.Duration, error) { return DealerRouter("inproc", 64, 10, 0) },
		"inflight":   func() (time.Duration, error) { return DealerRouter("inproc", 64, 10, MaxInflight+1) },
		"rrcount":    func() (time.Duration, error) { return ReqRepLatency("tcp", 64, -5) },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run()
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

// TestCallFails checks that a failed libzmq call comes back as an *Error
// with its errno, and that the loop still tore everything down.
func TestCallFails(t *testing.T) {
	loops := map[string]func(ep string) (time.Duration, error){
		"pushpull":     func(ep string) (time.Duration, error) { return pushPullAt(ep, 64, 64, 10) },
		"pubsub":       func(ep string) (time.Duration, error) { return pubSubAt(ep, 64, 64, 10) },
		"dealerrouter": func(ep string) (time.Duration, error) { return dealerRouterAt(ep, 64, 64, 10, 4) },
		"reqrep":       func(ep string) (time.Duration, error) { return reqRepAt(ep, 64, 64, 10) },
	}
	for name, loop := range loops {
		t.Run(name, func(t *testing.T) {
			_, err := loop("bogus://nowhere")
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, name, e.Loop)
			assert.Equal(t, "bogus://nowhere", e.Endpoint)
			assert.Equal(t, "zmq_bind", e.Op)
			assert.ErrorIs(t, err, zmq.Errno(syscall.EPROTONOSUPPORT))
			assert.Contains(t, err.Error(), `cbench: `+name+` "bogus://nowhere": zmq_bind: `)
		})
	}
	assertNoLoopThreads(t)
}

// TestFailsMidRun makes one side of each loop refuse a message while the
// other is blocked (the PUSH at its high-water mark, the DEALER or REQ
// waiting for a reply): the failure is reported, not the ETERM that
// unblocked the other side, and promptly.
func TestFailsMidRun(t *testing.T) {
	loops := []struct {
		name, op string
		run      func(ep string) (time.Duration, error)
	}{
		{"pushpull", "message 1 is 64 bytes, want 32", func(ep string) (time.Duration, error) {
			return pushPullAt(ep, 64, 32, 5000)
		}},
		{"pubsub", "message 1 is 64 bytes, want 32", func(ep string) (time.Duration, error) {
			return pubSubAt(ep, 64, 32, 5000)
		}},
		{"dealerrouter", "echo: request 0's body is 64 bytes, want 32", func(ep string) (time.Duration, error) {
			return dealerRouterAt(ep, 64, 32, 100, 8)
		}},
		{"reqrep", "echo: request 0's body is 64 bytes, want 32", func(ep string) (time.Duration, error) {
			return reqRepAt(ep, 64, 32, 100)
		}},
	}
	for _, tr := range []string{"inproc", "tcp"} {
		for _, l := range loops {
			t.Run(tr+"/"+l.name, func(t *testing.T) {
				ep, err := bindEndpoint(tr)
				require.NoError(t, err)
				start := time.Now()
				_, err = l.run(ep)
				var e *Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, l.op, e.Op)
				assert.Zero(t, e.Errno)
				assert.NoError(t, errors.Unwrap(err))
				assert.Less(t, time.Since(start), 5*time.Second, "the blocked side was not woken")
			})
		}
	}
	assertNoLoopThreads(t)
}

// assertNoLoopThreads checks that no thread of a loop or of libzmq is left
// in the process: every loop joins its thread and terminates its context
// (which joins libzmq's) before it returns. Linux only.
func assertNoLoopThreads(t *testing.T) {
	t.Helper()
	comms, err := filepath.Glob("/proc/self/task/*/comm")
	if err != nil || len(comms) == 0 {
		t.Log("no /proc/self/task: thread check skipped")
		return
	}
	for _, f := range comms {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // that thread has just exited
		}
		require.NoError(t, err)
		name := strings.TrimSpace(string(b))
		assert.False(t, strings.HasPrefix(name, "cbench-") || strings.HasPrefix(name, "ZMQbg"),
			"thread %q left running (%s)", name, f)
	}
}
