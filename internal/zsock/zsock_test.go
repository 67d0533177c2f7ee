package zsock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var linger0 = Option{Name: "ZMQ_LINGER", Set: func(z *zmq.Socket) error { return z.SetLinger(0) }}

func hwm(n int) Option {
	return Option{Name: "HWM", Set: func(z *zmq.Socket) error {
		if err := z.SetSndhwm(n); err != nil {
			return err
		}
		return z.SetRcvhwm(n)
	}}
}

func newContext(t *testing.T) *Context {
	t.Helper()
	zctx, err := NewContext(0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zctx.Term()) })
	return zctx
}

// side describes one end of a test pair.
type side struct {
	wait Wait
	opts []Option
}

// pair returns a ROUTER bound on a fresh endpoint and a DEALER connected to
// it, both closed at cleanup (before the context is terminated).
func pair(t *testing.T, zctx *Context, addr string, r, d side) (router, dealer *Socket) {
	t.Helper()
	router, err := New(zctx, Config{Type: zmq.ROUTER, Wait: r.wait, Options: append([]Option{linger0}, r.opts...),
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = router.Close() })
	dealer, err = New(zctx, Config{Type: zmq.DEALER, Wait: d.wait, Options: append([]Option{linger0}, d.opts...),
		Endpoints: []endpoint.Endpoint{{Addr: router.Bound()[0]}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dealer.Close() })
	return router, dealer
}

// blocking is the side of a Blocking socket with no more options.
var blockingSide = side{wait: Blocking}

// awaitWaiters waits until n calls are parked on s.
func awaitWaiters(t *testing.T, s *Socket, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Waiters() == n }, 5*time.Second, time.Millisecond, "want %d waiters", n)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Many goroutines receive on one Blocking socket: one polls, the others
// park, and the poller role passes on, so every message is received once.
func TestBlockingManyReceivers(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "tcp://127.0.0.1:*", blockingSide, side{})
	ctx := testCtx(t)
	const receivers, messages = 8, 2000
	got := make(chan string, messages)
	var wg sync.WaitGroup
	for i := 0; i < receivers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := router.RecvMessage(ctx)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					return
				}
				got <- string(msg[1])
			}
		}()
	}
	awaitWaiters(t, router, receivers)
	for i := 0; i < messages; i++ {
		require.NoError(t, dealer.SendBytes(ctx, []byte(fmt.Sprint(i)), false))
	}
	seen := map[string]bool{}
	for i := 0; i < messages; i++ {
		select {
		case m := <-got:
			require.False(t, seen[m], "message %s received twice", m)
			seen[m] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d messages received", i, messages)
		}
	}
	require.NoError(t, router.Close())
	wg.Wait()
}

// Full duplex on a Blocking socket: a send blocked at the high-water mark
// and a receive blocked for a reply both go once the peer reads and answers,
// whichever of them holds the poller role.
func TestBlockingDuplex(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "inproc://duplex", side{opts: []Option{hwm(1)}}, side{wait: Blocking, opts: []Option{hwm(1)}})
	ctx := testCtx(t)
	// Fill the pipe until a send would wait.
	sent := 0
	for {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := dealer.SendBytes(short, []byte("fill"), false)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		require.NoError(t, err)
		sent++
		require.Less(t, sent, 100, "the high-water mark never stopped a send")
	}
	received := make(chan []byte, 1)
	go func() {
		b, err := dealer.RecvBytes(ctx)
		if err != nil {
			t.Error(err)
		}
		received <- b
	}()
	sendDone := make(chan error, 1)
	go func() { sendDone <- dealer.SendBytes(ctx, []byte("last"), false) }()
	awaitWaiters(t, dealer, 2)

	// The peer drains every message, then answers.
	var id []byte
	for i := 0; i <= sent; i++ {
		msg, err := router.RecvMessage(ctx)
		require.NoError(t, err)
		id = msg[0]
		if i == sent {
			require.Equal(t, "last", string(msg[1]))
		}
	}
	require.NoError(t, <-sendDone)
	require.NoError(t, router.SendMessage(ctx, id, []byte("reply")))
	require.Equal(t, "reply", string(<-received))
}

// A cancelled poller returns ctx's error at once, and a parked waiter takes
// the role over and still gets the next message.
func TestBlockingCancelHandsOver(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "tcp://127.0.0.1:*", blockingSide, side{})
	ctx := testCtx(t)

	first, cancel := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() {
		_, err := router.RecvMessage(first)
		firstDone <- err
	}()
	awaitWaiters(t, router, 1)
	secondDone := make(chan [][]byte, 1)
	go func() {
		msg, err := router.RecvMessage(ctx)
		if err != nil {
			t.Error(err)
		}
		secondDone <- msg
	}()
	awaitWaiters(t, router, 2)

	cancel()
	select {
	case err := <-firstDone:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled receive did not return")
	}
	awaitWaiters(t, router, 1)
	require.NoError(t, dealer.SendBytes(ctx, []byte("for the second"), false))
	select {
	case msg := <-secondDone:
		require.Equal(t, "for the second", string(msg[1]))
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter that took over never received")
	}
}

// Close wakes the poller and the parked waiters alike.
func TestBlockingClose(t *testing.T) {
	zctx := newContext(t)
	router, _ := pair(t, zctx, "tcp://127.0.0.1:*", blockingSide, side{})
	ctx := testCtx(t)
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := router.RecvMessage(ctx)
			errs <- err
		}()
	}
	awaitWaiters(t, router, 3)
	require.NoError(t, router.Close())
	for i := 0; i < 3; i++ {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Close left a receive blocked")
		}
	}
	_, err := router.RecvMessage(ctx)
	require.ErrorIs(t, err, ErrClosed)
}

// Messages that fit the one-call path and messages that do not (too large,
// too many frames, a large frame in the middle) arrive whole and in order.
func TestMultiFrameSizes(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		t.Run(fmt.Sprint("blocking=", blocking), func(t *testing.T) {
			zctx := newContext(t)
			sd := side{}
			if blocking {
				sd.wait = Blocking
			}
			router, dealer := pair(t, zctx, "inproc://sizes", sd, sd)
			ctx := testCtx(t)
			frame := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
			cases := [][][]byte{
				{frame(64, 'a')},
				{nil, frame(10, 'b'), nil},
				{frame(scratchSize, 'c')},
				{frame(100, 'd'), frame(scratchSize, 'e'), frame(3, 'f')},
				{frame(scratchSize-10, 'g'), frame(20, 'h')},
			}
			many := make([][]byte, maxFrames+5)
			for i := range many {
				many[i] = frame(i, byte('A'+i))
			}
			cases = append(cases, many)
			for _, parts := range cases {
				require.NoError(t, dealer.SendMessage(ctx, parts...))
				msg, err := router.RecvMessage(ctx)
				require.NoError(t, err)
				require.Len(t, msg, len(parts)+1) // the routing id first
				for i, p := range parts {
					require.Equal(t, len(p), len(msg[i+1]), "frame %d", i)
					require.True(t, bytes.Equal(p, msg[i+1]), "frame %d", i)
				}
				// Frames share one allocation but never each other's room.
				if len(msg) > 2 {
					_ = append(msg[1], 'X')
					require.True(t, bytes.Equal(parts[1], msg[2]))
				}
			}
		})
	}
}

