package zmqkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// probeID is the msgid test helpers use to learn that a subscription has
// reached a publisher; awaitSubscribed's callers skip it.
const probeID = 424242

// newPubSub makes a Publisher bound on tr and a Subscriber connected to it,
// both on one test context, and waits until the subscription is live.
func newPubSub(t testing.TB, tr string, pubOpts, subOpts []Option) (*Publisher, *Subscriber) {
	t.Helper()
	zctx := newTestContext(t)
	pub, err := NewPublisher(bindEndpoint(t, tr), append([]Option{WithZMQContext(zctx)}, pubOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	sub, err := NewSubscriber(pub.Endpoints()[0], append([]Option{WithZMQContext(zctx)}, subOpts...)...)
	require.NoError(t, err)
	closeOnCleanup(t, sub)
	awaitSubscribed(t, pub, sub)
	return pub, sub
}

// awaitSubscribed publishes probes until sub receives one: the handshake
// that beats the slow-joiner problem without sleeping.
func awaitSubscribed(t testing.TB, pub *Publisher, sub *Subscriber) {
	t.Helper()
	require.NoError(t, sub.Subscribe(probeID))
	ctx := testCtx(t)
	for {
		require.NoError(t, pub.PublishMessage(ctx, Message{ID: probeID, Type: TypeText, Body: []byte("probe")}))
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		m, err := sub.Receive(rctx)
		cancel()
		if err == nil && m.ID == probeID {
			return
		}
		require.NoError(t, ctx.Err(), "subscription never reached the publisher")
	}
}

// receive returns the next message that is not a probe.
func receive(ctx context.Context, sub *Subscriber) (Message, error) {
	for {
		m, err := sub.Receive(ctx)
		if err != nil || m.ID != probeID {
			return m, err
		}
	}
}

func TestPubSubTextAndJSON(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			pub, sub := newPubSub(t, tr, nil, nil)
			ctx := testCtx(t)
			require.NoError(t, pub.Publish(ctx, "Hello World"))
			require.NoError(t, pub.Publish(ctx, map[string]int{"data": 42}))
			require.NoError(t, pub.PublishMessage(ctx, Message{ID: 7, Type: TypeText, Body: []byte("")}))

			m, err := receive(ctx, sub)
			require.NoError(t, err)
			assert.Equal(t, Message{ID: 1000, Type: "text", Body: []byte("Hello World")}, m)

			m, err = receive(ctx, sub)
			require.NoError(t, err)
			assert.Equal(t, 1000, m.ID)
			assert.Equal(t, "json", m.Type)
			var got struct{ Data int }
			require.NoError(t, m.JSON(&got))
			assert.Equal(t, 42, got.Data)

			m, err = receive(ctx, sub)
			require.NoError(t, err)
			assert.Equal(t, Message{ID: 7, Type: "text", Body: []byte{}}, m)
		})
	}
}

func TestSubscriberExactMsgIDFilter(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			pub, sub := newPubSub(t, tr, nil, []Option{WithMsgIDs(1000, 7)})
			ctx := testCtx(t)
			for _, id := range []int{10001, 1000, 100, 70, 7, 10000} {
				require.NoError(t, pub.PublishMessage(ctx, Message{ID: id, Type: TypeText, Body: []byte(fmt.Sprint(id))}))
			}
			require.NoError(t, pub.PublishMessage(ctx, Message{ID: 1, Type: TypeText, Body: []byte("end")}))
			require.NoError(t, sub.Subscribe(1))
			// The subscription to 1 may take a moment to arrive: publish
			// the end marker until it does.
			var got []int
			for {
				rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				m, err := receive(rctx, sub)
				cancel()
				if err != nil {
					require.ErrorIs(t, err, context.DeadlineExceeded)
					require.NoError(t, pub.PublishMessage(ctx, Message{ID: 1, Type: TypeText, Body: []byte("end")}))
					continue
				}
				if m.ID == 1 {
					break
				}
				got = append(got, m.ID)
			}
			assert.Equal(t, []int{1000, 7}, got)
		})
	}
}

