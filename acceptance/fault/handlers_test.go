package faultsuite

// Section 6: handlers that panic, return errors, block ignoring ctx, Close
// their own object, call Run recursively. Promised: a failing handler is
// recovered, counted, reported, answered with an error reply by servers and
// never stops Run; Close is prompt; Run returns only after its handler
// calls have returned; Close's replies are dropped (Stats.Dropped).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

// handlerRig is one handler-taking type wired to a feeding peer on inproc.
type handlerRig struct {
	name string
	run  func(ctx context.Context) error // Run
	feed func(ctx context.Context, i int) (reply []byte, err error)
	obj  object
	// serverReplies: feed returns the server's reply (servers) or nothing.
	server bool
}

// newRig builds type name with handler h (a Request-style handler is
// adapted for the message types), fed by its peer.
func newRig(t *testing.T, zc *zmqkit.Context, name string, h func(ctx context.Context, msg []byte) ([]byte, error), sink *errSink, extra ...zmqkit.Option) *handlerRig {
	t.Helper()
	ep := inprocEP("h")
	opts := append([]zmqkit.Option{zmqkit.WithZMQContext(zc), sink.opt()}, extra...)
	popts := []zmqkit.Option{zmqkit.WithZMQContext(zc)}
	r := &handlerRig{name: name}
	switch name {
	case "RRServer":
		rigServer(t, r, ep, h, opts, popts, zmqkit.NewRRServer, zmqkit.NewRRClient)
	case "PairServer":
		rigServer(t, r, ep, h, opts, popts, zmqkit.NewPairServer, zmqkit.NewPairClient)
	case "Subscriber":
		p, err := zmqkit.NewPublisher(ep, popts...)
		require.NoError(t, err)
		s, err := zmqkit.NewSubscriber(ep, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close(); _ = p.Close() })
		// Synchronise before Run takes the messages.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, exchange(ctx, p, s))
		cancel()
		r.obj = s
		r.run = func(ctx context.Context) error {
			return s.Run(ctx, func(ctx context.Context, m zmqkit.Message) error { _, err := h(ctx, m.Body); return err })
		}
		r.feed = func(ctx context.Context, i int) ([]byte, error) { return nil, p.Publish(ctx, fmt.Sprint(i)) }
	case "PPPuller":
		p, err := zmqkit.NewPPPusher(ep, popts...)
		require.NoError(t, err)
		s, err := zmqkit.NewPPPuller(ep, opts...)
		require.NoError(t, err)
		rigMessages(t, r, s, p, h, p.Push)
	case "PairClient":
		p, err := zmqkit.NewPairServer(ep, echo, popts...)
		require.NoError(t, err)
		cli, err := zmqkit.NewPairClient(ep, opts...)
		require.NoError(t, err)
		rigMessages(t, r, cli, p, h, p.Send)
	}
	return r
}

