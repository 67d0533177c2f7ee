package faultsuite

// Section 4: races. Context.Close racing constructors, Close racing blocked
// calls and Run, concurrent Close, 64 goroutines on one object (run under
// -race).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

// TestRaceContextCloseVsConstructors: constructors of every type run while
// the Context closes. Each must succeed (and then be closed by the Context:
// its calls return ErrClosed) or fail with ErrClosed; Context.Close returns
// promptly; nothing leaks.
func TestRaceContextCloseVsConstructors(t *testing.T) {
	leakCheck(t)
	base := fdCount(t)
	rounds := envInt("FAULTSUITE_RACE_ROUNDS", 30)
	for r := 0; r < rounds; r++ {
		zc, err := zmqkit.NewContext()
		require.NoError(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var made []object
		startGate := make(chan struct{})
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-startGate
				for i := 0; i < 6; i++ {
					k := kinds[(g+i)%len(kinds)]
					ep := k.bindSide() + "tcp://127.0.0.1:*"
					if (g+i)%3 == 0 {
						ep = inprocEP("race")
					}
					o, err := k.open(ep, zmqkit.WithZMQContext(zc))
					if err != nil {
						if !errors.Is(err, zmqkit.ErrClosed) {
							t.Errorf("%s constructor racing Context.Close: %v (want ErrClosed)", k.name, err)
						}
						continue
					}
					mu.Lock()
					made = append(made, o)
					mu.Unlock()
				}
			}(g)
		}
		close(startGate)
		if r%2 == 1 {
			time.Sleep(time.Duration(r%5) * time.Millisecond)
		}
		closeWithin(t, fmt.Sprintf("round %d: Context.Close racing constructors", r), closeBound, zc.Close)
		wg.Wait()
		// Objects made after Close began must be closed (by the Context, or
		// refused); a call on each must say ErrClosed.
		for _, o := range made {
			err := callOnce(o)
			if !errors.Is(err, zmqkit.ErrClosed) {
				t.Errorf("round %d: %T made while its Context closed is still usable: %v", r, o, err)
			}
			closeWithin(t, fmt.Sprintf("%T.Close after Context.Close", o), closeBound, o.Close)
		}
		if t.Failed() {
			break
		}
	}
	requireFDsBack(t, base, "after contexts closed racing constructors")
}

// callOnce makes one short call on o, returning its error.
func callOnce(o object) error {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	switch v := o.(type) {
	case *zmqkit.Publisher:
		return v.Publish(ctx, "x")
	case *zmqkit.Subscriber:
		_, err := v.Receive(ctx)
		return err
	case *zmqkit.RRServer:
		return v.Run(ctx)
	case *zmqkit.RRClient:
		_, err := v.Request(ctx, ping)
		return err
	case *zmqkit.PPPusher:
		return v.Push(ctx, ping)
	case *zmqkit.PPPuller:
		_, err := v.Receive(ctx)
		return err
	case *zmqkit.PairServer:
		return v.Send(ctx, ping)
	case *zmqkit.PairClient:
		return v.Send(ctx, ping)
	}
	return fmt.Errorf("unknown %T", o)
}

