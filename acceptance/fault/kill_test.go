package faultsuite

// Section 1: peers killed (SIGKILL) and frozen (SIGSTOP) mid-stream. A
// pyzmq process plays the other side of each of the eight types, over tcp
// and ipc. After the fault every blocking call must still end by its ctx,
// Close must return within closeBound, no goroutine may leak, nothing may
// panic.

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

var faultTransports = []string{"tcp", "ipc"}
var faults = []string{"kill", "stop"}

// applyFault kills or freezes p.
func applyFault(t *testing.T, p *pyPeer, fault string) {
	t.Helper()
	switch fault {
	case "kill":
		p.kill(t)
	case "stop":
		p.stop(t)
		t.Cleanup(p.cont)
	}
}

// endsByCtx calls f with a ctx of d and requires it to return within
// d+slack. It returns f's error.
func endsByCtx(t *testing.T, what string, d time.Duration, f func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := within(t, what, d+slack+5*time.Second, func() error { return f(ctx) })
	if el := time.Since(start); el > d+slack {
		t.Errorf("%s took %v with a ctx of %v (err %v)", what, el, d, err)
	}
	return err
}

// drainUntilBlocked calls f (a receive, or a send into a full or absent
// peer) with short ctxs until one ends by its ctx: the call really blocked
// and was ended by ctx. It fails if f never blocks, or fails otherwise.
func drainUntilBlocked(t *testing.T, what string, f func(ctx context.Context) error, allowed ...error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		err := endsByCtx(t, what, 150*time.Millisecond, f)
		if isCtxErr(err) {
			var oe *zmqkit.OpError
			assert.True(t, errors.As(err, &oe), "%s: ctx error is not an *OpError: %T %v", what, err, err)
			return
		}
		if err == nil {
			continue
		}
		ok := false
		for _, a := range allowed {
			if errors.Is(err, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: unexpected error %v", what, err)
			return
		}
	}
	t.Errorf("%s never blocked within 30s", what)
}

func TestPeerFault(t *testing.T) {
	for _, tr := range faultTransports {
		for _, fault := range faults {
			for _, k := range kinds {
				t.Run(fmt.Sprintf("%s/%s/%s", k.name, tr, fault), func(t *testing.T) {
					leakCheck(t)
					zc := newZCtx(t)
					opt := zmqkit.WithZMQContext(zc)
					switch k.name {
					case "Publisher":
						faultPublisher(t, tr, fault, opt)
					case "Subscriber":
						faultSubscriber(t, tr, fault, opt)
					case "RRServer":
						faultRRServer(t, tr, fault, opt)
					case "RRClient":
						faultRRClient(t, tr, fault, opt)
					case "PPPusher":
						faultPusher(t, tr, fault, opt)
					case "PPPuller":
						faultPuller(t, tr, fault, opt)
					case "PairServer":
						faultPairServer(t, tr, fault, opt)
					case "PairClient":
						faultPairClient(t, tr, fault, opt)
					}
				})
			}
		}
	}
}

// pyBindEP is the endpoint a Python peer binds on transport tr.
func pyBindEP(t *testing.T, tr string) string {
	if tr == "tcp" {
		return "tcp://127.0.0.1:*"
	}
	return ipcEP(t)
}

// pyConnectEP is where to reach a Python peer that bound ep.
func pyConnectEP(p *pyPeer, ep string) string {
	if p.port != 0 {
		return p.tcpEP()
	}
	return ep
}

func faultPublisher(t *testing.T, tr, fault string, opt zmqkit.Option) {
	pub, err := zmqkit.NewPublisher(bindEP(t, tr), opt)
	require.NoError(t, err)
	py := startPy(t, "sub", pub.Endpoints()[0])

	// Publish continuously until the subscriber has seen messages.
	var stopPub atomic.Bool
	var maxDur atomic.Int64
	var pubErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		body := bytes.Repeat([]byte("x"), 4096)
		for !stopPub.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s := time.Now()
			if err := pub.Publish(ctx, body); err != nil {
				pubErr.Store(err)
			}
			cancel()
			if d := int64(time.Since(s)); d > maxDur.Load() {
				maxDur.Store(d)
			}
		}
	}()
	py.waitLine(t, "got", 20*time.Second)
	applyFault(t, py, fault)
	// Go on publishing well past the high-water mark.
	sent := pub.Stats().Sent
	eventually(t, 20*time.Second, "publisher keeps publishing after the fault", func() bool { return pub.Stats().Sent > sent+5000 })
	stopPub.Store(true)
	wg.Wait()
	assert.Nil(t, pubErr.Load(), "Publish failed after a subscriber's %s", fault)
	assert.Less(t, time.Duration(maxDur.Load()), time.Second, "a Publish blocked (PUB must never block on a slow subscriber)")
	closeWithin(t, "Publisher.Close", closeBound, pub.Close)
	err = pub.Publish(context.Background(), "after close")
	assert.ErrorIs(t, err, zmqkit.ErrClosed)
}