func TestSubscriberAddEndpointAndUnsubscribe(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	p1, err := NewPublisher("inproc://a", WithZMQContext(zctx), WithMsgID(1))
	require.NoError(t, err)
	closeOnCleanup(t, p1)
	p2, err := NewPublisher("tcp://127.0.0.1:*", WithZMQContext(zctx), WithMsgID(2))
	require.NoError(t, err)
	closeOnCleanup(t, p2)
	sub, err := NewSubscriber("inproc://a", WithZMQContext(zctx), WithMsgIDs(1, 2))
	require.NoError(t, err)
	closeOnCleanup(t, sub)
	require.NoError(t, sub.AddEndpoint(p2.Endpoints()[0]))
	assert.Equal(t, []string{"inproc://a", p2.Endpoints()[0]}, sub.Endpoints())
	awaitSubscribed(t, p1, sub)
	awaitSubscribed(t, p2, sub)
	require.NoError(t, p2.Publish(ctx, "from 2"))
	m, err := receive(ctx, sub)
	require.NoError(t, err)
	assert.Equal(t, "from 2", m.Text())
	assert.Equal(t, 2, m.ID)

	require.Error(t, sub.AddEndpoint("bogus"))
	require.ErrorIs(t, sub.AddEndpoint("bogus"), ErrInvalidEndpoint)
	require.ErrorIs(t, sub.Subscribe(-1), ErrInvalidArgument)
}

func TestReceiveEndsByContextAndClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			_, sub := newPubSub(t, tr, nil, []Option{WithMsgIDs(5)})

			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := sub.Receive(ctx)
				errc <- err
			}()
			awaitBlocked(t, sub.sock, 1)
			cancel()
			select {
			case err := <-errc:
				assert.ErrorIs(t, err, context.Canceled)
			case <-time.After(5 * time.Second):
				t.Fatal("Receive did not return after its ctx ended")
			}

			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer dcancel()
			_, err := sub.Receive(dctx)
			assert.ErrorIs(t, err, context.DeadlineExceeded)

			go func() {
				_, err := sub.Receive(context.Background())
				errc <- err
			}()
			awaitBlocked(t, sub.sock, 1)
			require.NoError(t, sub.Close())
			select {
			case err := <-errc:
				assert.ErrorIs(t, err, ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("Receive did not return after Close")
			}
			require.NoError(t, sub.Close(), "Close is idempotent")
			_, err = sub.Receive(context.Background())
			assert.ErrorIs(t, err, ErrClosed)
		})
	}
}

func TestPublishAfterCloseAndCancelledCtx(t *testing.T) {
	zctx := newTestContext(t)
	pub, err := NewPublisher("inproc://closed", WithZMQContext(zctx))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, pub.Publish(ctx, "x"), context.Canceled)
	require.NoError(t, pub.Close())
	require.NoError(t, pub.Close())
	assert.ErrorIs(t, pub.Publish(context.Background(), "x"), ErrClosed)
	assert.Equal(t, uint64(0), pub.Stats().Sent)
}

// Errors match: a failed Publish is an *OpError naming the type and the
// operation, with one "zmqkit:" prefix; a Message without a type or with
// a negative msgid is a bad argument (ErrInvalidArgument) and a message
// that cannot be encoded (ErrInvalidMessage); a body that cannot be
// encoded is only the latter.
func TestPublishErrorsMatch(t *testing.T) {
	zctx := newTestContext(t)
	pub, err := NewPublisher(bindEndpoint(t, "inproc"), WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		msg  Message
		arg  bool
	}{
		{"no type", Message{ID: 1}, true},
		{"type with a space", Message{ID: 1, Type: "a b"}, true},
		{"negative msgid", Message{ID: -1, Type: TypeText}, true},
		{"text not UTF-8", Message{ID: 1, Type: TypeText, Body: []byte{0xff}}, false},
		{"json not JSON", Message{ID: 1, Type: TypeJSON, Body: []byte("{")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pub.PublishMessage(ctx, tc.msg)
			require.ErrorIs(t, err, ErrInvalidMessage)
			assert.Equal(t, tc.arg, errors.Is(err, ErrInvalidArgument), "matches ErrInvalidArgument: %v", err)
			var oe *OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "publish", oe.Op)
			assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "%q", err)
		})
	}
	assert.Zero(t, pub.Stats().Sent)
}

