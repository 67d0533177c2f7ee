package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo answers "reply:" + the request.
func echo(_ context.Context, req []byte) ([]byte, error) {
	return append([]byte("reply:"), req...), nil
}

// runServer runs s until the test ends, then stops it and checks that Run
// returned for the right reason.
func runServer(t testing.TB, s *RRServer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				assert.ErrorIs(t, err, context.Canceled)
			}
		case <-time.After(10 * time.Second):
			t.Error("RRServer.Run did not return")
		}
	})
}

// awaitServer makes one request, so that the client is known to be
// connected: until then requests wait to be sent.
func awaitServer(t testing.TB, cli *RRClient) {
	t.Helper()
	_, err := cli.Request(testCtx(t), []byte("hello"))
	require.NoError(t, err)
}

// newRR makes a running RRServer bound on tr and an RRClient connected to
// it, on one test context.
func newRR(t testing.TB, tr string, h RequestHandler, srvOpts, cliOpts []Option) (*RRServer, *RRClient) {
	t.Helper()
	zctx := newTestContext(t)
	srv, err := NewRRServer(bindEndpoint(t, tr), h, append([]Option{WithZMQContext(zctx)}, srvOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	cli, err := NewRRClient(srv.Endpoints()[0], append([]Option{WithZMQContext(zctx)}, cliOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	return srv, cli
}

// requestFromMany has goroutines goroutines send each requests "g:i" at
// once on cli, and checks that every reply is prefix plus its own request:
// no reply is ever matched to another request.
func requestFromMany(t *testing.T, ctx context.Context, cli *RRClient, goroutines, each int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req := fmt.Sprintf("%d:%d", g, i)
				rep, err := cli.Request(ctx, []byte(req))
				if !assert.NoError(t, err) || !assert.Equal(t, prefix+req, string(rep)) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestRRRequestReply(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			srv, cli := newRR(t, tr, echo, nil, nil)
			ctx := testCtx(t)
			for _, req := range []string{"Hello", "", "with spaces and \x00 bytes"} {
				rep, err := cli.Request(ctx, []byte(req))
				require.NoError(t, err)
				assert.Equal(t, "reply:"+req, string(rep))
			}
			assert.Equal(t, Stats{Sent: 3, Received: 3}, cli.Stats())
			// The server counts a reply just after sending it.
			require.Eventually(t, func() bool { return srv.Stats() == Stats{Sent: 3, Received: 3} }, 5*time.Second, time.Millisecond,
				"server stats: %+v", srv.Stats())
		})
	}
}

// TestRRManyGoroutines is the load test: 100 goroutines × 100
// requests on one client against a server with concurrency 8, every reply
// checked against its request.
func TestRRManyGoroutines(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const goroutines, each = 100, 100
			var inFlight, maxInFlight atomic.Int64
			h := func(ctx context.Context, req []byte) ([]byte, error) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for {
					m := maxInFlight.Load()
					if n <= m || maxInFlight.CompareAndSwap(m, n) {
						break
					}
				}
				return echo(ctx, req)
			}
			srv, cli := newRR(t, tr, h, []Option{WithConcurrency(8)}, nil)
			ctx := testCtx(t)
			requestFromMany(t, ctx, cli, goroutines, each, "reply:")
			assert.LessOrEqual(t, maxInFlight.Load(), int64(8))
			assert.Equal(t, uint64(goroutines*each), srv.Stats().Received)
			st := cli.Stats()
			assert.Equal(t, uint64(goroutines*each), st.Received)
			assert.Zero(t, st.Dropped)
		})
	}
}

func TestRRServerConcurrency(t *testing.T) {
	// Eight handlers must be in flight at once for any of them to finish.
	var barrier sync.WaitGroup
	barrier.Add(8)
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		barrier.Done()
		barrier.Wait()
		return req, nil
	}
	_, cli := newRR(t, "inproc", h, []Option{WithConcurrency(8)}, nil)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := cli.Request(ctx, []byte{byte(i)})
			assert.NoError(t, err)
			assert.Equal(t, []byte{byte(i)}, rep)
		}()
	}
	wg.Wait()
}

func TestRRHandlerErrorAndPanic(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var rec errorRecorder
			h := func(ctx context.Context, req []byte) ([]byte, error) {
				switch string(req) {
				case "fail":
					return []byte("ignored"), errors.New("no such thing")
				case "panic":
					panic("handler blew up")
				}
				return echo(ctx, req)
			}
			srv, cli := newRR(t, tr, h, []Option{rec.option()}, nil)
			ctx := testCtx(t)

			_, err := cli.Request(ctx, []byte("fail"))
			var re *RemoteError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "no such thing", re.Message)
			assert.EqualError(t, err, "zmqkit: remote handler failed: no such thing")

			_, err = cli.Request(ctx, []byte("panic"))
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "panic: handler blew up", re.Message)

			rep, err := cli.Request(ctx, []byte("ok"))
			require.NoError(t, err, "the server goes on after errors and panics")
			assert.Equal(t, "reply:ok", string(rep))

			// The server counts a reply once libzmq has taken it, which
			// may be just after the client has it.
			require.Eventually(t, func() bool { return srv.Stats().Sent == 3 }, 5*time.Second, time.Millisecond)
			st := srv.Stats()
			assert.Equal(t, uint64(2), st.HandlerErrors)
			assert.Equal(t, uint64(1), st.HandlerPanics)
			reported := rec.errors()
			require.Len(t, reported, 2)
			requireHandlerFailures(t, reported, "no such thing")
		})
	}
}