func faultSubscriber(t *testing.T, tr, fault string, opt zmqkit.Option) {
	ep := pyBindEP(t, tr)
	py := startPy(t, "pub", ep)
	sub, err := zmqkit.NewSubscriber(pyConnectEP(py, ep), opt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	m, err := sub.Receive(ctx)
	cancel()
	require.NoError(t, err)
	require.Equal(t, 1000, m.ID)
	applyFault(t, py, fault)
	drainUntilBlocked(t, "Subscriber.Receive", func(ctx context.Context) error { _, err := sub.Receive(ctx); return err })
	drainUntilBlocked(t, "Subscriber.ReceiveFrames", func(ctx context.Context) error { _, err := sub.ReceiveFrames(ctx); return err })
	err = endsByCtx(t, "Subscriber.Run", 300*time.Millisecond, func(ctx context.Context) error {
		return sub.Run(ctx, func(context.Context, zmqkit.Message) error { return nil })
	})
	assert.True(t, isCtxErr(err), "Run ended with %v, want ctx's error", err)
	// A Run blocked when Close comes returns ErrClosed.
	wait := runBG(t, "Subscriber.Run", func() error {
		return sub.Run(context.Background(), func(context.Context, zmqkit.Message) error { return nil })
	})
	blocked := make(chan error, 1)
	go func() { _, err := sub.Receive(context.Background()); blocked <- err }()
	time.Sleep(50 * time.Millisecond) // let them block (any interleaving is valid)
	closeWithin(t, "Subscriber.Close", closeBound, sub.Close)
	assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
	select {
	case err := <-blocked:
		assert.ErrorIs(t, err, zmqkit.ErrClosed)
	case <-time.After(closeBound):
		t.Error("a blocked Receive did not return after Close")
	}
}

func faultRRServer(t *testing.T, tr, fault string, opt zmqkit.Option) {
	inHandler := make(chan struct{}, 1)
	release := make(chan struct{})
	var hold atomic.Bool
	hold.Store(true)
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		if bytes.HasPrefix(req, []byte("req ")) && hold.Load() && bytes.Equal(req, []byte("req 5")) {
			inHandler <- struct{}{}
			<-release // the client dies or freezes while its request is handled
		}
		return req, nil
	}
	srv, err := zmqkit.NewRRServer(bindEP(t, tr), h, opt, zmqkit.WithConcurrency(4))
	require.NoError(t, err)
	wait := runBG(t, "RRServer.Run", func() error { return srv.Run(context.Background()) })
	py := startPy(t, "req", srv.Endpoints()[0])
	select {
	case <-inHandler:
	case <-time.After(20 * time.Second):
		t.Fatal("python REQ never reached the handler")
	}
	applyFault(t, py, fault)
	close(release)
	// The server goes on serving others.
	cli, err := zmqkit.NewRRClient(srv.Endpoints()[0], opt)
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, err := cli.Request(ctx, []byte(fmt.Sprintf("go %d", i)))
		cancel()
		require.NoError(t, err, "RRServer stopped answering after a client's %s", fault)
		require.Equal(t, fmt.Sprintf("go %d", i), string(rep))
	}
	closeWithin(t, "RRClient.Close", closeBound, cli.Close)
	closeWithin(t, "RRServer.Close", closeBound, srv.Close)
	assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
}

