package zmqkit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runProxy runs p until the test ends and checks why Run returned.
func runProxy(t *testing.T, p *Proxy) {
	t.Helper()
	stop := runInBackground(t, p.Run)
	t.Cleanup(func() {
		err := stop()
		if !assert.ErrorIs(t, err, context.Canceled) {
			assert.ErrorIs(t, err, ErrClosed)
		}
	})
}

// Four publishers → a forwarder → four subscribers, each with its own
// exact msgid: every message reaches every subscriber that wants it, and
// no other.
func TestForwarder(t *testing.T) {
	for _, tr := range []string{"tcp", "ipc"} {
		t.Run(tr, func(t *testing.T) {
			const n, each = 4, 200
			zctx := newTestContext(t)
			ctx := testCtx(t)
			fwd, err := NewForwarder(bindEndpoint(t, tr), bindEndpoint(t, tr), WithZMQContext(zctx), WithSendHWM(0), WithRecvHWM(0))
			require.NoError(t, err)
			closeOnCleanup(t, fwd)
			runProxy(t, fwd)
			front, back := fwd.Front()[0], fwd.Back()[0]

			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i], err = NewSubscriber(back, WithZMQContext(zctx), WithMsgIDs(i, 100), WithRecvHWM(0))
				require.NoError(t, err)
				closeOnCleanup(t, subs[i])
			}
			pubs := make([]*Publisher, n)
			for i := range pubs {
				pubs[i], err = NewPublisher(">"+front, WithZMQContext(zctx), WithSendHWM(0))
				require.NoError(t, err)
				closeOnCleanup(t, pubs[i])
			}
			// Every subscriber hears msgid 100 from every publisher once the
			// path is up (the forwarder passes subscriptions upstream).
			for _, pub := range pubs {
				for _, sub := range subs {
					untilReceived(t, func() error {
						return pub.PublishMessage(ctx, Message{ID: 100, Type: TypeText, Body: []byte("sync")})
					}, sub.Receive)
				}
			}
			for _, sub := range subs {
				require.NoError(t, sub.Unsubscribe(100))
			}
			// Let the unsubscriptions pass, then drain what syncing left.
			drain := func(sub *Subscriber) {
				for {
					dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
					_, err := sub.Receive(dctx)
					cancel()
					if err != nil {
						return
					}
				}
			}
			for _, sub := range subs {
				drain(sub)
			}
			for p, pub := range pubs {
				for i := 0; i < each; i++ {
					for id := 0; id < n; id++ {
						require.NoError(t, pub.PublishMessage(ctx, Message{ID: id, Type: TypeText, Body: []byte(fmt.Sprintf("%d/%d", p, i))}))
					}
				}
			}
			for id, sub := range subs {
				seen := map[string]bool{}
				for len(seen) < n*each {
					m, err := sub.Receive(ctx)
					require.NoError(t, err, "subscriber %d after %d messages", id, len(seen))
					if m.ID == 100 {
						continue
					}
					require.Equal(t, id, m.ID, "subscriber %d got msgid %d", id, m.ID)
					require.False(t, seen[m.Text()], "duplicate %s", m.Text())
					seen[m.Text()] = true
				}
			}
			st := fwd.Stats()
			assert.Equal(t, st.FrontToBack.Received, st.FrontToBack.Sent)
			assert.GreaterOrEqual(t, st.FrontToBack.Sent, uint64(n*n*each))
			assert.NotZero(t, st.BackToFront.Sent, "subscriptions went upstream")
		})
	}
}