// setHook installs a test hook for the test's duration.
func setHook(t *testing.T, hook *atomic.Pointer[func(*Socket)], f func(*Socket)) {
	t.Helper()
	hook.Store(&f)
	t.Cleanup(func() { hook.Store(nil) })
}

// When the poller leaves (here, cancelled) while the others are parked,
// one of them must take the role over, or a message that comes later wakes
// nobody. The hook checks that the others were parked when the leaver gave
// the role up.
func TestBlockingPollerLeavingHandsOver(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "tcp://127.0.0.1:*", blockingSide, side{})
	ctx := testCtx(t)

	leaverCtx, cancel := context.WithCancel(ctx)
	leaverDone := make(chan error, 1)
	go func() {
		_, err := router.RecvMessage(leaverCtx)
		leaverDone <- err
	}()
	awaitWaiters(t, router, 1) // the leaver holds the poller role
	got := make(chan [][]byte, 2)
	for i := 0; i < 2; i++ {
		go func() {
			msg, err := router.RecvMessage(ctx)
			if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, context.Canceled) {
				t.Error(err) // the one left waiting ends with the test
			}
			got <- msg
		}()
	}
	require.Eventually(t, func() bool { return router.parked.Load() == 2 }, 5*time.Second, time.Millisecond)
	var parkedAtLeaving atomic.Int32
	parkedAtLeaving.Store(-1)
	var once sync.Once
	setHook(t, &testHookLeaving, func(s *Socket) {
		once.Do(func() { parkedAtLeaving.Store(s.parked.Load()) }) // the leaver's leaving only
	})
	cancel()
	require.ErrorIs(t, <-leaverDone, context.Canceled)
	// Nothing woke the others while the leaver polled, so only its
	// leaving can: they were parked when it gave the role up.
	require.EqualValues(t, 2, parkedAtLeaving.Load())
	require.NoError(t, dealer.SendBytes(ctx, []byte("later"), false))
	select {
	case msg := <-got:
		require.Equal(t, "later", string(msg[1]))
	case <-time.After(5 * time.Second):
		t.Fatal("nobody took the poller role over: the message woke nobody")
	}
}

// fdReadable reports whether fd becomes readable within d, without
// reading it.
func fdReadable(t *testing.T, fd int, d time.Duration) bool {
	t.Helper()
	var set syscall.FdSet
	set.Bits[fd/64] |= 1 << (uint(fd) % 64)
	tv := syscall.NsecToTimeval(d.Nanoseconds())
	n, err := syscall.Select(fd+1, &set, nil, nil, &tv)
	require.NoError(t, err)
	return n > 0
}

// Another goroutine's operation can consume the ZMQ_FD signal the poller
// waits for (here Do reading ZMQ_EVENTS, which processes the pending
// "message arrived" command). It must then wake the poller, whose poll(2)
// would otherwise wait on a drained descriptor for good.
func TestBlockingOtherOperationWakesPoller(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "tcp://127.0.0.1:*", side{}, blockingSide)
	ctx := testCtx(t)
	// Connect, and learn the dealer's routing id.
	require.NoError(t, dealer.SendBytes(ctx, []byte("hello"), false))
	hello, err := router.RecvMessage(ctx)
	require.NoError(t, err)

	inHook := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	setHook(t, &testHookBeforePoll, func(s *Socket) {
		if s == dealer {
			once.Do(func() {
				close(inHook)
				<-release
			})
		}
	})
	got := make(chan []byte, 1)
	go func() {
		b, err := dealer.RecvBytes(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	<-inHook // the receiver found nothing and is about to poll
	require.NoError(t, router.SendMessage(ctx, hello[0], []byte("reply")))
	require.True(t, fdReadable(t, int(dealer.w.(*blocking).zfd), 5*time.Second), "the reply never signalled ZMQ_FD")
	require.NoError(t, dealer.Do(func(z *zmq.Socket) error {
		_, err := z.GetEvents() // processes the command: ZMQ_FD is drained
		return err
	}))
	close(release)
	select {
	case b := <-got:
		require.Equal(t, "reply", string(b))
	case <-time.After(5 * time.Second):
		t.Fatal("the poller slept through a reply whose signal another operation consumed")
	}
}

// Closing a Blocking socket while requesters send and wait on it, their
// ctxs end and replies arrive must never write to its wake pipe once the
// pipe is closed: the descriptor number may already belong to a
// connection or a file. 300 cycles, each with a poller, parked waiters,
// cancelled ctxs and an echoing peer.
func TestBlockingCloseNeverWritesAClosedPipe(t *testing.T) {
	var late, writes atomic.Int64
	// The descriptor about to be written must still be the pipe: closed,
	// or reused by another file, is a write to something else.
	f := func(fd int, ino uint64) {
		writes.Add(1)
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Ino != ino {
			late.Add(1)
		}
	}
	testHookPipeWrite.Store(&f)
	t.Cleanup(func() { testHookPipeWrite.Store(nil) })
	zctx := newContext(t)
	ctx := testCtx(t)
	for cycle := 0; cycle < 300; cycle++ {
		router, dealer := pair(t, zctx, fmt.Sprintf("inproc://close-cycle-%d", cycle), side{}, blockingSide)
		echoCtx, stopEcho := context.WithCancel(ctx)
		echoed := make(chan struct{})
		go func() {
			defer close(echoed)
			for {
				msg, err := router.RecvMessage(echoCtx)
				if err != nil || router.SendMessage(echoCtx, msg...) != nil {
					return
				}
			}
		}()
		const requesters = 6
		var wg sync.WaitGroup
		cancels := make([]context.CancelFunc, requesters)
		for i := 0; i < requesters; i++ {
			rctx, cancel := context.WithCancel(ctx)
			cancels[i] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				for dealer.SendBytes(rctx, []byte("x"), false) == nil {
					if _, err := dealer.RecvBytes(rctx); err != nil {
						return
					}
				}
			}()
		}
		for i := 0; i < requesters; i += 2 {
			go cancels[i]()
		}
		require.NoError(t, dealer.Close())
		for _, c := range cancels {
			c()
		}
		wg.Wait()
		stopEcho()
		<-echoed
		require.NoError(t, router.Close())
	}
	require.NotZero(t, writes.Load(), "the wake pipe was never written: the test saw nothing")
	require.Zero(t, late.Load(), "writes of %d to a closed or reused wake pipe descriptor", writes.Load())
}