// TestRRTimeoutThenNormal times requests out while their replies are still
// coming, then checks that later requests get their own replies and the
// late ones are dropped.
func TestRRTimeoutThenNormal(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			release := make(chan struct{})
			slowStarted := make(chan struct{}, 3)
			h := func(ctx context.Context, req []byte) ([]byte, error) {
				if bytes.HasPrefix(req, []byte("slow")) {
					slowStarted <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
				return echo(ctx, req)
			}
			_, cli := newRR(t, tr, h, []Option{WithConcurrency(4)}, nil)
			ctx := testCtx(t)
			awaitServer(t, cli)

			var wg sync.WaitGroup
			for i := 0; i < 3; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
					defer cancel()
					start := time.Now()
					_, err := cli.Request(rctx, []byte(fmt.Sprint("slow", i)))
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					assert.Less(t, time.Since(start), 5*time.Second, "returns promptly")
				}()
			}
			wg.Wait()
			for i := 0; i < 3; i++ {
				select {
				case <-slowStarted:
				case <-ctx.Done():
					t.Fatal("the slow requests never reached the handler")
				}
			}
			close(release) // the late replies come now

			for i := 0; i < 20; i++ {
				req := fmt.Sprint("normal", i)
				rep, err := cli.Request(ctx, []byte(req))
				require.NoError(t, err)
				require.Equal(t, "reply:"+req, string(rep), "never a late reply")
			}
			// The three late replies arrive while some request reads, or
			// the next one.
			require.Eventually(t, func() bool {
				_, err := cli.Request(ctx, []byte("x"))
				require.NoError(t, err)
				return cli.Stats().Dropped == 3
			}, 10*time.Second, time.Millisecond)
		})
	}
}

func TestRRRequestEndsByContextAndClose(t *testing.T) {
	zctx := newTestContext(t)
	// Nothing listens: the request can never be sent.
	cli, err := NewRRClient("tcp://127.0.0.1:1", WithZMQContext(zctx))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = cli.Request(ctx, []byte("x"))
	assert.ErrorIs(t, err, context.Canceled)

	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer dcancel()
	_, err = cli.Request(dctx, []byte("x"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := cli.Request(context.Background(), []byte("x"))
			errc <- err
		}()
	}
	// Both requests queued, one of them the reader, waiting on the socket.
	awaitBlocked(t, cli.sock, 1)
	require.Eventually(t, func() bool {
		cli.mu.Lock()
		defer cli.mu.Unlock()
		return len(cli.outbox) == 2
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, cli.Close())
	requireAllReturn(t, errc, 2, ErrClosed)
	require.NoError(t, cli.Close(), "Close is idempotent")
	_, err = cli.Request(context.Background(), []byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
}

// TestRRRequestEndsWhileReading cancels requests that wait for a reply
// while another goroutine (the reader) waits too.
func TestRRRequestEndsWhileReading(t *testing.T) {
	release := make(chan struct{})
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return req, nil
	}
	_, cli := newRR(t, "inproc", h, []Option{WithConcurrency(2)}, nil)
	ctx := testCtx(t)
	for i := 0; i < 5; i++ {
		// One request waits for a reply as the reader while another
		// times out, and the other way round.
		slow := make(chan error, 1)
		go func() {
			_, err := cli.Request(ctx, []byte("block"))
			slow <- err
		}()
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := cli.Request(rctx, []byte("block"))
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		release <- struct{}{}
		release <- struct{}{}
		require.NoError(t, <-slow)
		rep, err := cli.Request(ctx, []byte("fine"))
		require.NoError(t, err)
		require.Equal(t, "fine", string(rep))
	}
}

func TestRRServerRestart(t *testing.T) {
	for _, tr := range []string{"ipc", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			zctx := newTestContext(t)
			ctx := testCtx(t)
			srv, err := NewRRServer(bindEndpoint(t, tr), echo, WithZMQContext(zctx))
			require.NoError(t, err)
			ep := srv.Endpoints()[0]
			stopped := make(chan error, 1)
			go func() { stopped <- srv.Run(ctx) }()

			cli, err := NewRRClient(ep, WithZMQContext(zctx), WithReconnectInterval(10*time.Millisecond, 0))
			require.NoError(t, err)
			closeOnCleanup(t, cli)
			rep, err := cli.Request(ctx, []byte("before"))
			require.NoError(t, err)
			assert.Equal(t, "reply:before", string(rep))

			require.NoError(t, srv.Close())
			require.ErrorIs(t, <-stopped, ErrClosed)
			for i := 0; i < 3; i++ {
				dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				_, err = cli.Request(dctx, []byte("down"))
				cancel()
				require.ErrorIs(t, err, context.DeadlineExceeded, "fails by ctx while the server is down")
			}

			srv2, err := NewRRServer(ep, echo, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, srv2)
			runServer(t, srv2)
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			rep, err = cli.Request(rctx, []byte("after"))
			require.NoError(t, err, "the same client works again")
			assert.Equal(t, "reply:after", string(rep))
		})
	}
}