// rigServer makes r a server (newSrv with h and opts) on ep, fed by Request
// from a client (newCli with popts).
func rigServer[S interface {
	object
	server
}, C requester](t *testing.T, r *handlerRig, ep string, h zmqkit.RequestHandler, opts, popts []zmqkit.Option,
	newSrv func(string, zmqkit.RequestHandler, ...zmqkit.Option) (S, error), newCli func(string, ...zmqkit.Option) (C, error)) {
	t.Helper()
	s, err := newSrv(ep, h, opts...)
	require.NoError(t, err)
	c, err := newCli(ep, popts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	r.obj, r.run, r.server = s, s.Run, true
	r.feed = func(ctx context.Context, i int) ([]byte, error) { return c.Request(ctx, []byte(fmt.Sprint(i))) }
}

// rigMessages makes r obj, a type whose Run takes a Handler (h adapted),
// fed by send on its peer.
func rigMessages[O interface {
	object
	Run(context.Context, zmqkit.Handler) error
}](t *testing.T, r *handlerRig, obj O, peer object, h zmqkit.RequestHandler, send func(context.Context, []byte) error) {
	t.Cleanup(func() { _ = obj.Close(); _ = peer.Close() })
	r.obj = obj
	r.run = func(ctx context.Context) error {
		return obj.Run(ctx, func(ctx context.Context, m []byte) error { _, err := h(ctx, m); return err })
	}
	r.feed = func(ctx context.Context, i int) ([]byte, error) { return nil, send(ctx, []byte(fmt.Sprint(i))) }
}

// feedWithin feeds message i with a ctx of d.
func (r *handlerRig) feedWithin(d time.Duration, i int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.feed(ctx, i)
}

// feedBG feeds message i in the background with a ctx of d, ignoring the
// outcome.
func (r *handlerRig) feedBG(d time.Duration, i int) {
	go func() { _, _ = r.feedWithin(d, i) }()
}

var handlerTypes = []string{"RRServer", "PairServer", "Subscriber", "PPPuller", "PairClient"}

// TestHandlerPanicsAndErrors: every third message panics, every third
// returns an error; Run goes on, counts, reports; servers answer with an
// error reply that clients return as *RemoteError.
func TestHandlerPanicsAndErrors(t *testing.T) {
	for _, name := range handlerTypes {
		for _, conc := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", name, conc), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var sink errSink
				var handled atomic.Int64
				h := func(ctx context.Context, msg []byte) ([]byte, error) {
					handled.Add(1)
					var i int
					fmt.Sscan(string(msg), &i)
					switch i % 3 {
					case 0:
						panic(fmt.Sprintf("boom %d", i))
					case 1:
						return nil, fmt.Errorf("bad %d", i)
					}
					return msg, nil
				}
				r := newRig(t, zc, name, h, &sink, zmqkit.WithConcurrency(conc))
				stopRun := runUntilCancel(t, name+".Run", r.run)
				const n = 30
				for i := 0; i < n; i++ {
					rep, err := r.feedWithin(10*time.Second, i)
					if !r.server {
						require.NoError(t, err)
						continue
					}
					var re *zmqkit.RemoteError
					switch i % 3 {
					case 0:
						if assert.True(t, errors.As(err, &re), "request %d to a panicking handler: %v", i, err) {
							assert.Equal(t, fmt.Sprintf("panic: boom %d", i), re.Message)
						}
					case 1:
						if assert.True(t, errors.As(err, &re), "request %d to a failing handler: %v", i, err) {
							assert.Equal(t, fmt.Sprintf("bad %d", i), re.Message)
						}
					default:
						assert.NoError(t, err)
						assert.Equal(t, fmt.Sprint(i), string(rep))
					}
				}
				eventually(t, 10*time.Second, "every message handled", func() bool { return handled.Load() == n })
				st := r.obj.Stats()
				assert.Equal(t, uint64(n/3), st.HandlerPanics, "HandlerPanics")
				assert.Equal(t, uint64(2*n/3), st.HandlerErrors, "HandlerErrors (panics included)")
				var he *zmqkit.HandlerError
				panics, errs := 0, 0
				for _, e := range sink.all() {
					if errors.As(e, &he) {
						if he.Panic != nil {
							panics++
							assert.NotEmpty(t, he.Stack)
						} else {
							errs++
						}
					}
				}
				assert.Equal(t, n/3, panics, "panics reported as *HandlerError with Panic: %v", sink.all())
				assert.Equal(t, n/3, errs, "errors reported as *HandlerError")
				stopRun()
			})
		}
	}
}

// TestHandlerBlocksIgnoringCtx: a handler that ignores its ctx. Promised:
// Close returns promptly (it does not wait for handlers); Run returns only
// after the handler has returned, then with ErrClosed; a server's reply
// after Close is dropped and counted, never sent.
func TestHandlerBlocksIgnoringCtx(t *testing.T) {
	for _, name := range handlerTypes {
		for _, stop := range []string{"Close", "cancel"} {
			t.Run(name+"/"+stop, func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var sink errSink
				entered := make(chan struct{}, 1)
				release := make(chan struct{})
				h := func(ctx context.Context, msg []byte) ([]byte, error) {
					select {
					case entered <- struct{}{}:
					default:
					}
					<-release // ignores ctx
					return msg, nil
				}
				r := newRig(t, zc, name, h, &sink)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				wait := runBG(t, name+".Run", func() error { return r.run(ctx) })
				feedRes := make(chan error, 1)
				var rep []byte
				go func() {
					c, cc := context.WithTimeout(context.Background(), 20*time.Second)
					defer cc()
					var err error
					rep, err = r.feed(c, 7)
					feedRes <- err
				}()
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatal("handler never called")
				}
				runDone := make(chan error, 1)
				go func() { runDone <- wait(30 * time.Second) }()
				if stop == "Close" {
					closeWithin(t, name+".Close with a handler ignoring ctx", closeBound, r.obj.Close)
				} else {
					cancel()
				}
				select {
				case err := <-runDone:
					t.Errorf("Run returned (%v) while its handler was still running", err)
				case <-time.After(300 * time.Millisecond):
				}
				before := r.obj.Stats()
				close(release)
				select {
				case err := <-runDone:
					if stop == "Close" {
						assert.ErrorIs(t, err, zmqkit.ErrClosed)
					} else {
						assert.ErrorIs(t, err, context.Canceled)
					}
				case <-time.After(closeBound + slack):
					t.Fatal("Run did not return after its handler did")
				}
				if r.server {
					if stop == "Close" {
						assert.Equal(t, before.Sent, r.obj.Stats().Sent, "a reply was sent after Close")
						assert.Equal(t, before.Dropped+1, r.obj.Stats().Dropped, "the reply after Close is counted as Dropped")
					} else {
						// Graceful stop: the running handler's reply is still sent.
						select {
						case err := <-feedRes:
							assert.NoError(t, err, "graceful stop: the reply of the running handler is still sent")
							assert.Equal(t, "7", string(rep))
						case <-time.After(10 * time.Second):
							t.Error("graceful stop: the running handler's reply never came")
						}
					}
				}
				closeWithin(t, name+".Close", closeBound, r.obj.Close)
			})
		}
	}
}

