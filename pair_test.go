package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
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