func TestRRRetries(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		n := calls.Add(1)
		if string(req) == "never" || (string(req) == "once" && n == 1) {
			select { // lose the first try's reply, and all of "never"
			case <-release:
			case <-ctx.Done():
			}
		}
		return echo(ctx, req)
	}
	srv, cli := newRR(t, "inproc", h, []Option{WithConcurrency(8)}, []Option{WithRetries(3, 50*time.Millisecond)})
	ctx := testCtx(t)
	rep, err := cli.Request(ctx, []byte("once"))
	require.NoError(t, err)
	assert.Equal(t, "reply:once", string(rep))
	assert.GreaterOrEqual(t, calls.Load(), int64(2), "answered by a retry")
	sent := cli.Stats().Sent
	assert.GreaterOrEqual(t, sent, uint64(2))

	_, err = cli.Request(ctx, []byte("never"))
	require.ErrorIs(t, err, ErrNoReply)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, sent+3, cli.Stats().Sent, "three tries")

	// The request's own ctx still wins over the tries left.
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = cli.Request(dctx, []byte("never"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Every late reply, once it comes, is dropped: all but the one reply
	// of each request that succeeded.
	close(release)
	succeeded := uint64(1)
	require.Eventually(t, func() bool {
		_, err := cli.Request(ctx, []byte("x"))
		require.NoError(t, err)
		succeeded++
		replies := srv.Stats().Sent
		return replies == uint64(calls.Load()) && replies == cli.Stats().Received
	}, 10*time.Second, time.Millisecond)
	st := cli.Stats()
	assert.Equal(t, st.Received-succeeded, st.Dropped)
	assert.GreaterOrEqual(t, st.Dropped, uint64(4))

	for _, o := range []Option{WithRetries(0, time.Second), WithRetries(2, 0)} {
		_, err := NewRRClient("inproc://x", o)
		assert.ErrorIs(t, err, ErrInvalidOption)
	}
}

func TestRRSeveralServers(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	var eps []string
	var srvs []*RRServer
	for i := 0; i < 2; i++ {
		srv, err := NewRRServer(bindEndpoint(t, "tcp"), func(context.Context, []byte) ([]byte, error) {
			return []byte(fmt.Sprint(i)), nil
		}, WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, srv)
		runServer(t, srv)
		eps = append(eps, srv.Endpoints()[0])
		srvs = append(srvs, srv)
	}
	cli, err := NewRRClient(eps[0]+","+eps[1], WithZMQContext(zctx), WithEvents(func(Event) {}))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	seen := map[string]bool{}
	require.Eventually(t, func() bool {
		rep, err := cli.Request(ctx, nil)
		require.NoError(t, err)
		seen[string(rep)] = true
		return len(seen) == 2
	}, 10*time.Second, time.Millisecond, "requests reach both servers")
	assert.NotZero(t, srvs[0].Stats().Received)
	assert.NotZero(t, srvs[1].Stats().Received)
	// Servers started together do not take each other out: each has one
	// connection, counted once.
	assert.EqualValues(t, 2, cli.Stats().Peers)
}

// taggedServer runs an RRServer on ep that answers every request with tag,
// closed at cleanup.
func taggedServer(t *testing.T, zctx *Context, ep, tag string) *RRServer {
	t.Helper()
	srv, err := NewRRServer(ep, func(context.Context, []byte) ([]byte, error) { return []byte(tag), nil }, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	return srv
}

// awaitAnswers sends requests on cli until every one of tags has
// answered one.
func awaitAnswers(t *testing.T, ctx context.Context, cli *RRClient, tags ...string) {
	t.Helper()
	seen := map[string]bool{}
	require.Eventually(t, func() bool {
		if rep, err := cli.Request(ctx, nil); err == nil {
			seen[string(rep)] = true
		}
		for _, tag := range tags {
			if !seen[tag] {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "requests reach every server of %v", tags)
}

// A server that is down is left out of the round-robin, whether it was
// never up or went down later, and is put back when it answers again:
// requests go only to servers up, never wait in a dead one's queue.
func TestRRSeveralServersOneDown(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	a := taggedServer(t, zctx, bindEndpoint(t, "tcp"), "a")
	bEp := bindEndpoint(t, "ipc") // nothing there until b starts

	cli, err := NewRRClient(a.Endpoints()[0]+","+bEp, WithZMQContext(zctx), WithReconnectInterval(10*time.Millisecond, 0))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	// request sends one request; it fails after wait (a request in a dead
	// server's queue waits for ever).
	request := func(wait time.Duration) (string, error) {
		rctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		rep, err := cli.Request(rctx, nil)
		return string(rep), err
	}
	requestAll := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			rep, err := request(5 * time.Second)
			require.NoError(t, err, "request %d waited in a dead server's queue", i)
			seen[rep]++
		}
		return seen
	}
	assert.Equal(t, map[string]int{"a": 50}, requestAll(50), "b never up: every request to a")

	taggedServer(t, zctx, bEp, "b")
	require.Eventually(t, func() bool {
		rep, err := request(5 * time.Second)
		return err == nil && rep == "b"
	}, 10*time.Second, time.Millisecond, "b found back")
	seen := requestAll(50)
	assert.Positive(t, seen["a"])
	assert.Positive(t, seen["b"])
	assert.Len(t, seen, 2)

	require.NoError(t, a.Close())
	// The first requests may still go to a before the client sees it
	// gone (and wait in its queue): once b alone answers ten in a row, a
	// is out.
	require.Eventually(t, func() bool {
		for i := 0; i < 10; i++ {
			if rep, err := request(100 * time.Millisecond); err != nil || rep != "b" {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, map[string]int{"b": 50}, requestAll(50), "a down: every request to b")
}

// A client that binds for some servers and connects to others spreads
// requests over both kinds, and a server AddEndpoint adds while they are up
// but that cannot be reached takes none of them.
func TestRRClientBindsAndConnects(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	cli, err := NewRRClient("@tcp://127.0.0.1:*", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	taggedServer(t, zctx, ">"+cli.Endpoints()[0], "in") // connects to the client
	out := taggedServer(t, zctx, bindEndpoint(t, "tcp"), "out")
	require.NoError(t, cli.AddEndpoint(out.Endpoints()[0]))
	awaitAnswers(t, ctx, cli, "in", "out")

	require.NoError(t, cli.AddEndpoint(unreachableTCP(t)))
	for i := 0; i < 50; i++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Request(rctx, nil)
		cancel()
		require.NoError(t, err, "request %d waited in the unreachable server's queue", i)
	}
}

// The peers that connect to a client that binds are named in libzmq's
// events by the client's listener: they are not taken for a server the
// client connects to on the same port, whose state their leaving leaves
// alone.
func TestRRClientListenerPeerNotAServer(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	out := taggedServer(t, zctx, "tcp://127.0.0.2:*", "out")
	port := out.Endpoints()[0][strings.LastIndexByte(out.Endpoints()[0], ':'):]
	leaving, left := eventsOfKind(EventDisconnected)
	cli, err := NewRRClient("@tcp://127.0.0.1"+port, WithZMQContext(zctx), leaving)
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	require.NoError(t, cli.AddEndpoint(out.Endpoints()[0]))
	in := taggedServer(t, zctx, ">"+cli.Endpoints()[0], "in")
	awaitAnswers(t, ctx, cli, "in", "out")

	require.NoError(t, in.Close())
	// The client's own monitor saw it first. (out may have been taken out
	// and back while its connection was being made: that connection's
	// DISCONNECTED is not the one awaited.)
	awaitEvent(t, ctx, left, func(e Event) bool { return e.Endpoint == cli.Endpoints()[0] }, "no DISCONNECTED for the peer that left")
	cli.pmu.Lock()
	defer cli.pmu.Unlock()
	require.Len(t, cli.servers, 1)
	assert.Equal(t, up, cli.servers[0].state, "the server on the same port is still up")
}

// Servers given by host name on one port are told apart by the address
// each name resolves to: libzmq names a connection by that address once it
// has reconnected, and a server that comes back is found again even when
// no other was up to take it out meanwhile.
func TestRRHostNamesOnOnePort(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	a := taggedServer(t, zctx, "tcp://127.0.0.1:*", "a")
	port := a.Endpoints()[0][strings.LastIndexByte(a.Endpoints()[0], ':'):]
	b := taggedServer(t, zctx, "tcp://127.0.0.2"+port, "b")
	cli, err := NewRRClient("tcp://localhost"+port+",tcp://127.0.0.2"+port,
		WithZMQContext(zctx), WithReconnectInterval(10*time.Millisecond, 0))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	awaitAnswers(t, ctx, cli, "a", "b")

	// Both down, then a back: the client must see a up again by the
	// events of its reconnection, named 127.0.0.1, not localhost. (A
	// request sent before the client saw b down would be lost with b.)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool {
		cli.pmu.Lock()
		defer cli.pmu.Unlock()
		return !cli.anyUpLocked()
	}, 10*time.Second, time.Millisecond, "both servers seen down")
	taggedServer(t, zctx, "tcp://127.0.0.1"+port, "a again")
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := cli.Request(rctx, nil)
	require.NoError(t, err, "a back, not seen up")
	assert.Equal(t, "a again", string(rep))
}

// unreachableTCP returns a loopback endpoint whose connects hang, as a
// host that drops packets makes them: a listener with a backlog of 0 that
// never accepts, its queue filled, drops every new SYN.
func unreachableTCP(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for filled := false; !filled; {
		c, err := net.DialTimeout("tcp", addr, time.Second) // a dial that completes takes far less
		if filled = err != nil; !filled {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	return "tcp://" + addr
}

// TestRRClientAgainstREP runs RRClient against a hand-written REP loop,
// which answers one request at a time, with requests in flight at once.
func TestRRClientAgainstREP(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const goroutines, each = 10, 20
			zctx := newTestContext(t)
			rep, err := zctx.zc.ZMQ().NewSocket(zmq.REP)
			require.NoError(t, err)
			require.NoError(t, rep.SetLinger(0))
			require.NoError(t, rep.Bind(bindEndpoint(t, tr)))
			ep, err := rep.GetLastEndpoint()
			require.NoError(t, err)
			served := make(chan error, 1)
			clientsDone := make(chan struct{})
			go func() { // the REP socket belongs to this goroutine
				defer func() {
					<-clientsDone // linger 0 would drop the last reply
					served <- rep.Close()
				}()
				for i := 0; i < goroutines*each; i++ {
					req, err := rep.RecvBytes(0)
					if err != nil {
						served <- err
						return
					}
					if _, err := rep.SendBytes(append([]byte("rep:"), req...), 0); err != nil {
						served <- err
						return
					}
				}
			}()
			cli, err := NewRRClient(ep, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, cli)
			ctx := testCtx(t)
			requestFromMany(t, ctx, cli, goroutines, each, "rep:")
			close(clientsDone)
			require.NoError(t, <-served)
		})
	}
}

// TestRRServerWithREQ calls RRServer from a plain REQ socket, as the Python
// module's RRClient does, and reads an error reply as one frame.
func TestRRServerWithREQ(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			h := func(ctx context.Context, req []byte) ([]byte, error) {
				if string(req) == "fail" {
					return nil, errors.New("bad request")
				}
				return echo(ctx, req)
			}
			zctx := newTestContext(t)
			srv, err := NewRRServer(bindEndpoint(t, tr), h, WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, srv)
			runServer(t, srv)

			req, err := zctx.zc.ZMQ().NewSocket(zmq.REQ)
			require.NoError(t, err)
			defer func() { require.NoError(t, req.Close()) }()
			require.NoError(t, req.SetLinger(0))
			require.NoError(t, req.SetRcvtimeo(10*time.Second))
			require.NoError(t, req.Connect(srv.Endpoints()[0]))
			for _, msg := range []string{"Hello", "fail", ""} {
				_, err := req.SendBytes([]byte(msg), 0)
				require.NoError(t, err)
				got, err := req.RecvMessageBytes(0)
				require.NoError(t, err)
				require.Len(t, got, 1, "one frame, as a REQ peer expects")
				if msg == "fail" {
					assert.Equal(t, ErrorReplyPrefix+"bad request", string(got[0]))
				} else {
					assert.Equal(t, "reply:"+msg, string(got[0]))
				}
			}
		})
	}
}