// A signal can interrupt libzmq in the middle of a multi-frame message.
// Whatever frame it hits, on the send and the receive side, in the one-call
// path and the frame-by-frame one (a message too large for the scratch
// buffer), the message must go through whole, and the next one after it.
func TestEINTRMidMessage(t *testing.T) {
	t.Cleanup(func() { injectEINTR(0) })
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "inproc://eintr", side{}, side{})
	ctx := testCtx(t)
	// Learn the dealer's routing id.
	require.NoError(t, dealer.SendBytes(ctx, []byte("hello"), false))
	hello, err := router.RecvMessage(ctx)
	require.NoError(t, err)
	id := hello[0]

	small := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}
	large := [][]byte{bytes.Repeat([]byte("a"), 10), bytes.Repeat([]byte("b"), 2*scratchSize), bytes.Repeat([]byte("c"), 30)}
	for _, tc := range []struct {
		name  string
		parts [][]byte
	}{{"small", small}, {"large", large}} {
		// The router receives [id, parts...]: frame 2 is the first part,
		// the last frame the last part.
		for _, at := range []int{2, len(tc.parts) + 1} {
			t.Run(fmt.Sprintf("%s/recv/frame%d", tc.name, at), func(t *testing.T) {
				require.NoError(t, dealer.SendMessage(ctx, tc.parts...))
				require.NoError(t, dealer.SendMessage(ctx, []byte("next")))
				require.Eventually(t, func() bool { // both are queued in the router
					ev, err := eventsOf(router)
					return err == nil && ev&zmq.POLLIN != 0
				}, 5*time.Second, time.Millisecond)
				injectEINTR(at)
				msg, err := router.RecvMessage(ctx)
				injectEINTR(0)
				require.NoError(t, err)
				require.Equal(t, append([][]byte{id}, tc.parts...), msg)
				msg, err = router.RecvMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, [][]byte{id, []byte("next")}, msg)
			})
			t.Run(fmt.Sprintf("%s/send/frame%d", tc.name, at), func(t *testing.T) {
				injectEINTR(at)
				err := router.SendMessage(ctx, append([][]byte{id}, tc.parts...)...)
				injectEINTR(0)
				require.NoError(t, err)
				require.NoError(t, router.SendMessage(ctx, id, []byte("next")))
				msg, err := dealer.RecvMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, tc.parts, msg)
				msg, err = dealer.RecvMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, [][]byte{[]byte("next")}, msg)
			})
		}
	}
}

// eventsOf reads s's ZMQ_EVENTS.
func eventsOf(s *Socket) (zmq.State, error) {
	var ev zmq.State
	err := s.Do(func(z *zmq.Socket) error {
		var err error
		ev, err = z.GetEvents()
		return err
	})
	return ev, err
}

// The paths zsock takes through pebbe when its check of pebbe's Socket
// layout fails (r.raw == nil) do what the one-call C paths do: every kind
// of send and receive, over both waits.
func TestFallbackPaths(t *testing.T) {
	testForceFallback.Store(true)
	t.Cleanup(func() { testForceFallback.Store(false) })
	for _, w := range []Wait{Netpoller, Blocking, Adaptive} {
		t.Run(fmt.Sprint("wait=", w), func(t *testing.T) {
			zctx := newContext(t)
			sd := side{wait: w}
			router, dealer := pair(t, zctx, "inproc://fallback", sd, sd)
			require.Nil(t, router.recv.raw, "the fallback is forced")
			ctx := testCtx(t)
			require.NoError(t, dealer.SendBytes(ctx, []byte("one"), false))
			msg, err := router.RecvMessage(ctx)
			require.NoError(t, err)
			id := msg[0]
			require.Equal(t, "one", string(msg[1]))
			big := bytes.Repeat([]byte("b"), 3*scratchSize)
			for _, parts := range [][][]byte{{[]byte("a"), {}, []byte("c")}, {big, []byte("x")}} {
				require.NoError(t, router.SendMessage(ctx, append([][]byte{id}, parts...)...))
				got, err := dealer.RecvMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, parts, got)
			}
			require.NoError(t, router.SendMessage(ctx, id, []byte("tail")))
			require.NoError(t, dealer.SendBytes(ctx, []byte("single"), false))
			require.Eventually(t, func() bool {
				ev, err := eventsOf(router)
				return err == nil && ev&zmq.POLLIN != 0
			}, 5*time.Second, time.Millisecond)
			got, ok, err := router.TryRecvMessage()
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "single", string(got[1]))
			_, ok, err = router.TryRecvMessage()
			require.NoError(t, err)
			require.False(t, ok)
			b, err := dealer.RecvBytes(ctx)
			require.NoError(t, err)
			require.Equal(t, "tail", string(b))

			// SendConcat joins its two buffers into one frame.
			push, pull := newPushPull(t, zctx, w)
			require.NoError(t, push.SendConcat(ctx, []byte("head "), []byte("body")))
			b, err = pull.RecvBytes(ctx)
			require.NoError(t, err)
			require.Equal(t, "head body", string(b))
			// A multi-frame message refused whole by RecvBytes.
			require.NoError(t, push.SendMessage(ctx, []byte("a"), []byte("b")))
			_, err = pull.RecvBytes(ctx)
			var fe *FramesError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, 2, fe.Frames)
			recvAppend(t, push, pull)
		})
	}
}