// 64 concurrent callers on RRClients → a queue → 3 RRServers connected as
// workers: every reply is its own request's, and the load is spread.
func TestQueue(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	q, err := NewQueue(bindEndpoint(t, "tcp"), bindEndpoint(t, "tcp"), WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, q)
	runProxy(t, q)
	var served [3]atomic.Int64
	for w := range served {
		srv, err := NewRRServer(">"+q.Back()[0], func(_ context.Context, req []byte) ([]byte, error) {
			served[w].Add(1)
			return append([]byte(strconv.Itoa(w)+":"), req...), nil
		}, WithZMQContext(zctx), WithConcurrency(4))
		require.NoError(t, err)
		closeOnCleanup(t, srv)
		runServer(t, srv)
	}
	clients := make([]*RRClient, 4)
	for i := range clients {
		clients[i] = newClient(t, zctx, q.Front()[0])
	}
	const callers, each = 64, 20
	var wg sync.WaitGroup
	errc := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clients[g%len(clients)]
			for i := 0; i < each; i++ {
				req := fmt.Sprintf("%d-%d", g, i)
				reply, err := cli.Request(ctx, []byte(req))
				if err != nil {
					errc <- err
					return
				}
				if len(reply) < 2 || string(reply[2:]) != req {
					errc <- fmt.Errorf("request %s got %q", req, reply)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	total := int64(0)
	for w := range served {
		n := served[w].Load()
		assert.Greater(t, n, int64(callers*each/10), "worker %d served %d: the load is not spread", w, n)
		total += n
	}
	assert.EqualValues(t, callers*each, total)
}

// Pushers → a streamer → pullers: none lost, none twice; the capture sees
// every message.
func TestStreamer(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	var captured atomic.Int64
	s, err := NewStreamer(bindEndpoint(t, "ipc"), bindEndpoint(t, "ipc"), WithZMQContext(zctx),
		WithCapture(func(toBack bool, frames [][]byte) {
			if toBack && len(frames) == 1 {
				captured.Add(1)
			}
		}))
	require.NoError(t, err)
	closeOnCleanup(t, s)
	runProxy(t, s)
	const pushers, pullers, each = 3, 3, 1000
	got := make(chan string, pushers*each)
	for i := 0; i < pullers; i++ {
		pull, err := NewPPPuller(s.Back()[0], WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, pull)
		runInBackground(t, func(ctx context.Context) error {
			return pull.Run(ctx, func(_ context.Context, msg []byte) error { got <- string(msg); return nil })
		})
	}
	for p := 0; p < pushers; p++ {
		push, err := NewPPPusher(">"+s.Front()[0], WithZMQContext(zctx))
		require.NoError(t, err)
		closeOnCleanup(t, push)
		go func() {
			for i := 0; i < each; i++ {
				if err := push.Push(ctx, []byte(fmt.Sprintf("%d-%d", p, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[string]bool{}
	for len(seen) < pushers*each {
		select {
		case m := <-got:
			require.False(t, seen[m], "duplicate %s", m)
			seen[m] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d messages arrived", len(seen), pushers*each)
		}
	}
	assert.EqualValues(t, pushers*each, captured.Load())
	assert.EqualValues(t, pushers*each, s.Stats().FrontToBack.Sent)
	assert.Zero(t, s.Stats().BackToFront.Received)
}

// Every proxy stops by ctx and by Close, leaving nothing behind, and runs
// once at a time.
func TestProxiesStop(t *testing.T) {
	for _, mk := range []func(string, string, ...Option) (*Proxy, error){NewForwarder, NewQueue, NewStreamer} {
		zctx := newTestContext(t)
		p, err := mk(bindEndpoint(t, "tcp"), bindEndpoint(t, "inproc"), WithZMQContext(zctx))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- p.Run(ctx) }()
		awaitBlocked(t, p.conn, 1)
		require.ErrorIs(t, p.Run(ctx), ErrInvalidArgument, "a second Run")
		cancel()
		requireAllReturn(t, errc, 1, context.Canceled)
		go func() { errc <- p.Run(context.Background()) }()
		awaitBlocked(t, p.conn, 1)
		require.NoError(t, p.Close())
		requireAllReturn(t, errc, 1, ErrClosed)
		require.NoError(t, p.Close(), "idempotent")
	}
	_, err := NewQueue("tcp://127.0.0.1:*", "bogus")
	require.ErrorIs(t, err, ErrInvalidEndpoint)
	_, err = NewStreamer("inproc://a", "inproc://b", WithRetries(2, time.Second))
	require.ErrorIs(t, err, ErrInvalidOption)
}

// Subscribers that join a forwarder while it moves messages flat out get
// their subscriptions through: the forwarder's sends on its back socket
// process libzmq's commands now and then, and may so take the ZMQ_FD
// signal that announced a subscription (see forwardSubscriptions).
func TestForwarderSubscribersJoinWhileBusy(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	// No mark on the back: no "room to send" commands arrive there, so a
	// lost signal is the only news of a subscription.
	fwd, err := NewForwarder(bindEndpoint(t, "tcp"), bindEndpoint(t, "tcp"), WithZMQContext(zctx), WithSendHWM(0), WithRecvHWM(0))
	require.NoError(t, err)
	closeOnCleanup(t, fwd)
	runProxy(t, fwd)
	pub, err := NewPublisher(">"+fwd.Front()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	// A subscriber that keeps msgid 1000 flowing through the forwarder.
	busy, err := NewSubscriber(fwd.Back()[0], WithZMQContext(zctx), WithMsgIDs(1000))
	require.NoError(t, err)
	closeOnCleanup(t, busy)
	untilReceived(t, func() error { return pub.Publish(ctx, "sync") }, busy.Receive)
	runInBackground(t, func(ctx context.Context) error {
		return busy.Run(ctx, func(context.Context, Message) error { return nil })
	})
	runInBackground(t, func(ctx context.Context) error {
		for i := 0; ctx.Err() == nil; i++ {
			id := 1000
			if i%16 == 0 {
				id = 2000
			}
			if err := pub.PublishMessage(ctx, Message{ID: id, Type: TypeText, Body: []byte("x")}); err != nil {
				return err
			}
		}
		return nil
	})
	// Goroutines that keep the Go scheduler busy delay the reactor's look
	// at the back's ZMQ_FD, which widens the window for a send to take
	// its signal first.
	for g := 0; g < 2; g++ {
		runInBackground(t, func(ctx context.Context) error {
			for ctx.Err() == nil {
			}
			return nil
		})
	}
	// Each joiner is alone on msgid 2000, so its subscription goes all the
	// way to the publisher, and its unsubscription when it leaves.
	for i := 0; i < 50; i++ {
		sub, err := NewSubscriber(fwd.Back()[0], WithZMQContext(zctx), WithMsgIDs(2000))
		require.NoError(t, err)
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = sub.Receive(rctx)
		cancel()
		require.NoError(t, err, "subscriber %d heard nothing", i)
		require.NoError(t, sub.Close())
	}
}