func TestSubscriberRun(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var rec errorRecorder
			pub, sub := newPubSub(t, tr, nil, []Option{rec.option()})
			ctx := testCtx(t)
			got := make(chan string, 100)
			runCtx, stop := context.WithCancel(ctx)
			runErr := make(chan error, 1)
			go func() {
				runErr <- sub.Run(runCtx, func(ctx context.Context, m Message) error {
					if m.ID == probeID {
						return nil
					}
					switch m.Text() {
					case "fail":
						return errors.New("handler says no")
					case "panic":
						panic("handler blew up")
					}
					got <- m.Text()
					return nil
				})
			}()
			for _, s := range []string{"a", "fail", "b", "panic", "c"} {
				require.NoError(t, pub.Publish(ctx, s))
			}
			// A malformed frame, straight onto the socket, is reported and
			// skipped.
			require.NoError(t, pub.sock.SendBytes(ctx, []byte("1000 json {not json"), false))
			require.NoError(t, pub.Publish(ctx, "d"))
			for _, want := range []string{"a", "b", "c", "d"} {
				select {
				case s := <-got:
					assert.Equal(t, want, s, "concurrency 1 keeps order")
				case <-ctx.Done():
					t.Fatal("handler never saw", want)
				}
			}
			stop()
			require.ErrorIs(t, <-runErr, context.Canceled)

			st := sub.Stats()
			assert.Equal(t, uint64(2), st.HandlerErrors)
			assert.Equal(t, uint64(1), st.HandlerPanics)
			assert.Equal(t, uint64(1), st.Malformed)
			reported := rec.errors()
			require.Len(t, reported, 3)
			requireHandlerFailures(t, reported, "handler says no")
			var me *MalformedError
			require.ErrorAs(t, reported[2], &me)
			assert.Contains(t, me.Reason, "invalid JSON")
		})
	}
}

func TestSubscriberRunEndsOnClose(t *testing.T) {
	_, sub := newPubSub(t, "inproc", nil, []Option{WithConcurrency(4)})
	started := make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		close(started)
		runErr <- sub.Run(context.Background(), func(context.Context, Message) error { return nil })
	}()
	<-started
	require.NoError(t, sub.Close())
	select {
	case err := <-runErr:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	assert.ErrorIs(t, sub.Run(context.Background(), func(context.Context, Message) error { return nil }), ErrClosed)
	assert.ErrorIs(t, sub.Run(context.Background(), nil), ErrInvalidArgument)
}

func TestSubscriberRunConcurrency(t *testing.T) {
	pub, sub := newPubSub(t, "inproc", nil, []Option{WithConcurrency(4), WithMsgIDs(1000)})
	ctx := testCtx(t)
	// Four handlers must be in flight at once for any of them to finish.
	var barrier sync.WaitGroup
	barrier.Add(4)
	done := make(chan struct{}, 4)
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() {
		runErr <- sub.Run(runCtx, func(ctx context.Context, m Message) error {
			barrier.Done()
			barrier.Wait()
			done <- struct{}{}
			return nil
		})
	}()
	for i := 0; i < 4; i++ {
		require.NoError(t, pub.Publish(ctx, fmt.Sprint(i)))
	}
	for i := 0; i < 4; i++ {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("four handlers never ran at once")
		}
	}
	stop()
	require.ErrorIs(t, <-runErr, context.Canceled)
}

