package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upper is a PairServer handler: "fail" fails, "panic" panics, anything
// else comes back upper-cased.
func upper(ctx context.Context, msg []byte) ([]byte, error) {
	switch string(msg) {
	case "fail":
		return nil, errors.New("handler says no")
	case "panic":
		panic("handler blew up")
	}
	return bytes.ToUpper(msg), nil
}

// newPair makes a running PairServer bound on tr and a PairClient connected
// to it, on zctx.
func newPair(t testing.TB, zctx *Context, tr string, h RequestHandler, srvOpts ...Option) (*PairServer, *PairClient) {
	t.Helper()
	srv, err := NewPairServer(bindEndpoint(t, tr), h, append([]Option{WithZMQContext(zctx)}, srvOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	stop := runInBackground(t, srv.Run)
	t.Cleanup(func() {
		err := stop() // ErrClosed when the test closed the server itself
		assert.True(t, errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed), "Run: %v", err)
	})
	cli, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	return srv, cli
}

func TestPairRequestReply(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var rec errorRecorder
			srv, cli := newPair(t, newTestContext(t), tr, upper, rec.option())
			ctx := testCtx(t)
			reply, err := cli.Request(ctx, []byte("hello"))
			require.NoError(t, err)
			assert.Equal(t, "HELLO", string(reply))

			_, err = cli.Request(ctx, []byte("fail"))
			var re *RemoteError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "handler says no", re.Message)
			_, err = cli.Request(ctx, []byte("panic"))
			require.ErrorAs(t, err, &re)
			assert.Equal(t, "panic: handler blew up", re.Message)

			reply, err = cli.Request(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, reply, "empty messages are answered too")
			reply, err = cli.Request(ctx, []byte("still serving"))
			require.NoError(t, err)
			assert.Equal(t, "STILL SERVING", string(reply))

			// The server counts a reply just after sending it, so the client
			// may have it first.
			require.Eventually(t, func() bool { return srv.Stats().Sent == 5 }, 5*time.Second, time.Millisecond)
			st := srv.Stats()
			assert.Equal(t, uint64(5), st.Received)
			assert.Equal(t, uint64(2), st.HandlerErrors)
			assert.Equal(t, uint64(1), st.HandlerPanics)
			assert.Equal(t, uint64(5), cli.Stats().Sent)
			assert.Equal(t, uint64(5), cli.Stats().Received)
			reported := rec.errors()
			require.Len(t, reported, 2)
			requireHandlerFailures(t, reported, "handler says no")
		})
	}
}

func TestPairConcurrentRequests(t *testing.T) {
	_, cli := newPair(t, newTestContext(t), "tcp", upper)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				msg := fmt.Sprintf("g%d-%d", g, i)
				reply, err := cli.Request(ctx, []byte(msg))
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, fmt.Sprintf("G%d-%d", g, i), string(reply), "each caller gets its own reply")
			}
		}()
	}
	wg.Wait()
}

// TestPairRequestTimeoutDiscardsLateReply: a Request that ends by ctx does
// not leave its late reply for the next Request.
func TestPairRequestTimeoutDiscardsLateReply(t *testing.T) {
	release := make(chan struct{})
	_, cli := newPair(t, newTestContext(t), "inproc", func(ctx context.Context, msg []byte) ([]byte, error) {
		if string(msg) == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return msg, nil
	})
	ctx := testCtx(t)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err := cli.Request(rctx, []byte("slow"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	close(release)
	reply, err := cli.Request(ctx, []byte("next"))
	require.NoError(t, err)
	assert.Equal(t, "next", string(reply))
	assert.Equal(t, uint64(1), cli.Stats().Dropped)
}

// TestPairDuplex: two PairClients (one binds) send and receive at once, each
// from two goroutines.
func TestPairDuplex(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const n = 5000
			zctx := newTestContext(t)
			ctx := testCtx(t)
			a, err := NewPairClient("@"+bindEndpoint(t, tr), WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, a)
			b, err := NewPairClient(a.Endpoints()[0], WithZMQContext(zctx))
			require.NoError(t, err)
			closeOnCleanup(t, b)

			var wg sync.WaitGroup
			for _, side := range []struct {
				name     string
				from, to *PairClient
			}{{"a", a, b}, {"b", b, a}} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := 0; i < n; i++ {
						if err := side.from.Send(ctx, []byte(side.name+strconv.Itoa(i))); err != nil {
							t.Errorf("%s send %d: %v", side.name, i, err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i := 0; i < n; i++ {
						msg, err := side.to.Receive(ctx)
						if err != nil {
							t.Errorf("%s receive %d: %v", side.name, i, err)
							return
						}
						if string(msg) != side.name+strconv.Itoa(i) {
							t.Errorf("got %q, want %s%d", msg, side.name, i)
							return
						}
					}
				}()
			}
			wg.Wait()
			assert.Equal(t, uint64(n), a.Stats().Sent)
			assert.Equal(t, uint64(n), a.Stats().Received)
		})
	}
}

