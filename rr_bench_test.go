package zmqkit

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// BenchmarkReqRep compares RRClient→RRServer with hand-written pebbe
// REQ→REP loops. Each comparison is a pair of sub-benchmarks ending in
// zmqkit and pebbe, which make bench prints with their ratio.
//
//   - latency/tcp/64B: one request in flight, one round trip per op; the
//     ratio is of ns/op (time per round trip), so lower is better.
//   - latency/tcp/64B/paired: the same two round trips with both set up at
//     once, timed in alternating batches of 50, so that a shared machine's
//     slow spells fall on both sides alike; it reports zmqkit-ns/rt,
//     pebbe-ns/rt and their ratio, which make bench prints as a row too.
//   - throughput/1ms-handler: a handler that sleeps 1 ms; zmqkit serves
//     with concurrency 8 and 64 callers share one client, where a REP socket
//     can only answer one request at a time. reqs/s is reported.
func BenchmarkReqRep(b *testing.B) {
	b.Run("latency/tcp/64B/zmqkit", func(b *testing.B) {
		benchRRZmqkit(b, 1, 1, false, func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
	})
	b.Run("latency/tcp/64B/pebbe", func(b *testing.B) {
		benchRRPebbe(b, false, func() {})
	})
	b.Run("latency/tcp/64B/paired", benchRRPaired)
	sleep := func() { time.Sleep(time.Millisecond) }
	b.Run("throughput/1ms-handler/zmqkit", func(b *testing.B) {
		benchRRZmqkit(b, 8, 64, true, func(_ context.Context, req []byte) ([]byte, error) {
			sleep()
			return req, nil
		})
	})
	b.Run("throughput/1ms-handler/pebbe", func(b *testing.B) {
		benchRRPebbe(b, true, sleep)
	})
}

// benchRRZmqkit runs callers goroutines sharing one RRClient against an
// RRServer; perSecond reports reqs/s (throughput) besides ns/op.
func benchRRZmqkit(b *testing.B, concurrency, callers int, perSecond bool, h RequestHandler) {
	cli, ctx, stop := startRRZmqkit(b, concurrency, h)
	defer stop()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	settle()
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, 64)
			for left.Add(-1) >= 0 {
				if _, err := cli.Request(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if perSecond {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reqs/s")
	}
	b.StopTimer()
}

// benchRRPebbe is the hand-written loop: a REQ socket and a REP socket on
// their own goroutines, blocking calls, handle() before each reply.
func benchRRPebbe(b *testing.B, perSecond bool, handle func()) {
	roundTrip, stop := startRRPebbe(b, handle)
	defer stop()
	settle()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	if perSecond {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reqs/s")
	}
	b.StopTimer()
}

// benchRRPaired times RRClient→RRServer and pebbe REQ→REP round trips in
// alternating batches, both set up at once (see BenchmarkReqRep).
func benchRRPaired(b *testing.B) {
	cli, ctx, stopZmqkit := startRRZmqkit(b, 1, func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
	defer stopZmqkit()
	pebbeRT, stopPebbe := startRRPebbe(b, func() {})
	defer stopPebbe()
	body := make([]byte, 64)
	zmqkitRT := func() {
		if _, err := cli.Request(ctx, body); err != nil {
			b.Fatal(err)
		}
	}
	const batch = 50
	var zt, pt time.Duration
	settle()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		t0 := time.Now()
		for i := 0; i < n; i++ {
			zmqkitRT()
		}
		t1 := time.Now()
		for i := 0; i < n; i++ {
			pebbeRT()
		}
		zt, pt = zt+t1.Sub(t0), pt+time.Since(t1)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(zt.Nanoseconds())/float64(b.N), "zmqkit-ns/rt")
	b.ReportMetric(float64(pt.Nanoseconds())/float64(b.N), "pebbe-ns/rt")
	b.ReportMetric(float64(zt)/float64(pt), "ratio")
}

// startRRZmqkit runs an RRServer with h on tcp and returns an RRClient that
// has had one reply (so it is connected), the ctx to call it with, and the
// teardown.
func startRRZmqkit(b *testing.B, concurrency int, h RequestHandler) (*RRClient, context.Context, func()) {
	zctx, err := NewContext()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewRRServer("tcp://127.0.0.1:*", h, WithZMQContext(zctx), WithConcurrency(concurrency))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	stop := func() {
		cancel()
		<-served
		if err := zctx.Close(); err != nil {
			b.Error(err)
		}
	}
	cli, err := NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx))
	if err != nil {
		stop()
		b.Fatal(err)
	}
	if _, err := cli.Request(ctx, make([]byte, 64)); err != nil {
		stop()
		b.Fatal(err)
	}
	return cli, ctx, stop
}

// startRRPebbe runs the hand-written REP loop (handle() before each reply)
// on its own goroutine and returns a REQ round trip of 64 bytes, done once
// already, and the teardown.
func startRRPebbe(b *testing.B, handle func()) (roundTrip, stop func()) {
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	check := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	rep, err := zctx.NewSocket(zmq.REP)
	check(err)
	check(rep.SetLinger(0))
	check(rep.Bind("tcp://127.0.0.1:*"))
	ep, err := rep.GetLastEndpoint()
	check(err)
	req, err := zctx.NewSocket(zmq.REQ)
	check(err)
	check(req.SetLinger(0))
	check(req.Connect(ep))
	repDone := make(chan struct{})
	go func() { // rep belongs to this goroutine until Term ends its calls
		defer close(repDone)
		defer func() { _ = rep.Close() }()
		for {
			msg, err := rep.RecvBytes(0)
			if err == nil {
				handle()
				_, err = rep.SendBytes(msg, 0)
			}
			if err != nil {
				if !errors.Is(err, zmq.ETERM) {
					b.Error(err)
				}
				return
			}
		}
	}()
	body := make([]byte, 64)
	roundTrip = func() {
		if _, err := req.SendBytes(body, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := req.RecvBytes(0); err != nil {
			b.Fatal(err)
		}
	}
	stop = func() {
		check(req.Close())
		check(zctx.Term()) // ends rep's calls with ETERM, then waits for its Close
		<-repDone
	}
	roundTrip()
	return roundTrip, stop
}

// settle returns the memory earlier benchmarks freed to the OS now, so that
// the runtime's background scavenger does not do it during the timed loop
// of whichever benchmark happens to run next (the throughput benchmarks
// before these churn through hundreds of megabytes).
func settle() { debug.FreeOSMemory() }