func TestConcurrentPublishersAllAccountedFor(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const goroutines, each = 16, 500
			// No high-water mark: every message must arrive.
			pub, sub := newPubSub(t, tr, []Option{WithSendHWM(0)}, []Option{WithRecvHWM(0), WithMsgIDs(1000)})
			ctx := testCtx(t)
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						assert.NoError(t, pub.Publish(ctx, fmt.Sprintf("%d:%d", g, i)))
					}
				}()
			}
			next := make([]int, goroutines)
			for n := 0; n < goroutines*each; n++ {
				m, err := receive(ctx, sub)
				require.NoError(t, err)
				var g, i int
				_, err = fmt.Sscanf(m.Text(), "%d:%d", &g, &i)
				require.NoError(t, err)
				require.Equal(t, next[g], i, "goroutine %d's messages in order, none lost or doubled", g)
				next[g]++
			}
			wg.Wait()
			for g := range next {
				assert.Equal(t, each, next[g])
			}
			assert.GreaterOrEqual(t, pub.Stats().Sent, uint64(goroutines*each))
		})
	}
}

// WaitForSubscribers beats the slow joiner: with three subscribers joining
// at random moments, the first message published after it returns reaches
// all three, every time.
func TestWaitForSubscribers(t *testing.T) {
	for _, tr := range []string{"tcp", "ipc", "inproc"} {
		t.Run(tr, func(t *testing.T) {
			zctx := newTestContext(t)
			ctx := testCtx(t)
			rounds := 50
			if tr == "inproc" {
				rounds = 20
			}
			for round := 0; round < rounds; round++ {
				pub, err := NewPublisher(bindEndpoint(t, tr), WithZMQContext(zctx))
				require.NoError(t, err)
				ep := pub.Endpoints()[0]
				subs := make(chan *Subscriber, 3)
				for i := 0; i < 3; i++ {
					go func() {
						time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // joining at random moments
						opts := []Option{WithZMQContext(zctx)}
						if i == 1 {
							opts = append(opts, WithMsgIDs(1000, 7))
						}
						sub, err := NewSubscriber(ep, opts...)
						if err != nil {
							t.Error(err)
						}
						subs <- sub
					}()
				}
				require.NoError(t, pub.WaitForSubscribers(ctx, 3))
				require.NoError(t, pub.Publish(ctx, fmt.Sprintf("round %d", round)))
				for i := 0; i < 3; i++ {
					sub := <-subs
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					m, err := sub.Receive(rctx)
					cancel()
					require.NoError(t, err, "round %d: a subscriber missed the first message", round)
					assert.Equal(t, fmt.Sprintf("round %d", round), m.Text())
					require.NoError(t, sub.Close())
				}
				require.NoError(t, pub.Close())
			}
		})
	}
}

// WaitForSubscribers ends by ctx when nobody comes, by Close, and counts a
// subscriber that left no more.
func TestWaitForSubscribersEnds(t *testing.T) {
	zctx := newTestContext(t)
	pub, err := NewPublisher(bindEndpoint(t, "tcp"), WithZMQContext(zctx))
	require.NoError(t, err)
	require.NoError(t, pub.WaitForSubscribers(testCtx(t), 0))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, pub.WaitForSubscribers(ctx, 1), context.DeadlineExceeded)
	require.ErrorIs(t, pub.WaitForSubscribers(ctx, -1), ErrInvalidArgument)

	sub, err := NewSubscriber(pub.Endpoints()[0], WithZMQContext(zctx), WithMsgIDs(999)) // another msgid: does not count
	require.NoError(t, err)
	ok, err := NewSubscriber(pub.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	require.NoError(t, pub.WaitForSubscribers(testCtx(t), 1))
	require.NoError(t, ok.Close())
	require.Eventually(t, func() bool { n, _ := pub.subs.matching("1000 "); return n == 0 }, 5*time.Second, time.Millisecond,
		"the subscriber that left still counts")
	require.NoError(t, sub.Close())

	errc := make(chan error, 1)
	go func() { errc <- pub.WaitForSubscribers(context.Background(), 5) }()
	require.NoError(t, pub.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForSubscribers did not end on Close")
	}
}