// RecvBytesAppend on both paths (see TestRecvBytesAppend).
func recvAppend(t *testing.T, push, pull *Socket) {
	t.Helper()
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("B"), 3*maxGuess)
	buf := make([]byte, 0, 16)
	for _, m := range [][]byte{[]byte("small"), {}, big, []byte("again")} {
		require.NoError(t, push.SendBytes(ctx, m, false))
		var err error
		buf, err = pull.RecvBytesAppend(ctx, append(buf[:0], "pre:"...))
		require.NoError(t, err)
		require.Equal(t, "pre:"+string(m), string(buf))
	}
	require.GreaterOrEqual(t, cap(buf), 4+len(big), "grown to the largest")
	// Into spare room: no allocation on the C path. (AllocsPerRun makes
	// a warm-up call too.)
	require.NoError(t, push.SendBytes(ctx, []byte("fits"), false))
	require.NoError(t, push.SendBytes(ctx, []byte("fits"), false))
	require.Eventually(t, func() bool {
		ev, err := eventsOf(pull)
		return err == nil && ev&zmq.POLLIN != 0
	}, 5*time.Second, time.Millisecond)
	var got []byte
	allocs := testing.AllocsPerRun(1, func() {
		var err error
		got, err = pull.RecvBytesAppend(ctx, buf[:0])
		require.NoError(t, err)
	})
	require.Equal(t, "fits", string(got))
	require.Same(t, &buf[:1][0], &got[0], "received into buf")
	if pull.recv.raw != nil {
		require.Zero(t, allocs)
	}
	// A multi-frame message is refused whole; buf is returned as it was.
	require.NoError(t, push.SendMessage(ctx, []byte("a"), []byte("b")))
	out, err := pull.RecvBytesAppend(ctx, append(buf[:0], "keep"...))
	var fe *FramesError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 2, fe.Frames)
	require.Equal(t, "a", string(fe.First), "the message's first frame, not buf's contents")
	require.Equal(t, "keep", string(out))
}

func TestRecvBytesAppend(t *testing.T) {
	for _, w := range []Wait{Netpoller, Blocking, Adaptive} {
		t.Run(fmt.Sprint("wait=", w), func(t *testing.T) {
			push, pull := newPushPull(t, newContext(t), w)
			recvAppend(t, push, pull)
		})
	}
}

// newPushPull returns a PUSH bound to a fresh inproc endpoint and a PULL
// connected to it.
func newPushPull(t *testing.T, zctx *Context, w Wait) (push, pull *Socket) {
	t.Helper()
	addr := fmt.Sprintf("inproc://pp-%d", zctx.seq.Add(1))
	push, err := New(zctx, Config{Type: zmq.PUSH, Wait: w, Options: []Option{linger0}, Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = push.Close() })
	pull, err = New(zctx, Config{Type: zmq.PULL, Wait: w, Options: []Option{linger0}, Endpoints: []endpoint.Endpoint{{Addr: addr}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pull.Close() })
	return push, pull
}

// Wait returns when the socket is ready for what is asked, or when
// another goroutine interrupts it; an Interrupt before the Wait is not
// lost.
func TestWaitAndInterrupt(t *testing.T) {
	for _, w := range []Wait{Netpoller, Blocking, Adaptive} {
		t.Run(fmt.Sprint("wait=", w), func(t *testing.T) {
			zctx := newContext(t)
			sd := side{wait: w}
			router, dealer := pair(t, zctx, fmt.Sprintf("inproc://wait-%d", w), sd, sd)
			ctx := testCtx(t)
			for i := 0; i < 200; i++ {
				done := make(chan error, 1)
				go func() { done <- router.Wait(ctx, true, false) }()
				if i%2 == 0 {
					awaitWaiters(t, router, 1)
				}
				router.Interrupt()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: the interrupt was lost", i)
				}
			}
			router.Interrupt()
			require.NoError(t, router.Wait(ctx, true, false), "an earlier interrupt counts")
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			require.ErrorIs(t, router.Wait(short, true, false), context.DeadlineExceeded)
			cancel()
			require.NoError(t, dealer.SendBytes(ctx, []byte("x"), false))
			require.NoError(t, router.Wait(ctx, true, false), "readable")
			msg, ok, err := router.TryRecvMessage()
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = router.TrySendMessage(msg[0], []byte("back"))
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, router.Wait(ctx, false, true), "writable")
		})
	}
}

