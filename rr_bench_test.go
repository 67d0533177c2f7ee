package zmqkit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/cbench"
)

// rrSize is the request (and reply) body size of every request/reply
// benchmark.
const rrSize = 64

// rrInflight is how many requests the many-in-flight rows keep outstanding.
const rrInflight = 64

// BenchmarkReqRep compares RRClient→RRServer (impl=zmqkit) with
// hand-written pebbe/zmq4 loops (impl=pebbe) and C libzmq's (impl=c), all
// over tcp with 64-byte bodies and an echo server. One op is one request
// answered; each row reports reqs/s.
//
//   - op=roundtrip: one request in flight, so ns/op is the time of a round
//     trip. One RRClient calling an RRServer; a pebbe REQ calling a REP
//     loop; cbench.ReqRepLatency. tr=tcp+curve is the same with CURVE on
//     both sides (no C loop).
//   - op=roundtrip-paired: the zmqkit and pebbe round trips with both set up
//     at once, timed in alternating batches of 50, so that a shared
//     machine's slow spells fall on both sides alike; it reports
//     zmqkit-ns/rt, pebbe-ns/rt and their ratio as zmqkit/pebbe, which
//     make bench prints in a table of its own.
//   - op=inflight64: 64 requests in flight. One RRClient shared by 64
//     goroutines against an RRServer (default concurrency 1); a pebbe
//     DEALER on one goroutine keeping 64 requests outstanding against a
//     ROUTER echo loop; cbench.DealerRouter with 64 in flight.
//   - op=handler-1ms: a handler that sleeps 1 ms. zmqkit serves with
//     concurrency 8 and 64 callers share one client, where a REP socket can
//     only answer one request at a time (no C loop): what WithConcurrency
//     buys, not a like-for-like loop.
func BenchmarkReqRep(b *testing.B) {
	echo := func(_ context.Context, req []byte) ([]byte, error) { return req, nil }
	for _, tr := range []string{"tcp", "tcp+curve"} {
		name := "op=roundtrip/tr=" + tr + "/size=64B/impl="
		b.Run(name+"zmqkit", func(b *testing.B) { benchRRZmqkit(b, tr, 1, 1, echo) })
		b.Run(name+"pebbe", func(b *testing.B) { benchRRPebbe(b, tr, func() {}) })
		if tr == "tcp" {
			b.Run(name+"c", func(b *testing.B) {
				d, err := cbench.ReqRepLatency("tcp", rrSize, b.N)
				reportC(b, rrSize, d*time.Duration(b.N), err, "reqs/s")
			})
		}
	}
	b.Run("op=roundtrip-paired/tr=tcp/size=64B", benchRRPaired)

	name := "op=inflight64/tr=tcp/size=64B/impl="
	b.Run(name+"zmqkit", func(b *testing.B) { benchRRZmqkit(b, "tcp", 1, rrInflight, echo) })
	b.Run(name+"pebbe", func(b *testing.B) { benchRRPebbeDealer(b, rrInflight) })
	b.Run(name+"c", func(b *testing.B) {
		d, err := cbench.DealerRouter("tcp", rrSize, b.N, rrInflight)
		reportC(b, rrSize, d, err, "reqs/s")
	})

	sleep := func() { time.Sleep(time.Millisecond) }
	name = "op=handler-1ms/tr=tcp/size=64B/impl="
	b.Run(name+"zmqkit", func(b *testing.B) {
		benchRRZmqkit(b, "tcp", 8, 64, func(_ context.Context, req []byte) ([]byte, error) {
			sleep()
			return req, nil
		})
	})
	b.Run(name+"pebbe", func(b *testing.B) { benchRRPebbe(b, "tcp", sleep) })
}

// BenchmarkRRServerConcurrency is the op=inflight64 row of zmqkit (an echo
// handler, 64 requests in flight over tcp) served at concurrency 1 and 8:
// with a handler that costs nothing, concurrency must not cost throughput
// (make bench prints conc=8 against conc=1).
func BenchmarkRRServerConcurrency(b *testing.B) {
	echo := func(_ context.Context, req []byte) ([]byte, error) { return req, nil }
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("tr=tcp/size=64B/conc=%d", conc), func(b *testing.B) { benchRRZmqkit(b, "tcp", conc, rrInflight, echo) })
	}
}