func faultRRClient(t *testing.T, tr, fault string, opt zmqkit.Option) {
	ep := pyBindEP(t, tr)
	py := startPy(t, "rep", ep)
	cli, err := zmqkit.NewRRClient(pyConnectEP(py, ep), opt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rep, err := cli.Request(ctx, []byte("hello"))
	cancel()
	require.NoError(t, err)
	require.Equal(t, "hello", string(rep))

	if fault == "kill" {
		// Killed mid-request: the request in flight ends by its ctx.
		res := make(chan error, 1)
		start := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := cli.Request(ctx, []byte("hang"))
			res <- err
		}()
		py.waitLine(t, "hanging", 10*time.Second)
		applyFault(t, py, fault)
		select {
		case err := <-res:
			assert.True(t, isCtxErr(err), "in-flight Request after the server was killed: %v", err)
			assert.Less(t, time.Since(start), 2*time.Second+slack)
		case <-time.After(2*time.Second + slack + 5*time.Second):
			t.Fatal("in-flight Request did not end by its ctx after the server was killed")
		}
	} else {
		applyFault(t, py, fault)
	}
	for i := 0; i < 3; i++ {
		err := endsByCtx(t, "RRClient.Request", 300*time.Millisecond, func(ctx context.Context) error {
			_, err := cli.Request(ctx, []byte("x"))
			return err
		})
		assert.True(t, isCtxErr(err), "Request to a %s server: %v", fault, err)
	}
	blocked := make(chan error, 1)
	go func() { _, err := cli.Request(context.Background(), []byte("y")); blocked <- err }()
	time.Sleep(50 * time.Millisecond)
	closeWithin(t, "RRClient.Close", closeBound, cli.Close)
	select {
	case err := <-blocked:
		assert.ErrorIs(t, err, zmqkit.ErrClosed)
	case <-time.After(closeBound):
		t.Error("a blocked Request did not return after Close")
	}
}

func faultPusher(t *testing.T, tr, fault string, opt zmqkit.Option) {
	push, err := zmqkit.NewPPPusher(bindEP(t, tr), opt)
	require.NoError(t, err)
	py := startPy(t, "pull", push.Endpoints()[0])
	body := bytes.Repeat([]byte("t"), 16<<10)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := push.Push(ctx, body)
		cancel()
		require.NoError(t, err)
		if push.Stats().Sent >= 200 {
			break
		}
	}
	py.waitLine(t, "got", 20*time.Second)
	applyFault(t, py, fault)
	drainUntilBlocked(t, "PPPusher.Push", func(ctx context.Context) error { return push.Push(ctx, body) })
	drainUntilBlocked(t, "PPPusher.PushFrames", func(ctx context.Context) error { return push.PushFrames(ctx, body, body) })
	blocked := make(chan error, 1)
	go func() { blocked <- push.Push(context.Background(), body) }()
	time.Sleep(50 * time.Millisecond)
	closeWithin(t, "PPPusher.Close", closeBound, push.Close)
	select {
	case err := <-blocked:
		assert.ErrorIs(t, err, zmqkit.ErrClosed)
	case <-time.After(closeBound):
		t.Error("a blocked Push did not return after Close")
	}
}