func TestRRServerMalformedRequests(t *testing.T) {
	zctx := newTestContext(t)
	var reported atomic.Int64
	srv, err := NewRRServer(bindEndpoint(t, "inproc"), echo, WithZMQContext(zctx),
		WithErrorHandler(func(err error) {
			assert.ErrorIs(t, err, ErrMalformed)
			reported.Add(1)
		}))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	d, err := zctx.zc.ZMQ().NewSocket(zmq.DEALER)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	require.NoError(t, d.SetLinger(0))
	require.NoError(t, d.SetRcvtimeo(10*time.Second))
	require.NoError(t, d.Connect(srv.Endpoints()[0]))

	// No delimiter: ignored. Two body frames: an error reply.
	_, err = d.SendMessage("no-envelope")
	require.NoError(t, err)
	_, err = d.SendMessage("id", "", "a", "b")
	require.NoError(t, err)
	got, err := d.RecvMessage(0)
	require.NoError(t, err)
	assert.Equal(t, []string{"id", "", ErrorReplyPrefix + "request has 2 body frames, want 1"}, got)
	_, err = d.SendMessage("id2", "")
	require.NoError(t, err)
	got, err = d.RecvMessage(0)
	require.NoError(t, err)
	assert.Equal(t, []string{"id2", "", ErrorReplyPrefix + "request has 0 body frames, want 1"}, got)
	_, err = d.SendMessage("id3", "", "ok")
	require.NoError(t, err)
	got, err = d.RecvMessage(0)
	require.NoError(t, err)
	assert.Equal(t, []string{"id3", "", "reply:ok"}, got)
	assert.Equal(t, uint64(3), srv.Stats().Malformed)
	assert.Equal(t, int64(3), reported.Load())
}