// blockingCalls are every blocking call of o, each to be run with ctx in
// its own goroutine. None can complete without a peer.
func blockingCalls(o object) map[string]func(ctx context.Context) error {
	noop := func(context.Context, []byte) error { return nil }
	switch v := o.(type) {
	case *zmqkit.Subscriber:
		return map[string]func(context.Context) error{
			"Receive":       func(ctx context.Context) error { _, err := v.Receive(ctx); return err },
			"ReceiveFrames": func(ctx context.Context) error { _, err := v.ReceiveFrames(ctx); return err },
			"Run": func(ctx context.Context) error {
				return v.Run(ctx, func(context.Context, zmqkit.Message) error { return nil })
			},
		}
	case *zmqkit.RRServer:
		return map[string]func(context.Context) error{"Run": v.Run}
	case *zmqkit.RRClient:
		return map[string]func(context.Context) error{
			"Request": func(ctx context.Context) error { _, err := v.Request(ctx, ping); return err },
		}
	case *zmqkit.PPPusher:
		return map[string]func(context.Context) error{
			"Push":       func(ctx context.Context) error { return v.Push(ctx, ping) },
			"PushFrames": func(ctx context.Context) error { return v.PushFrames(ctx, ping, ping) },
		}
	case *zmqkit.PPPuller:
		return map[string]func(context.Context) error{
			"Receive":       func(ctx context.Context) error { _, err := v.Receive(ctx); return err },
			"ReceiveFrames": func(ctx context.Context) error { _, err := v.ReceiveFrames(ctx); return err },
			"Run":           func(ctx context.Context) error { return v.Run(ctx, noop) },
		}
	case *zmqkit.PairServer:
		return map[string]func(context.Context) error{
			"Run":        v.Run,
			"Send":       func(ctx context.Context) error { return v.Send(ctx, ping) },
			"SendFrames": func(ctx context.Context) error { return v.SendFrames(ctx, ping, ping) },
		}
	case *zmqkit.PairClient:
		return map[string]func(context.Context) error{
			"Request":       func(ctx context.Context) error { _, err := v.Request(ctx, ping); return err },
			"Receive":       func(ctx context.Context) error { _, err := v.Receive(ctx); return err },
			"ReceiveFrames": func(ctx context.Context) error { _, err := v.ReceiveFrames(ctx); return err },
			"Run":           func(ctx context.Context) error { return v.Run(ctx, noop) },
		}
	}
	return nil
}

// TestRaceCloseVsBlockedCalls: every blocking call of every type, many of
// each, racing Close (from many goroutines at once) and Context.Close. Each
// call returns ErrClosed; every Close returns nil, promptly.
func TestRaceCloseVsBlockedCalls(t *testing.T) {
	for _, viaCtx := range []bool{false, true} {
		for _, k := range kinds {
			if k.name == "Publisher" {
				continue // Publish never blocks
			}
			t.Run(fmt.Sprintf("%s/contextClose=%v", k.name, viaCtx), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				ep := inprocEP("blocked")
				if !k.binds {
					ep = "tcp://127.0.0.1:1" // nothing there: calls block
				}
				// A pusher or server with no peer, a client with no server.
				opts := []zmqkit.Option{zmqkit.WithZMQContext(zc)}
				if k.name != "Subscriber" && k.name != "PPPuller" {
					opts = append(opts, zmqkit.WithSendHWM(1))
				}
				o, err := k.open(ep, opts...)
				require.NoError(t, err)
				calls := blockingCalls(o)
				type res struct {
					name string
					err  error
				}
				results := make(chan res, 64*len(calls))
				var started sync.WaitGroup
				n := 0
				for name, call := range calls {
					for i := 0; i < 8; i++ {
						n++
						started.Add(1)
						go func() {
							started.Done()
							results <- res{name, call(context.Background())}
						}()
					}
				}
				started.Wait()
				time.Sleep(20 * time.Millisecond) // most are blocked by now; any interleaving is valid
				if viaCtx {
					closeWithin(t, "Context.Close", closeBound, zc.Close)
				} else {
					var wg sync.WaitGroup
					for i := 0; i < 64; i++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							closeWithin(t, "concurrent Close", closeBound, o.Close)
						}()
					}
					wg.Wait()
				}
				timeout := time.After(closeBound + slack)
				for i := 0; i < n; i++ {
					select {
					case r := <-results:
						if !errors.Is(r.err, zmqkit.ErrClosed) {
							t.Errorf("%s.%s racing Close returned %v, want ErrClosed", k.name, r.name, r.err)
						}
						var oe *zmqkit.OpError
						if r.err != nil && !errors.As(r.err, &oe) && r.name != "Run" {
							t.Errorf("%s.%s error is not an *OpError: %T", k.name, r.name, r.err)
						}
					case <-timeout:
						t.Fatalf("%d of %d blocked calls did not return after Close", n-i, n)
					}
				}
				// Calls after Close fail at once with ErrClosed.
				for name, call := range calls {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					s := time.Now()
					err := call(ctx)
					cancel()
					assert.ErrorIs(t, err, zmqkit.ErrClosed, "%s.%s after Close", k.name, name)
					assert.Less(t, time.Since(s), time.Second, "%s.%s after Close was not immediate", k.name, name)
				}
				assert.NoError(t, o.Close(), "second Close")
				assert.ErrorIs(t, o.AddEndpoint(inprocEP("after")), zmqkit.ErrClosed, "AddEndpoint after Close")
			})
		}
	}
}