func faultPuller(t *testing.T, tr, fault string, opt zmqkit.Option) {
	ep := pyBindEP(t, tr)
	py := startPy(t, "push", ep)
	pull, err := zmqkit.NewPPPuller(pyConnectEP(py, ep), opt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err = pull.Receive(ctx)
	cancel()
	require.NoError(t, err)
	applyFault(t, py, fault)
	drainUntilBlocked(t, "PPPuller.Receive", func(ctx context.Context) error { _, err := pull.Receive(ctx); return err })
	drainUntilBlocked(t, "PPPuller.ReceiveFrames", func(ctx context.Context) error { _, err := pull.ReceiveFrames(ctx); return err })
	err = endsByCtx(t, "PPPuller.Run", 300*time.Millisecond, func(ctx context.Context) error {
		return pull.Run(ctx, func(context.Context, []byte) error { return nil })
	})
	assert.True(t, isCtxErr(err), "Run ended with %v, want ctx's error", err)
	wait := runBG(t, "PPPuller.Run", func() error {
		return pull.Run(context.Background(), func(context.Context, []byte) error { return nil })
	})
	time.Sleep(50 * time.Millisecond)
	closeWithin(t, "PPPuller.Close", closeBound, pull.Close)
	assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
}

func faultPairServer(t *testing.T, tr, fault string, opt zmqkit.Option) {
	srv, err := zmqkit.NewPairServer(bindEP(t, tr), echo, opt)
	require.NoError(t, err)
	wait := runBG(t, "PairServer.Run", func() error { return srv.Run(context.Background()) })
	py := startPy(t, "paircli", srv.Endpoints()[0])
	py.waitLine(t, "rep", 20*time.Second)
	applyFault(t, py, fault)
	body := bytes.Repeat([]byte("s"), 16<<10)
	drainUntilBlocked(t, "PairServer.Send", func(ctx context.Context) error { return srv.Send(ctx, body) })
	drainUntilBlocked(t, "PairServer.SendFrames", func(ctx context.Context) error { return srv.SendFrames(ctx, body, body) })
	if fault == "kill" {
		// Documented: the server survives its client's restart (tcp, ipc).
		cli, err := zmqkit.NewPairClient(srv.Endpoints()[0], opt)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = exchangeSkippingQueued(ctx, cli)
		cancel()
		assert.NoError(t, err, "a new client after the old one was killed")
		closeWithin(t, "PairClient.Close", closeBound, cli.Close)
	}
	closeWithin(t, "PairServer.Close", closeBound, srv.Close)
	assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
}

// exchangeSkippingQueued requests until its own reply comes: the server may
// still hold messages queued for the client that died (documented as lost
// or dropped), which a PAIR could hand to the new client first.
func exchangeSkippingQueued(ctx context.Context, cli *zmqkit.PairClient) error {
	var last error
	for i := 0; ctx.Err() == nil; i++ {
		want := fmt.Sprintf("probe %d", i)
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		rep, err := cli.Request(c, []byte(want))
		cancel()
		if err == nil && string(rep) == want {
			return nil
		}
		if err == nil {
			last = fmt.Errorf("reply %.40q to %q", rep, want)
			continue
		}
		last = err
		if !isCtxErr(err) && !errors.Is(err, zmqkit.ErrPairReset) {
			return err
		}
	}
	return fmt.Errorf("%w; last: %v", ctx.Err(), last)
}

func faultPairClient(t *testing.T, tr, fault string, opt zmqkit.Option) {
	ep := pyBindEP(t, tr)
	py := startPy(t, "pairsrv", ep)
	cli, err := zmqkit.NewPairClient(pyConnectEP(py, ep), opt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rep, err := cli.Request(ctx, []byte("hello"))
	cancel()
	require.NoError(t, err)
	require.Equal(t, "hello", string(rep))
	if fault == "kill" {
		res := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := cli.Request(ctx, []byte("hang"))
			res <- err
		}()
		py.waitLine(t, "hanging", 10*time.Second)
		applyFault(t, py, fault)
		select {
		case err := <-res:
			assert.True(t, isCtxErr(err) || errors.Is(err, zmqkit.ErrPairReset),
				"in-flight Request after the server was killed: %v", err)
		case <-time.After(2*time.Second + slack + 5*time.Second):
			t.Fatal("in-flight Request did not end after the server was killed")
		}
	} else {
		applyFault(t, py, fault)
	}
	err = endsByCtx(t, "PairClient.Request", 300*time.Millisecond, func(ctx context.Context) error {
		_, err := cli.Request(ctx, []byte("x"))
		return err
	})
	assert.True(t, isCtxErr(err) || errors.Is(err, zmqkit.ErrPairReset), "Request to a %s server: %v", fault, err)
	drainUntilBlocked(t, "PairClient.Receive", func(ctx context.Context) error { _, err := cli.Receive(ctx); return err })
	drainUntilBlocked(t, "PairClient.ReceiveFrames", func(ctx context.Context) error { _, err := cli.ReceiveFrames(ctx); return err })
	body := bytes.Repeat([]byte("c"), 16<<10)
	drainUntilBlocked(t, "PairClient.Send", func(ctx context.Context) error { return cli.Send(ctx, body) })
	drainUntilBlocked(t, "PairClient.SendFrames", func(ctx context.Context) error { return cli.SendFrames(ctx, body, body) })
	err = endsByCtx(t, "PairClient.Run", 300*time.Millisecond, func(ctx context.Context) error {
		return cli.Run(ctx, func(context.Context, []byte) error { return nil })
	})
	assert.True(t, isCtxErr(err), "Run ended with %v, want ctx's error", err)
	wait := runBG(t, "PairClient.Run", func() error {
		return cli.Run(context.Background(), func(context.Context, []byte) error { return nil })
	})
	time.Sleep(50 * time.Millisecond)
	closeWithin(t, "PairClient.Close", closeBound, cli.Close)
	assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
}

// TestRRClientRetriesServerKilled: with WithRetries, a server killed while
// it holds a request: the request fails with ErrNoReply (server stays
// down) or succeeds once the server restarts on the same endpoint.
func TestRRClientRetriesServerKilled(t *testing.T) {
	for _, tr := range faultTransports {
		for _, restart := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/restart=%v", tr, restart), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				ep := pyBindEP(t, tr)
				py := startPy(t, "rep", ep)
				target := pyConnectEP(py, ep)
				const tries, perTry = 12, 400 * time.Millisecond
				cli, err := zmqkit.NewRRClient(target, zmqkit.WithZMQContext(zc), zmqkit.WithRetries(tries, perTry),
					zmqkit.WithReconnectInterval(20*time.Millisecond, 0))
				require.NoError(t, err)
				defer closeWithin(t, "RRClient.Close", closeBound, cli.Close)

				// "hang..." is never answered by the first server; a
				// restarted server echoes everything but "hang".
				type result struct {
					rep []byte
					err error
					d   time.Duration
				}
				res := make(chan result, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					s := time.Now()
					rep, err := cli.Request(ctx, []byte("hangable"))
					res <- result{rep, err, time.Since(s)}
				}()
				py.waitLine(t, "hanging", 10*time.Second)
				py.kill(t)
				if restart {
					// Restarted on the very same endpoint; this one answers "hangable"? No:
					// it hangs on "hang*" too, so use a server that echoes everything.
					startPy(t, "rep-all", target)
				}
				select {
				case r := <-res:
					if restart {
						require.NoError(t, r.err, "request should succeed after the server restarted")
						assert.Equal(t, "hangable", string(r.rep))
					} else {
						assert.ErrorIs(t, r.err, zmqkit.ErrNoReply)
						assert.Less(t, r.d, time.Duration(tries)*perTry+slack, "ErrNoReply came late")
						var oe *zmqkit.OpError
						assert.True(t, errors.As(r.err, &oe), "not an *OpError: %T", r.err)
					}
				case <-time.After(40 * time.Second):
					t.Fatal("Request with retries never returned")
				}
				// The client stays usable.
				if restart {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					rep, err := cli.Request(ctx, []byte("after"))
					cancel()
					assert.NoError(t, err)
					assert.Equal(t, "after", string(rep))
				}
			})
		}
	}
}

