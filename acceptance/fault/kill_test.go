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

// peerFaults is each type's TestPeerFault case, by kind name.
var peerFaults = map[string]func(t *testing.T, tr, fault string, opt zmqkit.Option){
	"Publisher":  faultPublisher,
	"Subscriber": faultSubscriber,
	"RRServer":   faultRRServer,
	"RRClient":   faultRRClient,
	"PPPusher":   faultPusher,
	"PPPuller":   faultPuller,
	"PairServer": faultPairServer,
	"PairClient": faultPairClient,
}

func TestPeerFault(t *testing.T) {
	for _, tr := range faultTransports {
		for _, fault := range faults {
			for _, k := range kinds {
				t.Run(fmt.Sprintf("%s/%s/%s", k.name, tr, fault), func(t *testing.T) {
					leakCheck(t)
					zc := newZCtx(t)
					peerFaults[k.name](t, tr, fault, zmqkit.WithZMQContext(zc))
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

// connectToPy starts a Python peer playing role, bound on transport tr, and
// connects an object made by open (with opt) to it.
func connectToPy[T any](t *testing.T, tr, role string, open func(string, ...zmqkit.Option) (T, error), opt zmqkit.Option) (*pyPeer, T) {
	t.Helper()
	ep := pyBindEP(t, tr)
	py := startPy(t, role, ep)
	o, err := open(pyConnectEP(py, ep), opt)
	require.NoError(t, err)
	return py, o
}

// clientOfPy is connectToPy for a client of a Python server; it requires
// "hello" to come back before it returns.
func clientOfPy[C requester](t *testing.T, tr, role string, dial func(string, ...zmqkit.Option) (C, error), opt zmqkit.Option) (*pyPeer, C) {
	t.Helper()
	py, cli := connectToPy(t, tr, role, dial, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rep, err := cli.Request(ctx, []byte("hello"))
	cancel()
	require.NoError(t, err)
	require.Equal(t, "hello", string(rep))
	return py, cli
}

// faultDuringRequest applies fault to py, the server of cli. A kill comes
// while py holds a "hang" request with a ctx of 2 s; check gets how that
// request ended and how long it took, and the test fails if it never ends.
func faultDuringRequest(t *testing.T, py *pyPeer, fault string, cli requester, check func(err error, took time.Duration)) {
	t.Helper()
	if fault != "kill" {
		applyFault(t, py, fault)
		return
	}
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
		check(err, time.Since(start))
	case <-time.After(2*time.Second + slack + 5*time.Second):
		t.Fatal("in-flight Request did not end after the server was killed")
	}
}

// shortRequest makes one Request of cli with a ctx of 300 ms, which it must
// end within (endsByCtx), and returns its error.
func shortRequest(t *testing.T, what string, cli requester) error {
	t.Helper()
	return endsByCtx(t, what, 300*time.Millisecond, func(ctx context.Context) error {
		_, err := cli.Request(ctx, []byte("x"))
		return err
	})
}

// blockedCall is a blocking call with no deadline, named for messages.
type blockedCall struct {
	name string
	call func() error
}

// closeUnblocks starts each call, lets them block, closes their object with
// closeFn (within closeBound) and requires every call to return ErrClosed.
func closeUnblocks(t *testing.T, what string, closeFn func() error, calls ...blockedCall) {
	t.Helper()
	results := make([]chan error, len(calls))
	for i, c := range calls {
		results[i] = make(chan error, 1)
		go func() { results[i] <- c.call() }()
	}
	time.Sleep(50 * time.Millisecond) // let them block (any interleaving is valid)
	closeWithin(t, what, closeBound, closeFn)
	for i, c := range calls {
		select {
		case err := <-results[i]:
			assert.ErrorIs(t, err, zmqkit.ErrClosed, "a blocked %s", c.name)
		case <-time.After(closeBound):
			t.Errorf("a blocked %s did not return after Close", c.name)
		}
	}
}

// runEndsThenCloses checks the Run of the type name (run, with a handler
// that does nothing): with a short ctx it ends by that ctx; started again
// with no deadline, it and the other blocked calls return ErrClosed at
// Close (closeFn).
func runEndsThenCloses(t *testing.T, name string, run func(ctx context.Context) error, closeFn func() error, others ...blockedCall) {
	t.Helper()
	err := endsByCtx(t, name+".Run", 300*time.Millisecond, run)
	assert.True(t, isCtxErr(err), "Run ended with %v, want ctx's error", err)
	// A Run blocked when Close comes returns ErrClosed.
	calls := append([]blockedCall{{"Run", func() error { return run(context.Background()) }}}, others...)
	closeUnblocks(t, name+".Close", closeFn, calls...)
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
	py, sub := connectToPy(t, tr, "pub", zmqkit.NewSubscriber, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	m, err := sub.Receive(ctx)
	cancel()
	require.NoError(t, err)
	require.Equal(t, 1000, m.ID)
	applyFault(t, py, fault)
	drainUntilBlocked(t, "Subscriber.Receive", func(ctx context.Context) error { _, err := sub.Receive(ctx); return err })
	drainUntilBlocked(t, "Subscriber.ReceiveFrames", func(ctx context.Context) error { _, err := sub.ReceiveFrames(ctx); return err })
	runEndsThenCloses(t, "Subscriber", func(ctx context.Context) error {
		return sub.Run(ctx, func(context.Context, zmqkit.Message) error { return nil })
	}, sub.Close, blockedCall{"Receive", func() error { _, err := sub.Receive(context.Background()); return err }})
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
	stopSrv := serveBG(t, "RRServer", srv)
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
	stopSrv()
}

func faultRRClient(t *testing.T, tr, fault string, opt zmqkit.Option) {
	py, cli := clientOfPy(t, tr, "rep", zmqkit.NewRRClient, opt)
	// Killed mid-request: the request in flight ends by its ctx.
	faultDuringRequest(t, py, fault, cli, func(err error, took time.Duration) {
		assert.True(t, isCtxErr(err), "in-flight Request after the server was killed: %v", err)
		assert.Less(t, took, 2*time.Second+slack)
	})
	for i := 0; i < 3; i++ {
		err := shortRequest(t, "RRClient.Request", cli)
		assert.True(t, isCtxErr(err), "Request to a %s server: %v", fault, err)
	}
	closeUnblocks(t, "RRClient.Close", cli.Close,
		blockedCall{"Request", func() error { _, err := cli.Request(context.Background(), []byte("y")); return err }})
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
	closeUnblocks(t, "PPPusher.Close", push.Close,
		blockedCall{"Push", func() error { return push.Push(context.Background(), body) }})
}

func faultPuller(t *testing.T, tr, fault string, opt zmqkit.Option) {
	py, pull := connectToPy(t, tr, "push", zmqkit.NewPPPuller, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err := pull.Receive(ctx)
	cancel()
	require.NoError(t, err)
	applyFault(t, py, fault)
	drainUntilBlocked(t, "PPPuller.Receive", func(ctx context.Context) error { _, err := pull.Receive(ctx); return err })
	drainUntilBlocked(t, "PPPuller.ReceiveFrames", func(ctx context.Context) error { _, err := pull.ReceiveFrames(ctx); return err })
	runEndsThenCloses(t, "PPPuller", func(ctx context.Context) error {
		return pull.Run(ctx, func(context.Context, []byte) error { return nil })
	}, pull.Close)
}

func faultPairServer(t *testing.T, tr, fault string, opt zmqkit.Option) {
	srv, err := zmqkit.NewPairServer(bindEP(t, tr), echo, opt)
	require.NoError(t, err)
	stopSrv := serveBG(t, "PairServer", srv)
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
	stopSrv()
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
	py, cli := clientOfPy(t, tr, "pairsrv", zmqkit.NewPairClient, opt)
	faultDuringRequest(t, py, fault, cli, func(err error, _ time.Duration) {
		assert.True(t, isCtxErr(err) || errors.Is(err, zmqkit.ErrPairReset),
			"in-flight Request after the server was killed: %v", err)
	})
	err := shortRequest(t, "PairClient.Request", cli)
	assert.True(t, isCtxErr(err) || errors.Is(err, zmqkit.ErrPairReset), "Request to a %s server: %v", fault, err)
	drainUntilBlocked(t, "PairClient.Receive", func(ctx context.Context) error { _, err := cli.Receive(ctx); return err })
	drainUntilBlocked(t, "PairClient.ReceiveFrames", func(ctx context.Context) error { _, err := cli.ReceiveFrames(ctx); return err })
	body := bytes.Repeat([]byte("c"), 16<<10)
	drainUntilBlocked(t, "PairClient.Send", func(ctx context.Context) error { return cli.Send(ctx, body) })
	drainUntilBlocked(t, "PairClient.SendFrames", func(ctx context.Context) error { return cli.SendFrames(ctx, body, body) })
	runEndsThenCloses(t, "PairClient", func(ctx context.Context) error {
		return cli.Run(ctx, func(context.Context, []byte) error { return nil })
	}, cli.Close)
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