func TestPairServerSend(t *testing.T) {
	srv, cli := newPair(t, newTestContext(t), "ipc", upper)
	ctx := testCtx(t)
	// The server may not have its peer yet: a request first makes sure.
	_, err := cli.Request(ctx, []byte("hi"))
	require.NoError(t, err)
	require.NoError(t, srv.Send(ctx, []byte("unprompted")))
	msg, err := cli.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "unprompted", string(msg))
}

// requestEventually retries a Request, each try bounded, until it gets its
// reply: during a peer's restart a try may be lost or reset.
func requestEventually(t testing.TB, cli *PairClient, msg string) string {
	t.Helper()
	ctx := testCtx(t)
	for {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		reply, err := cli.Request(rctx, []byte(msg))
		cancel()
		if err == nil {
			return string(reply)
		}
		require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPairReset), "unexpected error %v", err)
		require.NoError(t, ctx.Err(), "the pair never came back")
	}
}

// bindAgain binds a new PairServer where an old one was, waiting while the
// address is still held by the old socket's closing listener.
func bindAgain(t testing.TB, zctx *Context, ep string, h RequestHandler) *PairServer {
	t.Helper()
	var srv *PairServer
	require.Eventually(t, func() bool {
		var err error
		srv, err = NewPairServer(ep, h, WithZMQContext(zctx))
		if err != nil {
			require.ErrorIs(t, err, syscall.EADDRINUSE)
			return false
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	closeOnCleanup(t, srv)
	return srv
}

func TestPairClientSurvivesServerRestart(t *testing.T) {
	for _, tr := range []string{"tcp", "ipc"} {
		t.Run(tr, func(t *testing.T) {
			zctx := newTestContext(t)
			srv1, cli := newPair(t, zctx, tr, upper)
			ep := srv1.Endpoints()[0]
			assert.Equal(t, "ONE", requestEventually(t, cli, "one"))

			for round := 0; round < 3; round++ {
				require.NoError(t, srv1.Close())
				srv2 := bindAgain(t, zctx, ep, upper)
				stop := runInBackground(t, srv2.Run)
				assert.Equal(t, "AGAIN", requestEventually(t, cli, "again"))
				ctx := testCtx(t)
				for i := 0; i < 100; i++ {
					reply, err := cli.Request(ctx, []byte("x"+strconv.Itoa(i)))
					require.NoError(t, err)
					require.Equal(t, "X"+strconv.Itoa(i), string(reply))
				}
				require.NoError(t, srv2.Close())
				require.ErrorIs(t, stop(), ErrClosed)
				srv1 = bindAgain(t, zctx, ep, upper)
				runInBackground(t, srv1.Run)
				assert.Equal(t, "BACK", requestEventually(t, cli, "back"))
			}
		})
	}
}

func TestPairServerSurvivesClientRestart(t *testing.T) {
	for _, tr := range []string{"tcp", "ipc"} {
		t.Run(tr, func(t *testing.T) {
			zctx := newTestContext(t)
			srv, cli := newPair(t, zctx, tr, upper)
			ep := srv.Endpoints()[0]
			assert.Equal(t, "FIRST", requestEventually(t, cli, "first"))
			for round := 0; round < 5; round++ {
				require.NoError(t, cli.Close())
				var err error
				cli, err = NewPairClient(ep, WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, cli)
				assert.Equal(t, "NEXT", requestEventually(t, cli, "next"))
				// The server may learn that the old client left only after
				// the new one got through; its restart then resets the new
				// client's connection once (see PairServer's doc).
				ctx := testCtx(t)
				resets := 0
				for i := 0; i < 100; i++ {
					reply, err := cli.Request(ctx, []byte("y"+strconv.Itoa(i)))
					if errors.Is(err, ErrPairReset) && resets == 0 {
						resets++
						assert.Equal(t, "RETRY", requestEventually(t, cli, "retry"))
						continue
					}
					require.NoError(t, err)
					require.Equal(t, "Y"+strconv.Itoa(i), string(reply))
				}
			}
			assert.Equal(t, []string{ep}, srv.Endpoints(), "the same address throughout")
		})
	}
}

func TestPairEndsByCtxAndClose(t *testing.T) {
	zctx := newTestContext(t)
	cli, err := NewPairClient(bindEndpoint(t, "ipc"), WithZMQContext(zctx)) // nobody there
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = cli.Receive(dctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = cli.Request(dctx, []byte("x"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	srv, err := NewPairServer("tcp://127.0.0.1:*", upper, WithZMQContext(zctx))
	require.NoError(t, err)
	errc := make(chan error, 3)
	go func() { errc <- srv.Run(context.Background()) }()
	go func() { errc <- srv.Send(context.Background(), []byte("nobody")) }()
	go func() {
		_, err := cli.Receive(context.Background())
		errc <- err
	}()
	awaitBlocked(t, srv.conn, 2) // Run's receive and the Send
	awaitBlocked(t, cli.conn, 1)
	require.NoError(t, srv.Close())
	require.NoError(t, cli.Close())
	requireAllReturn(t, errc, 3, ErrClosed)
	require.NoError(t, srv.Close(), "Close is idempotent")
	assert.ErrorIs(t, cli.Send(context.Background(), nil), ErrClosed)
	assert.ErrorIs(t, srv.Run(context.Background()), ErrClosed)

	_, err = NewPairServer("tcp://127.0.0.1:*", nil, WithZMQContext(zctx))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewPairClient("bogus", WithZMQContext(zctx))
	assert.ErrorIs(t, err, ErrInvalidEndpoint)
}

func TestPairContextClose(t *testing.T) {
	zctx, err := NewContext()
	require.NoError(t, err)
	srv, err := NewPairServer("tcp://127.0.0.1:*", upper, WithZMQContext(zctx))
	require.NoError(t, err)
	cli, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	errc := make(chan error, 2)
	go func() { errc <- srv.Run(context.Background()) }()
	go func() {
		_, err := cli.Receive(context.Background())
		errc <- err
	}()
	awaitBlocked(t, srv.conn, 1)
	awaitBlocked(t, cli.conn, 1)
	require.NoError(t, zctx.Close())
	requireAllReturn(t, errc, 2, ErrClosed)
}

func TestPairServerRepliesAtStop(t *testing.T) {
	testServerStop(t, func(t *testing.T) serverStop {
		zctx := newTestContext(t)
		var srv *PairServer
		var cli *PairClient
		return serverStop{
			start: func(t *testing.T, h RequestHandler, n int) (func(context.Context) error, func() error, func() Stats) {
				var err error
				srv, err = NewPairServer(bindEndpoint(t, "tcp"), h, WithZMQContext(zctx), WithConcurrency(n))
				require.NoError(t, err)
				closeOnCleanup(t, srv)
				cli, err = NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, cli)
				return srv.Run, srv.Close, srv.Stats
			},
			send: func(t *testing.T, n int) {
				for i := 0; i < n; i++ {
					require.NoError(t, cli.Send(testCtx(t), []byte("x")))
				}
			},
			replies: func(ctx context.Context, want int) int {
				replies := 0
				for ; replies < want; replies++ {
					if _, err := cli.Receive(ctx); err != nil {
						break
					}
				}
				return replies
			},
		}
	})
}

// TestPairRequestQueuedEndsWithCtx: Requests are served one at a time, but
// one waiting for another to finish still ends when its own ctx ends, or
// when the client closes. (Before, it waited on a mutex, deaf to both.)
func TestPairRequestQueuedEndsWithCtx(t *testing.T) {
	h := newBlockingHandler(1)
	_, cli := newPair(t, newTestContext(t), "inproc", h.handle)
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(release) // before Run stops, however the test ends
	first := make(chan error, 1)
	go func() {
		reply, err := cli.Request(testCtx(t), []byte("first"))
		if err == nil && string(reply) != "reply:first" {
			err = fmt.Errorf("reply %q", reply)
		}
		first <- err
	}()
	h.awaitEntered(t, 1) // the first Request waits for its reply

	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() {
		_, err := cli.Request(ctx, []byte("second"))
		queued <- err
	}()
	cancel()
	requireAllReturn(t, queued, 1, context.Canceled)

	release()
	require.NoError(t, <-first)
	reply, err := cli.Request(testCtx(t), []byte("third"))
	require.NoError(t, err)
	assert.Equal(t, "reply:third", string(reply), "the abandoned Request sent nothing: no reply is owed")
}

// TestPairRequestQueuedEndsWithClose: a Request waiting behind another
// returns ErrClosed when the client closes.
func TestPairRequestQueuedEndsWithClose(t *testing.T) {
	h := newBlockingHandler(1)
	_, cli := newPair(t, newTestContext(t), "inproc", h.handle)
	t.Cleanup(func() { close(h.release) }) // before Run stops
	errc := make(chan error, 2)
	for _, msg := range []string{"first", "second"} {
		go func() {
			_, err := cli.Request(testCtx(t), []byte(msg))
			errc <- err
		}()
		if msg == "first" {
			h.awaitEntered(t, 1)
		}
	}
	require.NoError(t, cli.Close())
	requireAllReturn(t, errc, 2, ErrClosed)
}

// replacements is a slog handler that passes on the why of each pair
// socket replacement an object logs.
type replacements chan string

func (r replacements) Enabled(context.Context, slog.Level) bool { return true }
func (r replacements) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r replacements) WithGroup(string) slog.Handler            { return r }
func (r replacements) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "zmqkit: pair socket replaced" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "why" {
			select {
			case r <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}

// await waits for a replacement whose why is one of want.
func (r replacements) await(t testing.TB, want ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case why := <-r:
			if slices.Contains(want, why) {
				return
			}
			seen = append(seen, why)
		case <-timeout:
			require.FailNow(t, "no pair socket replacement", "want one of %q; saw %q", want, seen)
		}
	}
}

// TestPairLateReplyNeverReachesTheNextClient: a client abandons a request
// and leaves; the server's late reply must not reach the next client as
// the answer to its own request. A PairServer replaces its socket when its
// client leaves, and the late reply, addressed to the departed client's
// connection, is dropped. A silent connection accepted first must not
// change that. (Before, the server took that connection for its peer,
// never saw the real one leave, and the late reply went to the next
// client.)
func TestPairLateReplyNeverReachesTheNextClient(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	var releaseOnce sync.Once
	slow := func(ctx context.Context, msg []byte) ([]byte, error) {
		if string(msg) == "slow" {
			entered <- struct{}{}
			<-release
		}
		return upper(ctx, msg)
	}
	accepting, accepted := eventsOfKind(EventAccepted)
	replaced := make(replacements, 64)
	srv, err := NewPairServer(bindEndpoint(t, "tcp"), slow, WithZMQContext(zctx), WithLogger(slog.New(replaced)), accepting)
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runInBackground(t, srv.Run)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before Run stops
	ep := srv.Endpoints()[0]

	junk, err := net.Dial("tcp", strings.TrimPrefix(ep, "tcp://")) // silent, and first
	require.NoError(t, err)
	defer junk.Close()
	awaitEvent(t, ctx, accepted, nil, "the silent connection was never accepted")

	cli, err := NewPairClient(ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	assert.Equal(t, "WARM", requestEventually(t, cli, "warm"))
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	for sent := false; !sent; {
		go func() {
			_, err := cli.Request(rctx, []byte("slow"))
			errc <- err
		}()
		select {
		case <-entered:
			sent = true
		case err := <-errc: // the server had just replaced its socket once, for the silent connection
			require.ErrorIs(t, err, ErrPairReset)
		case <-ctx.Done():
			require.FailNow(t, "the slow request never reached the handler")
		}
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.NoError(t, cli.Close())
	// Whether the server knew the client's connection for the one that
	// held the slot depends on how the silent connection's replacement
	// and the client's reconnection interleaved: either way it replaces
	// its socket when the client leaves.
	replaced.await(t, "the peer left", "a connection that may have held PAIR's only slot left")
	releaseOnce.Do(func() { close(release) })

	next, err := NewPairClient(ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, next)
	assert.Equal(t, "NEXT", requestEventually(t, next, "next"))
	assert.Equal(t, "AGAIN", requestEventually(t, next, "again"))
	require.Eventually(t, func() bool { return srv.Stats().Dropped >= 1 }, 5*time.Second, time.Millisecond,
		"the late reply is dropped")
}

// TestPairClientCountsDroppedConnection: a message over WithMaxMessageSize
// makes libzmq drop the connection and not make it again; the PairClient
// replaces its socket, counts the drop in Stats.ProtocolErrors and reports
// ErrConnectionDropped, as the other types do, and carries on. (Before,
// nothing was counted or reported.)
func TestPairClientCountsDroppedConnection(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	srv, err := NewPairServer(bindEndpoint(t, "tcp"), upper, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runInBackground(t, srv.Run)
	var rec errorRecorder
	cli, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx), WithMaxMessageSize(1024), rec.option())
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	assert.Equal(t, "HI", requestEventually(t, cli, "hi"))

	require.NoError(t, srv.Send(ctx, make([]byte, 4096)))
	require.Eventually(t, func() bool { return cli.Stats().ProtocolErrors == 1 }, 5*time.Second, time.Millisecond)
	reported := rec.errors()
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], ErrConnectionDropped)
	var oe *OpError
	require.ErrorAs(t, reported[0], &oe)
	assert.Equal(t, srv.Endpoints()[0], oe.Endpoint)
	assert.Equal(t, "AGAIN", requestEventually(t, cli, "again"))
}

// TestPairClientAfterNonZMTPServer: the PairClient's first "server" does
// not speak ZMTP, and libzmq never retries a failed handshake; the client
// replaces its socket until it gets through, and a Request made meanwhile
// is sent again on the new socket (nobody had it) and answered by the real
// server that binds the address next. (Before, the client stayed
// disconnected for good.)
func TestPairClientAfterNonZMTPServer(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	ep, hangUp := bogusServer(t)
	cli, err := NewPairClient(ep, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	type result struct {
		reply []byte
		err   error
	}
	early := make(chan result, 1)
	go func() {
		reply, err := cli.Request(ctx, []byte("early"))
		early <- result{reply, err}
	}()
	hangUp()

	srv := bindAgain(t, zctx, ep, upper)
	runInBackground(t, srv.Run)
	r := <-early
	require.NoError(t, r.err)
	assert.Equal(t, "EARLY", string(r.reply))
	assert.Zero(t, cli.Stats().ProtocolErrors, "a failed handshake is not a dropped connection")
}

// TestPairServerNonZMTPClients: non-ZMTP clients of every kind, before a
// real client and while one is served, neither block the PairServer nor
// cost its client its connection for good.
func TestPairServerNonZMTPClients(t *testing.T) {
	zctx := newTestContext(t)
	srv, cli := newPair(t, zctx, "tcp", upper)
	addr := strings.TrimPrefix(srv.Endpoints()[0], "tcp://")
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10], greeting[11] = 0xff, 0x7f, 3, 0
	copy(greeting[12:], "BOGUS")
	junk := func(held bool) {
		for i, b := range [][]byte{nil, greeting, []byte("GET / HTTP/1.0\r\n\r\n"), {1, 0, 6, 0, 'h', 'e', 'l', 'l', 'o'}} {
			var c net.Conn
			require.Eventually(t, func() bool { // the server may be binding its socket again
				var err error
				c, err = net.Dial("tcp", addr)
				return err == nil
			}, 5*time.Second, time.Millisecond)
			if b != nil {
				// The server may have dropped the connection already (a
				// reset): the write's outcome is not what is tested.
				_, _ = c.Write(b)
			}
			if held {
				t.Cleanup(func() { _ = c.Close() })
				continue
			}
			if i%2 == 1 {
				require.NoError(t, c.(*net.TCPConn).SetLinger(0)) // a reset
			}
			require.NoError(t, c.Close())
		}
	}
	junk(false)
	assert.Equal(t, "FIRST", requestEventually(t, cli, "first"))
	junk(true)
	junk(false)
	ctx := testCtx(t)
	for i := 0; i < 20; i++ {
		reply, err := cli.Request(ctx, []byte("x"+strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, "X"+strconv.Itoa(i), string(reply))
	}
}