// TestRRClientRetriesServerFrozen: a frozen server gives ErrNoReply; once it
// thaws, its late replies are dropped (counted) and never reach a later
// request.
func TestRRClientRetriesServerFrozen(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	py := startPy(t, "rep-all", "tcp://127.0.0.1:*")
	cli, err := zmqkit.NewRRClient(py.tcpEP(), zmqkit.WithZMQContext(zc), zmqkit.WithRetries(3, 200*time.Millisecond))
	require.NoError(t, err)
	defer closeWithin(t, "RRClient.Close", closeBound, cli.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = cli.Request(ctx, []byte("warm"))
	cancel()
	require.NoError(t, err)
	py.stop(t)
	t.Cleanup(py.cont)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = cli.Request(ctx, []byte("frozen"))
	cancel()
	assert.ErrorIs(t, err, zmqkit.ErrNoReply)
	sent := cli.Stats().Sent
	py.cont()
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("later %d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rep, err := cli.Request(ctx, []byte(want))
		cancel()
		require.NoError(t, err)
		require.Equal(t, want, string(rep), "a late reply reached another request")
	}
	eventually(t, 5*time.Second, "the thawed server's late replies are counted as Dropped", func() bool {
		return cli.Stats().Dropped >= 1
	})
	t.Logf("sent before thaw %d, stats %+v", sent, cli.Stats())
}