// benchRRZmqkit runs callers goroutines sharing one RRClient against an
// RRServer with h and the given concurrency, b.N requests in all.
func benchRRZmqkit(b *testing.B, tr string, concurrency, callers int, h RequestHandler) {
	cli, ctx := startRRZmqkit(b, tr, concurrency, h)
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	settle()
	b.SetBytes(rrSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, rrSize)
			for left.Add(-1) >= 0 {
				if _, err := cli.Request(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, rrSize, b.N, elapsed, "reqs/s")
}

// benchRRPebbe is the hand-written loop: a REQ socket and a REP socket on
// their own goroutines, blocking calls, handle() before each reply.
func benchRRPebbe(b *testing.B, tr string, handle func()) {
	roundTrip := startRRPebbe(b, tr, handle)
	settle()
	b.SetBytes(rrSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, rrSize, b.N, elapsed, "reqs/s")
}

// benchRRPaired times RRClient→RRServer and pebbe REQ→REP round trips in
// alternating batches, both set up at once (see BenchmarkReqRep).
func benchRRPaired(b *testing.B) {
	cli, ctx := startRRZmqkit(b, "tcp", 1, func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
	pebbeRT := startRRPebbe(b, "tcp", func() {})
	body := make([]byte, rrSize)
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
	b.ReportMetric(float64(zt)/float64(pt), "zmqkit/pebbe")
}

// startRRZmqkit runs an RRServer with h on tr ("tcp" or "tcp+curve") and
// returns an RRClient that has had one reply (so it is connected) and the
// ctx to call it with. b's cleanup stops both.
func startRRZmqkit(b *testing.B, tr string, concurrency int, h RequestHandler) (*RRClient, context.Context) {
	b.Helper()
	curve, tr := newBenchCurve(b, tr)
	srvCurve, cliCurve := curve.zmqkitOptions()
	zctx := newTestContext(b)
	srv, err := NewRRServer(bindEndpoint(b, tr), h, append([]Option{WithZMQContext(zctx), WithConcurrency(concurrency)}, srvCurve...)...)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	b.Cleanup(func() { // before zctx's own cleanup closes the context
		cancel()
		<-served
	})
	cli, err := NewRRClient(srv.Endpoints()[0], append([]Option{WithZMQContext(zctx)}, cliCurve...)...)
	require.NoError(b, err)
	_, err = cli.Request(ctx, make([]byte, rrSize))
	require.NoError(b, err)
	return cli, ctx
}

// startRRPebbe runs the hand-written REP loop (handle() before each reply)
// on its own goroutine, bound on tr ("tcp" or "tcp+curve", with the CURVE
// keys set by hand), and returns a REQ round trip of 64 bytes, done once
// already. b's cleanup stops both.
func startRRPebbe(b *testing.B, tr string, handle func()) (roundTrip func()) {
	b.Helper()
	curve, tr := newBenchCurve(b, tr)
	repCurve, reqCurve := curve.pebbeOptions()
	req := startPebbeEcho(b, zmq.REP, zmq.REQ, tr, repCurve, reqCurve, func(rep *zmq.Socket) error {
		msg, err := rep.RecvBytes(0)
		if err == nil {
			handle()
			_, err = rep.SendBytes(msg, 0)
		}
		return err
	})
	body := make([]byte, rrSize)
	roundTrip = func() {
		if _, err := req.SendBytes(body, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := req.RecvBytes(0); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip()
	return roundTrip
}

// startPebbeEcho binds a socket of type srvT on tr and runs serve with it,
// again and again, on its own goroutine, which owns it until serve fails
// (with ETERM when the context ends); it returns a socket of type cliT
// connected to it, for this goroutine. setSrv and setCli, if not nil, are
// applied before binding and connecting. b's cleanup closes the client,
// terminates the context (which ends serve's calls) and waits for the
// server goroutine to close its socket.
func startPebbeEcho(b *testing.B, srvT, cliT zmq.Type, tr string, setSrv, setCli func(*zmq.Socket) error, serve func(*zmq.Socket) error) *zmq.Socket {
	b.Helper()
	zctx, err := zmq.NewContext()
	require.NoError(b, err)
	var socks []*zmq.Socket
	ep, err := func() (string, error) {
		for _, st := range []struct {
			t   zmq.Type
			set func(*zmq.Socket) error
		}{{srvT, setSrv}, {cliT, setCli}} {
			s, err := zctx.NewSocket(st.t)
			if err != nil {
				return "", err
			}
			socks = append(socks, s)
			if err := s.SetLinger(0); err != nil {
				return "", err
			}
			if st.set != nil {
				if err := st.set(s); err != nil {
					return "", err
				}
			}
		}
		if err := socks[0].Bind(bindEndpoint(b, tr)); err != nil {
			return "", err
		}
		return socks[0].GetLastEndpoint()
	}()
	if err != nil {
		for _, s := range socks {
			err = errors.Join(err, s.Close())
		}
		b.Fatal(errors.Join(err, zctx.Term()))
	}
	srv, cli := socks[0], socks[1]
	srvDone := make(chan struct{})
	go func() { // srv belongs to this goroutine until Term ends its calls
		defer close(srvDone)
		defer func() {
			if err := srv.Close(); err != nil {
				b.Error(err)
			}
		}()
		for {
			if err := serve(srv); err != nil {
				if !errors.Is(err, zmq.ETERM) {
					b.Error(err)
				}
				return
			}
		}
	}()
	b.Cleanup(func() {
		require.NoError(b, cli.Close())
		require.NoError(b, zctx.Term()) // ends srv's calls with ETERM, then waits for its Close
		<-srvDone
	})
	require.NoError(b, cli.Connect(ep))
	return cli
}

// benchRRPebbeDealer is the hand-written loop for many requests in flight,
// cbench.DealerRouter in Go: a ROUTER on its own goroutine echoes every
// request's frames back, and a DEALER on this one keeps inflight requests
// [8-byte id, "", body] outstanding, sending the next as each reply comes,
// and checks every reply (they come in order: one connection, one echo
// loop).
func benchRRPebbeDealer(b *testing.B, inflight int) {
	dealer := startPebbeEcho(b, zmq.ROUTER, zmq.DEALER, "tcp", nil, nil, func(router *zmq.Socket) error {
		msg, err := router.RecvMessageBytes(0)
		if err == nil {
			_, err = router.SendMessage(msg)
		}
		return err
	})
	body := make([]byte, rrSize)
	var id [8]byte
	request := func(n int) error {
		binary.BigEndian.PutUint64(id[:], uint64(n))
		if _, err := dealer.SendBytes(id[:], zmq.SNDMORE); err != nil {
			return err
		}
		if _, err := dealer.SendBytes(nil, zmq.SNDMORE); err != nil {
			return err
		}
		_, err := dealer.SendBytes(body, 0)
		return err
	}
	reply := func(n int) error {
		msg, err := dealer.RecvMessageBytes(0)
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint64(id[:], uint64(n))
		if len(msg) != 3 || !bytes.Equal(msg[0], id[:]) || len(msg[1]) != 0 || len(msg[2]) != rrSize {
			return fmt.Errorf("reply %d: got %q", n, msg)
		}
		return nil
	}
	// Request 0 goes once the DEALER has a peer and proves the echo loop runs.
	require.NoError(b, request(0))
	require.NoError(b, reply(0))

	settle()
	b.SetBytes(rrSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	next := 1
	for ; next <= b.N && next <= inflight; next++ {
		require.NoError(b, request(next))
	}
	for due := 1; due <= b.N; due++ {
		require.NoError(b, reply(due))
		if next <= b.N {
			require.NoError(b, request(next))
			next++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, rrSize, b.N, elapsed, "reqs/s")
}