func TestRRServerRunEndsOnClose(t *testing.T) {
	zctx := newTestContext(t)
	inHandler := make(chan struct{})
	srv, err := NewRRServer(bindEndpoint(t, "inproc"), func(ctx context.Context, req []byte) ([]byte, error) {
		close(inHandler)
		<-ctx.Done() // the handler's ctx ends when Run stops
		return nil, ctx.Err()
	}, WithZMQContext(zctx), WithConcurrency(3))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(context.Background()) }()
	cli, err := NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	reqErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, err := cli.Request(rctx, []byte("x"))
		reqErr <- err
	}()
	<-inHandler
	require.NoError(t, srv.Close())
	select {
	case err := <-runErr:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	cancel()
	// The cancelled handler's error reply may leave before the socket closes
	// (better than nothing for the client), or not: then the client's ctx.
	err = <-reqErr
	var re *RemoteError
	assert.True(t, errors.Is(err, context.Canceled) || errors.As(err, &re), "Request: %v", err)
	require.NoError(t, srv.Close(), "Close is idempotent")
	assert.ErrorIs(t, srv.Run(context.Background()), ErrClosed)

	_, err = NewRRServer("inproc://nil", nil, WithZMQContext(zctx))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewRRServer("bogus", echo, WithZMQContext(zctx))
	assert.ErrorIs(t, err, ErrInvalidEndpoint)
}