// The reactor may pump a Blocking socket (process its commands, which
// takes the ZMQ_FD signal) between a poller's first try and its poll(2):
// the poller must still wake for the message that signal was about, which
// observe does once it knows what the poller waits for. (Under load the
// pump once landed before the poller had said so, and a first request
// hung for good; libzmq's eventfd does not always go quiet, so this test
// shows the wake-up, not always that race.)
func TestBlockingPumpBeforePoll(t *testing.T) {
	zctx := newContext(t)
	router, dealer := pair(t, zctx, "tcp://127.0.0.1:*", side{}, blockingSide)
	ctx := testCtx(t)
	require.NoError(t, dealer.SendBytes(ctx, []byte("hello"), false))
	hello, err := router.RecvMessage(ctx)
	require.NoError(t, err)
	var once sync.Once
	setHook(t, &testHookAfterFirstTry, func(s *Socket) {
		if s != dealer {
			return
		}
		once.Do(func() {
			// The reply arrives, and the reactor's pump takes its signal.
			require.NoError(t, router.SendMessage(ctx, hello[0], []byte("reply")))
			require.True(t, fdReadable(t, int(dealer.w.(*blocking).zfd), 5*time.Second))
			dealer.pump()
		})
	})
	got := make(chan []byte, 1)
	go func() {
		b, err := dealer.RecvBytes(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case b := <-got:
		require.Equal(t, "reply", string(b))
	case <-time.After(5 * time.Second):
		t.Fatal("the poller slept through a reply whose signal the pump took")
	}
}

// The same for Wait(ctx, true, true), which waits for room as well as for
// a message: a DEALER with ZMQ_IMMEDIATE has room only once its
// connection is made, and the pump that takes that signal must wake the
// poller. (Wait said only that it waited to receive, so the pump's POLLOUT
// woke nobody: an RRClient's first request hung for good, once in a
// benchmark.)
func TestBlockingWaitBothPumpBeforePoll(t *testing.T) {
	zctx := newContext(t)
	addr := "ipc://" + t.TempDir() + "/s"
	immediate := Option{Name: "ZMQ_IMMEDIATE", Set: func(z *zmq.Socket) error { return z.SetImmediate(true) }}
	ivl := Option{Name: "ZMQ_RECONNECT_IVL", Set: func(z *zmq.Socket) error { return z.SetReconnectIvl(time.Millisecond) }}
	dealer, err := New(zctx, Config{Type: zmq.DEALER, Wait: Blocking, Options: []Option{linger0, immediate, ivl},
		Endpoints: []endpoint.Endpoint{{Addr: addr}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dealer.Close() })
	ctx := testCtx(t)
	// A first wait makes the wake pipe (the first poll(2) makes it, then
	// tries again, which would see the room).
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	require.ErrorIs(t, dealer.Wait(short, true, true), context.DeadlineExceeded)
	cancel()
	var once sync.Once
	setHook(t, &testHookAfterFirstTry, func(s *Socket) {
		if s != dealer {
			return
		}
		once.Do(func() {
			// A server comes, the connection is made, and the reactor's
			// pump takes the signal of the room it brings.
			router, err := New(zctx, Config{Type: zmq.ROUTER, Options: []Option{linger0},
				Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
			require.NoError(t, err)
			t.Cleanup(func() { _ = router.Close() })
			require.Eventually(t, func() bool {
				require.True(t, fdReadable(t, int(dealer.w.(*blocking).zfd), 5*time.Second))
				dealer.pump()
				ev, err := eventsOf(dealer)
				return err == nil && ev&zmq.POLLOUT != 0
			}, 5*time.Second, time.Millisecond)
		})
	})
	done := make(chan error, 1)
	go func() { done <- dealer.Wait(ctx, true, true) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the poller slept through the room whose signal the pump took")
	}
}

// A DEALER whose pipe dies in the middle of a message (its ROUTER peer
// closing over and over) goes on sending whole messages: libzmq rolls the
// message back and drops the rest of it, and SendMessage sends it again
// whole instead of failing with EAGAIN at frame 2 (as it did) or having
// its next message eaten by libzmq's dropping.
func TestDealerPipeDiesMidMessage(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			testForceFallback.Store(fallback)
			t.Cleanup(func() { testForceFallback.Store(false) })
			dealerPipeDiesMidMessage(t)
		})
	}
}

func dealerPipeDiesMidMessage(t *testing.T) {
	dealerPipeDies(t, nil)
}

// dealerPipeDies is TestDealerPipeDiesMidMessage with the dealer's
// messages sent by send (nil: SendMessage), which must return only for
// sendCtx's end or an error.
func dealerPipeDies(t *testing.T, send func(sendCtx context.Context, zctx *Context, dealer *Socket, msg func(i int) [][]byte) error) {
	zctx := newContext(t)
	ivl := Option{Name: "ZMQ_RECONNECT_IVL", Set: func(z *zmq.Socket) error { return z.SetReconnectIvl(time.Millisecond) }}
	// With ZMQ_IMMEDIATE (as RRClient has) a lost connection's pipe is
	// terminated, not kept for the next connection.
	immediate := Option{Name: "ZMQ_IMMEDIATE", Set: func(z *zmq.Socket) error { return z.SetImmediate(true) }}
	ctx := testCtx(t)
	newRouter := func(addr string) *Socket {
		r, err := New(zctx, Config{Type: zmq.ROUTER, Options: []Option{linger0}, Endpoints: []endpoint.Endpoint{{Bind: true, Addr: addr}}})
		require.NoError(t, err)
		return r
	}
	router := newRouter("tcp://127.0.0.1:*")
	addr := router.Bound()[0]
	dealer, err := New(zctx, Config{Type: zmq.DEALER, Options: []Option{linger0, ivl, immediate}, Endpoints: []endpoint.Endpoint{{Addr: addr}}})
	require.NoError(t, err)
	defer dealer.Close()

	defer func() { _ = router.Close() }()

	sendCtx, stop := context.WithCancel(ctx)
	recvCtx, senderFailed := context.WithCancel(ctx)
	sendErr := make(chan error, 1)
	go func() {
		big := bytes.Repeat([]byte("x"), 512)
		if send != nil {
			err := send(sendCtx, zctx, dealer, func(i int) [][]byte { return [][]byte{[]byte("a"), big, []byte(fmt.Sprint(i))} })
			if sendCtx.Err() != nil {
				err = nil
			}
			sendErr <- err
			senderFailed()
			return
		}
		for i := 0; ; i++ {
			err := dealer.SendMessage(sendCtx, []byte("a"), big, []byte(fmt.Sprint(i)))
			if err != nil {
				if sendCtx.Err() != nil {
					err = nil
				}
				sendErr <- err
				senderFailed()
				return
			}
		}
	}()
	for round := 0; round < 200; round++ {
		for i := 0; i < 3; i++ {
			msg, err := router.RecvMessage(recvCtx)
			if err != nil && recvCtx.Err() != nil && ctx.Err() == nil {
				stop()
				require.NoError(t, <-sendErr, "round %d: the sender failed", round)
			}
			require.NoError(t, err, "round %d", round)
			require.Len(t, msg, 4, "round %d: [id, a, big, i], whole", round)
			require.Equal(t, "a", string(msg[1]))
			require.Len(t, msg[2], 512)
		}
		require.NoError(t, router.Close())
		router = newRouter(addr)
	}
	stop()
	require.NoError(t, <-sendErr)
}

// With more Blocking sockets waiting than maxPollers allows in poll(2),
// the others wait on the netpoller, woken by the reactor: every one still
// gets its message, and no more than the bound ever sit in poll(2).
func TestBlockingPollerBound(t *testing.T) {
	maxPollers.Store(1)
	t.Cleanup(func() { maxPollers.Store(defaultMaxPollers) })
	var over atomic.Int32
	setHook(t, &testHookBeforePoll, func(*Socket) {
		if pollers.Load() > 1 {
			over.Add(1)
		}
	})
	zctx := newContext(t)
	ctx := testCtx(t)
	const n = 3
	var pushes, pulls [n]*Socket
	got := make(chan string, n)
	for i := range n {
		pushes[i], pulls[i] = newPushPull(t, zctx, Blocking)
		go func() {
			b, err := pulls[i].RecvBytes(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- string(b)
		}()
	}
	// One polls; the others found no slot and parked.
	require.Eventually(t, func() bool {
		parked := 0
		for _, p := range pulls {
			parked += int(p.parked.Load())
		}
		return pollers.Load() == 1 && parked == n-1
	}, 5*time.Second, time.Millisecond)
	for i := n - 1; i >= 0; i-- { // the parked ones first
		require.NoError(t, pushes[i].SendBytes(ctx, []byte(fmt.Sprint("to ", i)), false))
	}
	var all []string
	for range n {
		select {
		case m := <-got:
			all = append(all, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("received only %q", all)
		}
	}
	require.ElementsMatch(t, []string{"to 0", "to 1", "to 2"}, all)
	require.Zero(t, over.Load(), "more than maxPollers in poll(2)")
}

// Redial makes a socket's own connections again, never for a peer that
// connected to one of its listeners: libzmq names that peer by the
// listener's address, and the socket's one connection was taken for it,
// so a peer leaving a socket that binds and connects dropped that
// connection's queue and reported a protocol error.
func TestRedialLeavesAcceptedPeers(t *testing.T) {
	zctx := newContext(t)
	push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = push.Close() })
	// Called on the monitor's goroutine right after its own bookkeeping
	// of the same event, so it may read the redials due.
	scheduled := make(chan bool, 4)
	var made atomic.Pointer[Socket]
	mon := &Monitor{Events: zmq.EVENT_DISCONNECTED, On: func(ev Event) {
		if s := made.Load(); s != nil && ev.Endpoint == s.Bound()[0] {
			_, due := s.mon.due[ev.Endpoint]
			scheduled <- due
		}
	}}
	pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0}, Redial: true, Monitor: mon,
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}, {Addr: push.Bound()[0]}}})
	require.NoError(t, err)
	made.Store(pull)
	t.Cleanup(func() { _ = pull.Close() })

	// A peer connects to the listener, delivers, and leaves.
	peer, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Addr: pull.Bound()[0]}}})
	require.NoError(t, err)
	ctx := testCtx(t)
	require.NoError(t, peer.SendBytes(ctx, []byte("x"), false))
	_, err = pull.RecvBytes(ctx)
	require.NoError(t, err)
	require.NoError(t, peer.Close())
	select {
	case due := <-scheduled:
		require.False(t, due, "a peer of the listener")
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECTED for the peer of the listener")
	}
	require.True(t, pull.Listens(pull.Bound()[0]))
	require.True(t, pull.redial(push.Bound()[0]), "the socket's own connection")
}