// requestConcurrently has G goroutines make n requests each on cli, each
// with a ctx of d, and requires every reply to be its own request; what
// names the call in errors.
func requestConcurrently(t *testing.T, cli requester, what string, G, n int, d time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				want := []byte(fmt.Sprintf("%d/%d", g, i))
				ctx, cancel := context.WithTimeout(context.Background(), d)
				rep, err := cli.Request(ctx, want)
				cancel()
				if err != nil || !bytes.Equal(rep, want) {
					t.Errorf("%s %s: %q %v", what, want, rep, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// checkSeenOnce fails for the first message whose counter in seen is not
// exactly 1; note ends the message.
func checkSeenOnce(t *testing.T, seen []atomic.Int32, note string) {
	t.Helper()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Errorf("message %d received %d times%s", i, c, note)
			return
		}
	}
}

// TestRaceConcurrentUse: 64 goroutines on one object at once, for every
// sending and receiving method.
func TestRaceConcurrentUse(t *testing.T) {
	const G = 64
	per := envInt("FAULTSUITE_RACE_PER", 100)
	for _, tr := range []string{"inproc", "tcp"} {
		t.Run("PubSub/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			pub, err := zmqkit.NewPublisher(bindEP(t, tr), zmqkit.WithZMQContext(zc), zmqkit.WithSendHWM(0))
			require.NoError(t, err)
			defer closeWithin(t, "Publisher.Close", closeBound, pub.Close)
			sub, err := zmqkit.NewSubscriber(pub.Endpoints()[0], zmqkit.WithZMQContext(zc), zmqkit.WithRecvHWM(0), zmqkit.WithMsgIDs(7, 1000))
			require.NoError(t, err)
			defer closeWithin(t, "Subscriber.Close", closeBound, sub.Close)
			// Synchronise on msgid 7.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				require.NoError(t, pub.PublishMessage(ctx, zmqkit.Message{ID: 7, Type: "text", Body: []byte("sync")}))
				c, cc := context.WithTimeout(ctx, 10*time.Millisecond)
				_, err := sub.Receive(c)
				cc()
				if err == nil {
					break
				}
				require.NoError(t, ctx.Err())
			}
			// 64 receivers and 64 publishers at once.
			var got atomic.Int64
			seen := make([]atomic.Int32, G*per)
			var rwg, pwg sync.WaitGroup
			rctx, rcancel := context.WithCancel(context.Background())
			for g := 0; g < G; g++ {
				rwg.Add(1)
				go func() {
					defer rwg.Done()
					for {
						m, err := sub.Receive(rctx)
						if err != nil {
							return
						}
						if m.ID != 1000 {
							continue
						}
						var v struct{ G, I int }
						if err := m.JSON(&v); err != nil {
							t.Errorf("message garbled: %v %q", err, m.Body)
							return
						}
						seen[v.G*per+v.I].Add(1)
						got.Add(1)
					}
				}()
			}
			for g := 0; g < G; g++ {
				pwg.Add(1)
				go func(g int) {
					defer pwg.Done()
					for i := 0; i < per; i++ {
						if err := pub.Publish(ctx, struct{ G, I int }{g, i}); err != nil {
							t.Errorf("Publish: %v", err)
							return
						}
					}
				}(g)
			}
			pwg.Wait()
			eventually(t, 20*time.Second, "every message received (HWM 0 on both sides)", func() bool { return got.Load() >= int64(G*per) })
			rcancel()
			rwg.Wait()
			checkSeenOnce(t, seen, "")
		})
		t.Run("RR/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			srv, err := zmqkit.NewRRServer(bindEP(t, tr), echo, zmqkit.WithZMQContext(zc), zmqkit.WithConcurrency(8))
			require.NoError(t, err)
			stopSrv := serveBG(t, "RRServer", srv)
			cli, err := zmqkit.NewRRClient(srv.Endpoints()[0], zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			requestConcurrently(t, cli, "Request", G, per, 10*time.Second)
			closeWithin(t, "RRClient.Close", closeBound, cli.Close)
			stopSrv()
		})
		t.Run("PushPull/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			push, err := zmqkit.NewPPPusher(bindEP(t, tr), zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer closeWithin(t, "PPPusher.Close", closeBound, push.Close)
			pull, err := zmqkit.NewPPPuller(push.Endpoints()[0], zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer closeWithin(t, "PPPuller.Close", closeBound, pull.Close)
			seen := make([]atomic.Int32, G*per)
			var got atomic.Int64
			var wg sync.WaitGroup
			rctx, rcancel := context.WithCancel(context.Background())
			for g := 0; g < G; g++ {
				wg.Add(2)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < per; i++ {
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						err := push.Push(ctx, []byte(fmt.Sprintf("%d", g*per+i)))
						cancel()
						if err != nil {
							t.Errorf("Push: %v", err)
							return
						}
					}
				}(g)
				go func() {
					defer wg.Done()
					for {
						m, err := pull.Receive(rctx)
						if err != nil {
							return
						}
						var n int
						fmt.Sscanf(string(m), "%d", &n)
						seen[n].Add(1)
						got.Add(1)
					}
				}()
			}
			eventually(t, 30*time.Second, "every pushed message received once", func() bool { return got.Load() >= int64(G*per) })
			rcancel()
			wg.Wait()
			checkSeenOnce(t, seen, " (PUSH never drops)")
		})
		t.Run("Pair/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			srv, err := zmqkit.NewPairServer(bindEP(t, tr), echo, zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			stopSrv := serveBG(t, "PairServer", srv)
			cli, err := zmqkit.NewPairClient(srv.Endpoints()[0], zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			// 64 goroutines Request at once: each gets its own reply.
			requestConcurrently(t, cli, "PairClient.Request", G, per/4, 30*time.Second)
			stopSrv()
			closeWithin(t, "PairClient.Close", closeBound, cli.Close)

			// Full duplex: 64 goroutines Send and 64 Receive on each side.
			srv2, err := zmqkit.NewPairServer(bindEP(t, tr), echo, zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer closeWithin(t, "PairServer.Close", closeBound, srv2.Close)
			cli2, err := zmqkit.NewPairClient(srv2.Endpoints()[0], zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer closeWithin(t, "PairClient.Close", closeBound, cli2.Close)
			// Run echoes what the client sends: the client receives both.
			wait2 := runBG(t, "PairServer.Run", func() error { return srv2.Run(context.Background()) })
			defer func() { _ = srv2.Close(); assert.ErrorIs(t, wait2(closeBound), zmqkit.ErrClosed) }()
			var toCli, toSrv atomic.Int64
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rctx, rcancel := context.WithCancel(ctx)
			var wg, rwg sync.WaitGroup
			for g := 0; g < G; g++ {
				rwg.Add(1)
				go func() {
					defer rwg.Done()
					for {
						if _, err := cli2.Receive(rctx); err != nil {
							return
						}
						toCli.Add(1)
					}
				}()
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if err := srv2.Send(ctx, ping); err != nil {
							t.Errorf("PairServer.Send: %v", err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if err := cli2.Send(ctx, ping); err != nil {
							t.Errorf("PairClient.Send: %v", err)
							return
						}
						toSrv.Add(1)
					}
				}()
			}
			wg.Wait()
			// The client gets every server Send and every echo.
			eventually(t, 20*time.Second, "every PairServer.Send and echo received", func() bool { return toCli.Load() >= int64(2*G*per) })
			rcancel()
			rwg.Wait()
		})
	}
}

// TestPairClientRequestHonoursCtx: Requests queue behind one another
// (documented: "served one after another"), but every blocking call must
// still return when its own ctx ends.
func TestPairClientRequestHonoursCtx(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	release := make(chan struct{})
	srv, err := zmqkit.NewPairServer(inprocEP("slow"), func(ctx context.Context, req []byte) ([]byte, error) {
		<-release
		return req, nil
	}, zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	stopSrv := serveBG(t, "PairServer", srv)
	cli, err := zmqkit.NewPairClient(srv.Endpoints()[0], zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := cli.Request(ctx, []byte("slow"))
		first <- err
	}()
	time.Sleep(100 * time.Millisecond) // the first Request is waiting for its reply
	err = endsByCtx(t, "a second PairClient.Request while another waits", 200*time.Millisecond, func(ctx context.Context) error {
		_, err := cli.Request(ctx, []byte("second"))
		return err
	})
	assert.True(t, isCtxErr(err), "second Request: %v", err)
	close(release)
	assert.NoError(t, <-first)
	closeWithin(t, "PairClient.Close", closeBound, cli.Close)
	stopSrv()
}