type sum struct {
	A, B int
}

func TestRRJSON(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			h := JSONHandler(func(ctx context.Context, s sum) (map[string]int, error) {
				if s.A < 0 {
					return nil, errors.New("negative")
				}
				return map[string]int{"sum": s.A + s.B}, nil
			})
			_, cli := newRR(t, tr, h, nil, nil)
			ctx := testCtx(t)
			got, err := RequestJSON[map[string]int](ctx, cli, sum{A: 2, B: 40})
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"sum": 42}, got)

			_, err = RequestJSON[map[string]int](ctx, cli, sum{A: -1})
			var re *RemoteError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "negative", re.Message)

			// A request that is not a sum is answered with an error reply.
			_, err = RequestJSON[map[string]int](ctx, cli, "not an object")
			require.ErrorAs(t, err, &re)
			assert.Contains(t, re.Message, "request is not JSON for zmqkit.sum")

			// A reply that is not a Resp is a malformed error.
			_, err = RequestJSON[[]string](ctx, cli, sum{A: 1})
			assert.ErrorIs(t, err, ErrMalformed)

			_, err = RequestJSON[int](ctx, cli, func() {})
			assert.Error(t, err)
		})
	}
}

// A server that replies and closes at once (a graceful stop, a one-shot
// worker): the reply still reaches the client. With ZMQ_IMMEDIATE on the
// socket, libzmq dropped a reply the client had received but not yet read
// when the connection ended: about a quarter of them.
func TestRRReplyThenServerCloses(t *testing.T) {
	zc, err := zmq.NewContext()
	require.NoError(t, err)
	defer func() { require.NoError(t, zc.Term()) }()
	zctx := newTestContext(t)
	ctx := testCtx(t)
	lost := 0
	for i := 0; i < 100; i++ {
		srv, err := zc.NewSocket(zmq.ROUTER)
		require.NoError(t, err)
		require.NoError(t, srv.SetRcvtimeo(5*time.Second)) // a request lost fails the test, not hangs it
		require.NoError(t, srv.Bind("tcp://127.0.0.1:*"))
		ep, err := srv.GetLastEndpoint()
		require.NoError(t, err)
		cli, err := NewRRClient(ep, WithZMQContext(zctx))
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() {
			msg, err := srv.RecvMessageBytes(0)
			if err == nil {
				_, err = srv.SendMessage(msg)
			}
			if e := srv.Close(); err == nil { // linger: the reply goes out first
				err = e
			}
			served <- err
		}()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rep, err := cli.Request(rctx, []byte("x"))
		cancel()
		if err != nil {
			lost++
		} else {
			assert.Equal(t, "x", string(rep))
		}
		require.NoError(t, <-served)
		require.NoError(t, cli.Close())
	}
	assert.Zero(t, lost, "replies lost of 100")
}

func TestRRServerRepliesAtStop(t *testing.T) {
	testServerStop(t, func(t *testing.T) serverStop {
		zctx := newTestContext(t)
		var srv *RRServer
		var cli *RRClient
		got := make(chan error, 16)
		return serverStop{
			start: func(t *testing.T, h RequestHandler, n int) (func(context.Context) error, func() error, func() Stats) {
				var err error
				srv, err = NewRRServer(bindEndpoint(t, "tcp"), h, WithZMQContext(zctx), WithConcurrency(n))
				require.NoError(t, err)
				closeOnCleanup(t, srv)
				cli, err = NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, cli)
				return srv.Run, srv.Close, srv.Stats
			},
			send: func(t *testing.T, n int) {
				for i := 0; i < n; i++ {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						_, err := cli.Request(ctx, []byte("x"))
						got <- err
					}()
				}
			},
			replies: func(ctx context.Context, want int) int {
				replies := 0
				for replies < want {
					select {
					case err := <-got:
						if err == nil {
							replies++
						}
					case <-ctx.Done():
						return replies
					}
				}
				return replies
			},
		}
	})
}

