//go:build unix

package zmqkit

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pacedMin is the shortest paced run: 100 bursts.
const pacedMin = 100 * time.Millisecond

// BenchmarkPaced measures the CPU that zmqkit and the hand-written pebbe
// loop spend per message when messages come at a steady rate both keep up
// with, rather than flat out: pattern=pushpull is BenchmarkPushPull's
// PPPusher→PPPuller and PUSH→PULL, pattern=pubsub BenchmarkPubSub's
// Publisher→Subscriber and PUB→SUB (same settings), both over tcp with 64
// B messages. A goroutine sends rate/1000 messages at once every
// millisecond (a time.Ticker; after a tick the ticker dropped, the next
// burst is as big as it takes to keep the rate), and this one receives
// them all, so both sides sleep between bursts and the cost of waking up
// is counted.
//
// It reports cpu-s/Mmsg: the process's user plus system CPU time
// (getrusage RUSAGE_SELF) from the first burst to the last receive, in
// seconds per million messages. Both ends, libzmq's I/O threads and the
// Go runtime are in the process, for zmqkit and pebbe alike. msgs/s is
// the rate achieved (below rate only if the sending or receiving side could
// not keep up), ns/op its inverse; B/op and allocs/op are per message.
//
// One op is one message. The framework sets b.N to fill -benchtime (1 s by
// default, so b.N ends near rate), but a run sends at least pacedMin's
// worth, max(b.N, rate × 100 ms) messages, so that a short run (the
// framework's first probes, or -benchtime 100x) does not read CPU time off
// a handful of bursts; every metric is per message actually sent.
func BenchmarkPaced(b *testing.B) {
	for _, pattern := range []string{"pushpull", "pubsub"} {
		for _, rate := range []struct {
			name string
			n    int
		}{{"20k", 20_000}, {"200k", 200_000}} {
			name := "pattern=" + pattern + "/rate=" + rate.name + "/impl="
			b.Run(name+"zmqkit", func(b *testing.B) {
				if pattern == "pushpull" {
					measurePaced(b, rate.n, zmqkitPushPull(b, "tcp", 64, false))
				} else {
					measurePaced(b, rate.n, zmqkitPubSub(b, "tcp", 64))
				}
			})
			b.Run(name+"pebbe", func(b *testing.B) {
				if pattern == "pushpull" {
					measurePaced(b, rate.n, pebbePushPull(b, "tcp", 64))
				} else {
					measurePaced(b, rate.n, pebbePubSub(b, "tcp", 64))
				}
			})
		}
	}
}

// measurePaced sends messages through s at rate per second in 1 ms bursts
// and reports the CPU time they cost (see BenchmarkPaced).
func measurePaced(b *testing.B, rate int, s stream) {
	burst := rate / 1000
	n := max(b.N, int(int64(rate)*int64(pacedMin)/int64(time.Second)))
	require.NoError(b, s.send()) // the connection is up and both ends have run
	require.NoError(b, s.recv())
	settle() // no garbage of earlier benchmarks left for the GC to do here
	var mem0, mem1 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for sent := 0; sent < n; {
			// What is due by now: a tick the ticker dropped, on a busy
			// machine, makes the next burst bigger instead of the rate
			// lower.
			due := burst + int(int64(time.Since(start))*int64(rate)/int64(time.Second))
			for end := min(due, n); sent < end; sent++ {
				if err := s.send(); err != nil {
					errc <- fmt.Errorf("send %d: %w", sent, err)
					return
				}
			}
			<-tick.C
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		if err := s.recv(); err != nil {
			b.Fatalf("receive %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	runtime.ReadMemStats(&mem1)
	require.NoError(b, <-errc)
	// Per message sent, not per b.N, the framework's own measures too.
	b.ReportMetric(float64(mem1.Mallocs-mem0.Mallocs)/float64(n), "allocs/op")
	b.ReportMetric(float64(mem1.TotalAlloc-mem0.TotalAlloc)/float64(n), "B/op")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(cpu.Seconds()/float64(n)*1e6, "cpu-s/Mmsg")
}

// cpuTime is the user plus system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