// TestHandlerClosesOwnObject: a handler calls Close on the object whose Run
// called it: Close must return (no deadlock), Run must return ErrClosed.
func TestHandlerClosesOwnObject(t *testing.T) {
	for _, name := range handlerTypes {
		for _, conc := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", name, conc), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var sink errSink
				var r *handlerRig
				closed := make(chan error, 3)
				h := func(ctx context.Context, msg []byte) ([]byte, error) {
					done := make(chan error, 1)
					go func() { done <- r.obj.Close() }()
					select {
					case err := <-done:
						closed <- err
					case <-time.After(closeBound + slack):
						closed <- errors.New("Close from inside the handler deadlocked")
					}
					return msg, nil
				}
				r = newRig(t, zc, name, h, &sink, zmqkit.WithConcurrency(conc))
				wait := runBG(t, name+".Run", func() error { return r.run(context.Background()) })
				r.feedBG(3*time.Second, 1)
				select {
				case err := <-closed:
					assert.NoError(t, err)
				case <-time.After(15 * time.Second):
					t.Fatal("handler never ran")
				}
				assert.ErrorIs(t, wait(closeBound+slack), zmqkit.ErrClosed)
			})
		}
	}
	// Close called synchronously in the handler, not in a goroutine.
	for _, name := range handlerTypes {
		t.Run(name+"/synchronous", func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			var r *handlerRig
			closed := make(chan error, 1)
			h := func(ctx context.Context, msg []byte) ([]byte, error) {
				select {
				case closed <- r.obj.Close():
				default:
				}
				return msg, nil
			}
			r = newRig(t, zc, name, h, &sink)
			wait := runBG(t, name+".Run", func() error { return r.run(context.Background()) })
			r.feedBG(3*time.Second, 1)
			select {
			case err := <-closed:
				assert.NoError(t, err)
			case <-time.After(closeBound + slack + 5*time.Second):
				t.Fatal("Close inside the handler never returned (deadlock)")
			}
			assert.ErrorIs(t, wait(closeBound+slack), zmqkit.ErrClosed)
		})
	}
}

// TestHandlerRunsRunRecursively: a handler calls Run on its own object
// with a short ctx. No deadlock: the inner Run returns (ctx's error, or
// another clear error), the outer Run goes on serving.
func TestHandlerRunsRunRecursively(t *testing.T) {
	for _, name := range handlerTypes {
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			var r *handlerRig
			var once atomic.Bool
			inner := make(chan error, 1)
			h := func(ctx context.Context, msg []byte) ([]byte, error) {
				if once.CompareAndSwap(false, true) { // only the first call recurses
					c, cc := context.WithTimeout(ctx, 300*time.Millisecond)
					err := within(t, "recursive Run", 300*time.Millisecond+slack+5*time.Second, func() error { return r.run(c) })
					cc()
					inner <- err
				}
				return msg, nil
			}
			r = newRig(t, zc, name, h, &sink)
			stopRun := runUntilCancel(t, name+".Run", r.run)
			r.feedBG(5*time.Second, 1)
			select {
			case err := <-inner:
				assert.Error(t, err)
				t.Logf("recursive Run returned %v", err)
				assert.False(t, errors.Is(err, zmqkit.ErrClosed), "recursive Run: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("recursive Run never returned")
			}
			// The outer Run still serves.
			for i := 2; i < 5; i++ {
				rep, err := r.feedWithin(10*time.Second, i)
				assert.NoError(t, err, "after the recursive Run")
				if r.server && err == nil {
					assert.Equal(t, fmt.Sprint(i), string(rep))
				}
			}
			stopRun()
			closeWithin(t, "Close", closeBound, r.obj.Close)
		})
	}
}

// TestRunEdges: Run after Close, with a ctx already ended, twice at once.
func TestRunEdges(t *testing.T) {
	for _, name := range handlerTypes {
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			var handled atomic.Int64
			r := newRig(t, zc, name, func(ctx context.Context, m []byte) ([]byte, error) { handled.Add(1); return m, nil }, &sink)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := within(t, "Run with an ended ctx", closeBound, func() error { return r.run(ctx) })
			assert.ErrorIs(t, err, context.Canceled)
			// Two Runs at once share the messages; both end at Close.
			w1 := runBG(t, "Run 1", func() error { return r.run(context.Background()) })
			w2 := runBG(t, "Run 2", func() error { return r.run(context.Background()) })
			for i := 0; i < 20; i++ {
				_, err := r.feedWithin(10*time.Second, i)
				require.NoError(t, err)
			}
			eventually(t, 10*time.Second, "every message handled by one of two Runs", func() bool { return handled.Load() == 20 })
			closeWithin(t, "Close", closeBound, r.obj.Close)
			assert.ErrorIs(t, w1(closeBound), zmqkit.ErrClosed)
			assert.ErrorIs(t, w2(closeBound), zmqkit.ErrClosed)
			err = within(t, "Run after Close", closeBound, func() error { return r.run(context.Background()) })
			assert.ErrorIs(t, err, zmqkit.ErrClosed)
			assert.False(t, strings.Contains(fmt.Sprint(err), "zmqkit: zmqkit:"), "%v", err)
		})
	}
}