// oversizeServer runs an RRServer on tcp that echoes each request, except
// that it answers 1000 bytes to a request big says is big: over a client's
// WithMaxMessageSize(100).
func oversizeServer(t *testing.T, zctx *Context, big func(req []byte) bool) *RRServer {
	t.Helper()
	srv, err := NewRRServer(bindEndpoint(t, "tcp"), func(_ context.Context, req []byte) ([]byte, error) {
		if big(req) {
			return make([]byte, 1000), nil
		}
		return req, nil
	}, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	return srv
}

// A reply over the client's WithMaxMessageSize drops its connection; the
// client reconnects, and the next requests are answered.
func TestRRClientRecoversFromOversizeReply(t *testing.T) {
	zctx := newTestContext(t)
	srv := oversizeServer(t, zctx, func(req []byte) bool { return string(req) == "big" })
	var rec errorRecorder
	cli, err := NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx), WithMaxMessageSize(100), rec.option())
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	ctx := testCtx(t)
	reply, err := cli.Request(ctx, []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "hi", string(reply))

	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err = cli.Request(short, []byte("big"))
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "the oversize reply is lost")
	require.Eventually(t, func() bool { return cli.Stats().ProtocolErrors == 1 }, 10*time.Second, time.Millisecond)
	require.ErrorIs(t, rec.errors()[0], ErrConnectionDropped)
	reply, err = cli.Request(ctx, []byte("again"))
	require.NoError(t, err)
	require.Equal(t, "again", string(reply))
}

// With retries, a reply over WithMaxMessageSize, which drops the
// connection for a protocol error (libzmq then does not reconnect; zmqkit
// does), ends the try once the connection is made again: the request goes
// again at once, not after the 10 s per-try time-out.
func TestRRRetryAfterOversizeReply(t *testing.T) {
	zctx := newTestContext(t)
	var calls atomic.Int32
	srv := oversizeServer(t, zctx, func([]byte) bool {
		return calls.Add(1) == 2 // the first try of "big"
	})
	cli, err := NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx), WithMaxMessageSize(100), WithRetries(3, 10*time.Second))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	ctx := testCtx(t)
	reply, err := cli.Request(ctx, []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "hi", string(reply))

	short, cancel := context.WithTimeout(ctx, 5*time.Second) // half a try
	defer cancel()
	reply, err = cli.Request(short, []byte("big"))
	require.NoError(t, err, "the request was not sent again when the connection was made again")
	assert.Equal(t, "big", string(reply))
	assert.EqualValues(t, 1, cli.Stats().ProtocolErrors)
}

// Request/reply under load: one RRClient shared by 64 goroutines, each
// with a request in flight, against an echo RRServer. Every reply must be
// the right one, and the run fails on a stall: a request unanswered for
// 5 s while the server is up (a message lost, or a waiter never woken).
func TestRRLoad64InFlight(t *testing.T) {
	const goroutines, total = 64, 50000
	for _, concurrency := range []int{1, 8} {
		t.Run(fmt.Sprint("concurrency=", concurrency), func(t *testing.T) {
			zctx := newTestContext(t)
			srv, err := NewRRServer(bindEndpoint(t, "tcp"), func(_ context.Context, req []byte) ([]byte, error) {
				return req, nil
			}, WithZMQContext(zctx), WithConcurrency(concurrency))
			require.NoError(t, err)
			closeOnCleanup(t, srv)
			runServer(t, srv)
			cli, err := NewRRClient(srv.Endpoints()[0], WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, cli)
			var next atomic.Int64
			errc := make(chan error, goroutines)
			for g := 0; g < goroutines; g++ {
				go func() {
					for {
						i := next.Add(1)
						if i > total {
							errc <- nil
							return
						}
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						req := []byte(strconv.FormatInt(i, 10))
						reply, err := cli.Request(ctx, req)
						cancel()
						if err != nil {
							errc <- fmt.Errorf("request %d stalled or failed: %w (server %+v, client %+v)", i, err, srv.Stats(), cli.Stats())
							return
						}
						if !bytes.Equal(reply, req) {
							errc <- fmt.Errorf("request %d got the reply %q", i, reply)
							return
						}
					}
				}()
			}
			for g := 0; g < goroutines; g++ {
				require.NoError(t, <-errc)
			}
			assert.EqualValues(t, total, srv.Stats().Sent)
		})
	}
}