// A connection made to a host name is named by it until libzmq
// reconnects, and by the address resolved from then on: the
// CONNECT_RETRIED that follows a DISCONNECTED (libzmq reconnecting) must
// still cancel the redial the DISCONNECTED scheduled, or zsock drops the
// connection 250 ms later and reports a protocol error that never was.
func TestRedialHostNameReconnecting(t *testing.T) {
	zctx := newContext(t)
	push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
	require.NoError(t, err)
	port := push.Bound()[0][strings.LastIndexByte(push.Bound()[0], ':'):]
	// Called on the monitor's goroutine right after its own bookkeeping
	// of the same event, so it may read the redials due.
	retried := make(chan int, 64)
	var made atomic.Pointer[Socket]
	mon := &Monitor{Events: zmq.EVENT_CONNECT_RETRIED, On: func(ev Event) {
		if s := made.Load(); s != nil && ev.Endpoint == "tcp://127.0.0.1"+port {
			retried <- len(s.mon.due)
		}
	}}
	pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0}, Redial: true, Monitor: mon,
		Endpoints: []endpoint.Endpoint{{Addr: "tcp://localhost" + port}}})
	require.NoError(t, err)
	made.Store(pull)
	t.Cleanup(func() { _ = pull.Close() })
	ctx := testCtx(t)
	require.NoError(t, push.SendBytes(ctx, []byte("x"), false))
	_, err = pull.RecvBytes(ctx)
	require.NoError(t, err)
	require.NoError(t, push.Close()) // the server goes: libzmq reconnects, by the resolved name
	select {
	case due := <-retried:
		require.Zero(t, due, "a redial stays scheduled while libzmq reconnects")
	case <-ctx.Done():
		t.Fatal("no CONNECT_RETRIED by the resolved name")
	}
}

// A socket made with Redial and no connection to watch starts its monitor
// with the first tcp or ipc endpoint Attach connects, and only then.
func TestRedialMonitorStartsWithAttach(t *testing.T) {
	zctx := newContext(t)
	pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0}, Redial: true,
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "inproc://redial-later"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pull.Close() })
	hasMonitor := func() bool {
		pull.mu.Lock()
		defer pull.mu.Unlock()
		return pull.mon != nil
	}
	require.False(t, hasMonitor())
	require.NoError(t, pull.Attach(endpoint.Endpoint{Bind: true, Addr: "tcp://127.0.0.1:*"}))
	require.False(t, hasMonitor(), "a listener needs no watching")
	require.NoError(t, pull.Attach(endpoint.Endpoint{Addr: "tcp://127.0.0.1:1"}))
	require.True(t, hasMonitor())
}

// An Adaptive wait starts on the channel and, after adaptiveNet, goes on in
// poll(2): a message that comes then wakes it, and so do its ctx's end and
// Close.
func TestAdaptiveWaitPolls(t *testing.T) {
	t.Cleanup(func() { adaptiveNet.Store(int64(50 * time.Microsecond)) })
	zctx := newContext(t)
	push, pull := newPushPull(t, zctx, Adaptive)
	require.Negative(t, pull.w.(*blocking).rfd, "no wake pipe before a call polls")
	ctx := testCtx(t)
	polling := make(chan struct{}, 8)
	setHook(t, &testHookBeforePoll, func(s *Socket) {
		if s == pull {
			polling <- struct{}{}
		}
	})
	recv := func(ctx context.Context) <-chan error {
		errc := make(chan error, 1)
		go func() {
			b, err := pull.RecvBytes(ctx)
			if err == nil && string(b) != "late" {
				err = fmt.Errorf("got %q", b)
			}
			errc <- err
		}()
		return errc
	}
	inPoll := func() {
		t.Helper()
		select {
		case <-polling:
		case <-time.After(5 * time.Second):
			t.Fatal("the wait never went on to poll(2)")
		}
	}

	// Within adaptiveNet the wait is on the channel, and a message wakes
	// it there: no poll(2).
	adaptiveNet.Store(int64(time.Hour))
	errc := recv(ctx)
	require.Eventually(t, func() bool { return pull.parked.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, push.SendBytes(ctx, []byte("late"), false))
	require.NoError(t, <-errc)
	require.Empty(t, polling, "a wait within adaptiveNet polled")
	require.Negative(t, pull.w.(*blocking).rfd, "no wake pipe before a call polls")
	adaptiveNet.Store(int64(50 * time.Microsecond))

	errc = recv(ctx)
	inPoll()
	require.NoError(t, push.SendBytes(ctx, []byte("late"), false))
	require.NoError(t, <-errc)

	cctx, cancel := context.WithCancel(ctx)
	errc = recv(cctx)
	inPoll()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)

	errc = recv(ctx)
	inPoll()
	require.NoError(t, pull.Close())
	require.ErrorIs(t, <-errc, ErrClosed)
}