// With retries and heartbeats, a request whose server froze (SIGSTOP) is
// sent again as soon as the heartbeat finds it gone, to a server that is
// up, not after the per-try time-out.
func TestRRRetryOnServerLost(t *testing.T) {
	p := startPython(t, pyREP, "tcp://127.0.0.1:0", "1")
	frozenEp := p.Line(t)
	zctx := newTestContext(t)
	cli := newClient(t, zctx, frozenEp, WithRetries(3, 10*time.Second), WithHeartbeat(100*time.Millisecond, 300*time.Millisecond))
	reply, err := cli.Request(testCtx(t), []byte("one"))
	require.NoError(t, err)
	require.Equal(t, "rep:one", string(reply))

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
	srv, err := NewRRServer(bindEndpoint(t, "tcp"), echo, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	done := make(chan struct{})
	var got []byte
	start := time.Now()
	go func() {
		defer close(done)
		got, err = cli.Request(testCtx(t), []byte("two")) // to the frozen server: it is the only one
	}()
	require.Eventually(t, func() bool { return cli.Stats().Sent >= 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, cli.AddEndpoint(srv.Endpoints()[0]))
	<-done
	require.NoError(t, err)
	assert.Equal(t, "reply:two", string(got))
	took := time.Since(start)
	t.Logf("answered after %v", took)
	assert.Less(t, took, 5*time.Second, "resent when the frozen server was found gone, not after the 10 s per-try time-out")
}

// Requests that end at every stage (before sending, while queued, while
// the server works, as the reply arrives) alongside requests that succeed:
// every reply a Request returns is its own, never another's, late or
// reused.
func TestRRRequestsEndingAtEveryStage(t *testing.T) {
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		if req[len(req)-1]%3 == 0 {
			time.Sleep(time.Duration(req[len(req)-1]%7) * 10 * time.Microsecond)
		}
		return echo(ctx, req)
	}
	_, cli := newRR(t, "inproc", h, []Option{WithConcurrency(4)}, nil)
	ctx := testCtx(t)
	awaitServer(t, cli)
	var (
		wg      sync.WaitGroup
		ok, end atomic.Int64
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				req := fmt.Sprintf("g%d-%d", g, i)
				rctx, cancel := context.WithTimeout(ctx, time.Duration(i%5)*20*time.Microsecond)
				if i%5 == 4 {
					rctx, cancel = context.WithCancel(ctx) // these succeed
				}
				rep, err := cli.Request(rctx, []byte(req))
				cancel()
				if err != nil {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					end.Add(1)
					continue
				}
				ok.Add(1)
				assert.Equal(t, "reply:"+req, string(rep))
			}
		}()
	}
	wg.Wait()
	assert.GreaterOrEqual(t, ok.Load(), int64(8*60), "the requests without a deadline all succeed")
	t.Logf("%d answered, %d ended first", ok.Load(), end.Load())
}

// A server taken out while its connection is made but its handshake is not
// (here: it restarted as a listener that never speaks) leaves Stats.Peers
// right, and its connection's EventDisconnected comes: libzmq reports
// nothing for the connection the client closes, zmqkit does.
func TestRRRetiredServerNotCountedInPeers(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	a := taggedServer(t, zctx, "tcp://127.0.0.1:*", "a")
	b, err := NewRRServer("tcp://127.0.0.1:*", echo, WithZMQContext(zctx))
	require.NoError(t, err)
	runServer(t, b)
	bEp := b.Endpoints()[0]
	connected := make(chan Event, 64)
	var toBMade, toBClosed atomic.Int64
	toB := func(e Event) bool { return e.Endpoint == bEp }
	events := WithEvents(func(e Event) {
		switch {
		case e.Kind == EventConnected:
			if toB(e) {
				toBMade.Add(1)
			}
			select {
			case connected <- e:
			default:
			}
		case e.Kind == EventDisconnected && toB(e):
			toBClosed.Add(1)
		}
	})
	cli, err := NewRRClient(a.Endpoints()[0]+","+bEp, WithZMQContext(zctx), WithReconnectInterval(10*time.Millisecond, 0), events)
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	awaitAnswers(t, ctx, cli, "a", "reply:")
	awaitEvent(t, ctx, connected, toB, "b's first connection never made")

	require.NoError(t, b.Close())
	silent, err := net.Listen("tcp", strings.TrimPrefix(bEp, "tcp://"))
	require.NoError(t, err)
	accepted := make(chan net.Conn, 64)
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = silent.Close()
		<-done
		close(accepted)
		for c := range accepted {
			_ = c.Close()
		}
	})
	go func() { // accepts, never speaks
		defer close(done)
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	// Reconnected to the silent listener: b is down, its connection made.
	awaitEvent(t, ctx, connected, toB, "the client never reconnected to b's address")
	rep, err := cli.Request(ctx, nil) // its reader takes b out
	require.NoError(t, err)
	require.Equal(t, "a", string(rep))
	require.Eventually(t, func() bool { return cli.Stats().Peers == 1 }, 5*time.Second, time.Millisecond,
		"Peers %d, want 1: a only", cli.Stats().Peers)
	require.Eventually(t, func() bool { return toBClosed.Load() == toBMade.Load() }, 5*time.Second, time.Millisecond,
		"%d connections to b made, %d reported closed", toBMade.Load(), toBClosed.Load())
}