// batchBoth moves single-frame messages of every size, and multi-frame
// ones, through SendBatch and RecvBatch: order kept, multi-frame messages
// returned whole as bad, in both the one-call and the pebbe path.
func batchBoth(t *testing.T, push, pull *Socket) {
	t.Helper()
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("B"), BatchBytes+1)
	msgs := [][]byte{[]byte("a"), {}, big, []byte("b")}
	n, err := push.SendBatch(ctx, msgs)
	require.NoError(t, err)
	require.Equal(t, len(msgs), n)
	require.NoError(t, push.SendMessage(ctx, []byte("m1"), []byte("m2")))
	require.NoError(t, push.SendMessage(ctx, big, []byte("m2"), []byte("m3")))
	require.NoError(t, push.SendBytes(ctx, []byte("end"), false))
	want := append(msgs, []byte("end"))
	var got [][]byte
	var bad []*FramesError
	for len(got) < len(want) {
		m, b, err := pull.RecvBatch(ctx, 3)
		require.NoError(t, err)
		require.LessOrEqual(t, len(m)+len(b), 3)
		got, bad = append(got, m...), append(bad, b...)
	}
	require.Equal(t, want, got)
	require.Len(t, bad, 2)
	require.Equal(t, 2, bad[0].Frames)
	require.Equal(t, "m1", string(bad[0].First))
	require.Equal(t, 3, bad[1].Frames)
	require.Equal(t, big, bad[1].First)
	_, _, err = pull.RecvBatch(ctx, 0)
	require.Error(t, err)
}

func TestBatch(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			testForceFallback.Store(fallback)
			t.Cleanup(func() { testForceFallback.Store(false) })
			zctx := newContext(t)
			push, pull := newPushPull(t, zctx, Netpoller)
			require.Equal(t, fallback, pull.recv.raw == nil)
			batchBoth(t, push, pull)
		})
	}
}

// A signal interrupting libzmq in a batch loses nothing: the frame it hit
// is received or sent again.
func TestEINTRInBatch(t *testing.T) {
	t.Cleanup(func() { injectEINTR(0) })
	zctx := newContext(t)
	push, pull := newPushPull(t, zctx, Netpoller)
	ctx := testCtx(t)
	msgs := [][]byte{[]byte("1"), []byte("2"), []byte("3"), []byte("4")}
	for _, at := range []int{1, 3} {
		injectEINTR(at)
		n, err := push.SendBatch(ctx, msgs)
		require.Zero(t, eintrPending(), "the EINTR was hit")
		injectEINTR(0)
		require.NoError(t, err)
		require.Equal(t, len(msgs), n)
		require.Eventually(t, func() bool { // queued in pull (inproc: all four)
			ev, err := eventsOf(pull)
			return err == nil && ev&zmq.POLLIN != 0
		}, 5*time.Second, time.Millisecond)
		var got [][]byte
		injectEINTR(at)
		for len(got) < len(msgs) {
			m, _, err := pull.RecvBatch(ctx, MaxBatch)
			require.NoError(t, err)
			got = append(got, m...)
		}
		require.Zero(t, eintrPending(), "the EINTR was hit")
		injectEINTR(0)
		require.Equal(t, msgs, got)
	}
}

// Two connect endpoints on one port: the announcements of the one libzmq
// keeps reconnecting (nothing listens there) leave alone the redial of the
// other, which libzmq gave up on after a protocol error. (Before, any event
// on the port cancelled the only redial scheduled on it.)
func TestRedialTwoEndpointsOnePort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() { // a server that does not speak ZMTP: libzmq drops it for good
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			greeting := make([]byte, 64)
			greeting[0], greeting[9], greeting[10], greeting[11] = 0xff, 0x7f, 3, 0
			copy(greeting[12:], "BOGUS")
			_, _ = c.Write(greeting)
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	bogus := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	nobody := fmt.Sprintf("tcp://127.0.0.2:%d", port)
	redialed := make(chan string, 16)
	zctx := newContext(t)
	reconnect := Option{Name: "ZMQ_RECONNECT_IVL", Set: func(z *zmq.Socket) error { return z.SetReconnectIvl(10 * time.Millisecond) }}
	pull, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0, reconnect}, Redial: true,
		OnRedial: func(ep string, _ bool) {
			select {
			case redialed <- ep:
			default:
			}
		},
		Endpoints: []endpoint.Endpoint{{Addr: bogus}, {Addr: nobody}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pull.Close() })
	select {
	case ep := <-redialed:
		require.Equal(t, bogus, ep)
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint libzmq gave up on was never connected again")
	}
}

// A monitor held past a redial's due time (by its callback, or a host
// lookup) reads the events queued meanwhile first: libzmq's announcement
// that it reconnects cancels the redial, which would otherwise drop the
// connection libzmq is making and report a protocol error that never was.
func TestRedialHeldMonitorReadsQueuedEventsFirst(t *testing.T) {
	zctx := newContext(t)
	server := func() *Socket {
		s, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0},
			Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
		require.NoError(t, err)
		return s
	}
	srv := server()
	ep := srv.Bound()[0]
	var redials atomic.Int32
	held := make(chan struct{})
	handshakes := make(chan struct{}, 16)
	reconnect := Option{Name: "ZMQ_RECONNECT_IVL", Set: func(z *zmq.Socket) error { return z.SetReconnectIvl(10 * time.Millisecond) }}
	push, err := New(zctx, Config{Type: zmq.PUSH, Options: []Option{linger0, reconnect}, Redial: true,
		OnRedial: func(string, bool) { redials.Add(1) },
		Monitor: &Monitor{Events: zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED, On: func(ev Event) {
			switch ev.Kind {
			case zmq.EVENT_DISCONNECTED:
				select {
				case <-held:
				default: // the first time: hold the monitor past the redial's due time
					close(held)
					time.Sleep(2 * redialAfter)
				}
			case zmq.EVENT_HANDSHAKE_SUCCEEDED:
				handshakes <- struct{}{}
			}
		}},
		Endpoints: []endpoint.Endpoint{{Addr: ep}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = push.Close() })
	<-handshakes
	require.NoError(t, srv.Close())
	<-held
	srv2, err := New(zctx, Config{Type: zmq.PULL, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: ep}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv2.Close() })
	select {
	case <-handshakes: // libzmq reconnected by itself; the monitor is past the hold
	case <-time.After(10 * time.Second):
		t.Fatal("never reconnected")
	}
	require.Zero(t, redials.Load(), "a redial while libzmq was reconnecting")
}

// Detach closes the connections of the endpoint it disconnects, and libzmq
// reports none of them; the monitor reports a DISCONNECTED for each, with
// the descriptor and name of its CONNECTED, and none for the connections
// of the socket's listener or of its other connect endpoints: here a
// connection whose handshake never ends (the peer accepts and never
// speaks) and one to a ZMTP peer.
func TestDetachReportsItsConnections(t *testing.T) {
	zctx := newContext(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	held := make(chan net.Conn, 4)
	t.Cleanup(func() {
		_ = silent.Close()
		close(held)
		for c := range held {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	router, err := New(zctx, Config{Type: zmq.ROUTER, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = router.Close() })
	other, err := New(zctx, Config{Type: zmq.ROUTER, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })

	events := make(chan Event, 64)
	silentEp := "tcp://" + silent.Addr().String()
	dealer, err := New(zctx, Config{Type: zmq.DEALER, Options: []Option{linger0},
		Monitor: &Monitor{Events: zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED,
			On: func(ev Event) { events <- ev }},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"},
			{Addr: silentEp}, {Addr: router.Bound()[0]}, {Addr: other.Bound()[0]}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dealer.Close() })
	// A peer of the dealer's listener.
	peer, err := New(zctx, Config{Type: zmq.DEALER, Options: []Option{linger0},
		Endpoints: []endpoint.Endpoint{{Addr: dealer.Bound()[0]}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })

	ctx := testCtx(t)
	next := func() Event { return nextEvent(t, ctx, events) }
	fds := map[string]int{}
	shaken := 0
	for len(fds) < 3 || shaken < 3 { // the router, the other and the peer shake hands
		ev := next()
		switch ev.Kind {
		case zmq.EVENT_CONNECTED:
			fds[ev.Endpoint] = ev.Value
		case zmq.EVENT_HANDSHAKE_SUCCEEDED:
			shaken++
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	require.Contains(t, fds, silentEp)
	require.Contains(t, fds, router.Bound()[0])

	for _, ep := range []string{silentEp, router.Bound()[0]} {
		require.NoError(t, dealer.Detach(ep))
		ev := next()
		require.Equal(t, Event{Kind: zmq.EVENT_DISCONNECTED, Value: fds[ep], Endpoint: ep, ByDetach: true}, ev)
	}
	// The listener's peer leaves: its DISCONNECTED, libzmq's own, is the
	// next event, so nothing else (a second DISCONNECTED of a detached
	// connection, say) came first.
	require.NoError(t, peer.Close())
	ev := next()
	require.Equal(t, zmq.EVENT_DISCONNECTED, ev.Kind, "%+v", ev)
	require.Equal(t, dealer.Bound()[0], ev.Endpoint)
	require.False(t, ev.ByDetach)
}

// While the monitor's goroutine is held (a slow callback), Detach of an
// endpoint, a connection to another endpoint (which may reuse the closed
// connection's descriptor) and an Attach of the same endpoint again do not
// confuse it: the connection Detach closed is reported closed once, first,
// and neither new connection is. (The review of the first version found
// both: the closed connection went unreported when its descriptor was
// reused, and the new connection to the same endpoint was reported
// closed.)
func TestDetachReportsWhileMonitorHeld(t *testing.T) {
	zctx := newContext(t)
	ctx := testCtx(t)
	accepted := make(chan string, 8)
	router := func() string {
		var ep string
		r, err := New(zctx, Config{Type: zmq.ROUTER, Options: []Option{linger0},
			Monitor:   &Monitor{Events: zmq.EVENT_ACCEPTED, On: func(Event) { accepted <- ep }},
			Endpoints: []endpoint.Endpoint{{Bind: true, Addr: "tcp://127.0.0.1:*"}}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		ep = r.Bound()[0]
		return ep
	}
	a, b := router(), router()
	events := make(chan Event, 64)
	gate := make(chan struct{})
	var held atomic.Bool
	dealer, err := New(zctx, Config{Type: zmq.DEALER, Options: []Option{linger0},
		Monitor: &Monitor{Events: zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED, On: func(ev Event) {
			events <- ev
			if !held.Swap(true) {
				<-gate
			}
		}},
		Endpoints: []endpoint.Endpoint{{Addr: a}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dealer.Close() })
	awaitAccepted := func(ep string) {
		t.Helper()
		for {
			select {
			case got := <-accepted:
				if got == ep {
					return
				}
			case <-ctx.Done():
				t.Fatalf("%s never accepted the dealer", ep)
			}
		}
	}
	next := func() Event { return nextEvent(t, ctx, events) }
	awaitAccepted(a)
	first := next() // the monitor is held in its callback from here
	require.Equal(t, Event{Kind: zmq.EVENT_CONNECTED, Value: first.Value, Endpoint: a}, first)

	require.NoError(t, dealer.Detach(a))
	require.NoError(t, dealer.Attach(endpoint.Endpoint{Addr: b}))
	awaitAccepted(b)
	require.NoError(t, dealer.Attach(endpoint.Endpoint{Addr: a}))
	awaitAccepted(a)
	close(gate)

	require.Equal(t, Event{Kind: zmq.EVENT_DISCONNECTED, Value: first.Value, Endpoint: a, ByDetach: true}, next())
	live := map[string]int{}
	for len(live) < 2 {
		ev := next()
		require.Equal(t, zmq.EVENT_CONNECTED, ev.Kind, "%+v", ev)
		live[ev.Endpoint] = ev.Value
	}
	require.Contains(t, live, a)
	require.Contains(t, live, b)
	// Detach b: its DISCONNECTED is the next event, with nothing before it.
	require.NoError(t, dealer.Detach(b))
	require.Equal(t, Event{Kind: zmq.EVENT_DISCONNECTED, Value: live[b], Endpoint: b, ByDetach: true}, next())
}

// nextEvent returns the next event from events, failing the test when ctx
// ends first.
func nextEvent(t *testing.T, ctx context.Context, events <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-ctx.Done():
		t.Fatal("no event")
		return Event{}
	}
}

// A batch moves many messages per call: 100 small messages queued on an
// inproc pipe go in a few SendBatch attempts and come out of one RecvBatch
// (on the fallback too, which loops in Go), where a per-message path would
// show as one attempt each.
func TestBatchMovesManyPerCall(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprint("fallback=", fallback), func(t *testing.T) {
			testForceFallback.Store(fallback)
			t.Cleanup(func() { testForceFallback.Store(false) })
			zctx := newContext(t)
			push, pull := newPushPull(t, zctx, Netpoller)
			ctx := testCtx(t)
			msgs := make([][]byte, 100)
			for i := range msgs {
				msgs[i] = []byte(fmt.Sprint(i))
			}
			before := push.ops.Load()
			n, err := push.SendBatch(ctx, msgs)
			require.NoError(t, err)
			require.Equal(t, len(msgs), n)
			if !fallback {
				require.Less(t, push.ops.Load()-before, uint64(5), "attempts for 100 messages")
			}
			got, bad, err := pull.RecvBatch(ctx, MaxBatch)
			require.NoError(t, err)
			require.Empty(t, bad)
			require.Equal(t, msgs, got, "one RecvBatch takes all that has arrived")
		})
	}
}
