package faultsuite

// Section 5: option edges. Every option at 0, 1, max int32, max int32+1,
// negative, huge durations and nil; options given to a type they do not
// apply to; WithConcurrency at its maximum; WithMaxSockets small.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

const maxI32 = math.MaxInt32

// msDur is n milliseconds.
func msDur(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// optionCase is one option value and what the documentation says of it.
type optionCase struct {
	name    string // the option's name, which a refusal must name
	label   string
	opt     zmqkit.Option
	applies []string // the types it applies to (its doc's "Applies to")
	valid   int      // 1: must be accepted; 0: must be refused; -1: either, but clearly
}

var (
	all       = []string{"Publisher", "Subscriber", "RRServer", "RRClient", "PPPusher", "PPPuller", "PairServer", "PairClient"}
	senders   = []string{"Publisher", "RRServer", "RRClient", "PPPusher", "PairServer", "PairClient"}
	receivers = []string{"Subscriber", "RRServer", "RRClient", "PPPuller", "PairServer", "PairClient"}
	reporters = []string{"Subscriber", "RRServer", "RRClient", "PPPuller", "PairServer", "PairClient"}
	handlers  = []string{"Subscriber", "RRServer", "PPPuller", "PairServer", "PairClient"}
	pubsub    = []string{"Publisher", "Subscriber"}
)

func optionCases() []optionCase {
	var cs []optionCase
	add := func(name, label string, opt zmqkit.Option, applies []string, valid int) {
		cs = append(cs, optionCase{name, label, opt, applies, valid})
	}
	for _, c := range []struct {
		label string
		n     int
		valid int
	}{{"0", 0, 1}, {"1", 1, 1}, {"maxint32", maxI32, 1}, {"maxint32+1", maxI32 + 1, 0}, {"-1", -1, 0}, {"minint", math.MinInt, 0}, {"maxint", math.MaxInt, 0}} {
		add("WithSendHWM", c.label, zmqkit.WithSendHWM(c.n), senders, c.valid)
		add("WithRecvHWM", c.label, zmqkit.WithRecvHWM(c.n), receivers, c.valid)
	}
	for _, c := range []struct {
		label string
		n     int
		valid int
	}{{"0", 0, 0}, {"1", 1, 1}, {"max", zmqkit.MaxConcurrency, 1}, {"max+1", zmqkit.MaxConcurrency + 1, 0}, {"maxint32", maxI32, 0}, {"maxint32+1", maxI32 + 1, 0}, {"-1", -1, 0}} {
		add("WithConcurrency", c.label, zmqkit.WithConcurrency(c.n), handlers, c.valid)
	}
	// Durations that libzmq holds in a C int of milliseconds, rounded up.
	durs := []struct {
		label string
		d     time.Duration
		valid int
	}{
		{"0", 0, 1},
		{"1ns", 1, 1},
		{"1ms", time.Millisecond, 1},
		{"maxint32 ms", msDur(maxI32), 1},
		{"maxint32 ms + 1ns (rounds up past the C int)", msDur(maxI32) + 1, 0},
		{"maxint32+1 ms", msDur(maxI32 + 1), 0},
		{"-1ns", -1, 0},
		{"-1ms", -time.Millisecond, 0},
		{"max duration", time.Duration(math.MaxInt64), 0},
		{"min duration", time.Duration(math.MinInt64), 0},
	}
	for _, d := range durs {
		add("WithLinger", d.label, zmqkit.WithLinger(d.d), all, d.valid)
		// Interval 0 is refused by the doc? It says "how soon ... retries"; a
		// zero interval is not a libzmq value we can hold meaningfully: either.
		iv := d.valid
		if d.d == 0 {
			iv = -1
		}
		add("WithReconnectInterval", "interval "+d.label, zmqkit.WithReconnectInterval(d.d, 0), all, iv)
		mv := d.valid
		if d.valid == 1 && d.d > 0 && d.d < time.Millisecond {
			mv = -1 // maximum below the interval after rounding: either
		}
		add("WithReconnectInterval", "max "+d.label, zmqkit.WithReconnectInterval(time.Nanosecond, d.d), all, mv)
		hv := d.valid
		if d.d == 0 {
			hv = -1
		}
		add("WithHeartbeat", "interval "+d.label, zmqkit.WithHeartbeat(d.d, time.Second), all, hv)
		rv := d.valid
		if d.d <= 0 {
			rv = 0
		} else {
			rv = 1 // perTry is Go's own time-out
		}
		add("WithRetries", "perTry "+d.label, zmqkit.WithRetries(3, d.d), []string{"RRClient"}, rv)
	}
	add("WithHeartbeat", "timeout 6553.5s", zmqkit.WithHeartbeat(time.Second, 6553500*time.Millisecond), all, 1)
	add("WithHeartbeat", "timeout 6553.5s+1ns", zmqkit.WithHeartbeat(time.Second, 6553500*time.Millisecond+1), all, 0)
	add("WithHeartbeat", "timeout maxint32 ms + 1ns", zmqkit.WithHeartbeat(time.Second, msDur(maxI32)+1), all, 0)
	add("WithHeartbeat", "timeout -1", zmqkit.WithHeartbeat(time.Second, -1), all, 0)
	add("WithRetries", "tries 0", zmqkit.WithRetries(0, time.Second), []string{"RRClient"}, 0)
	add("WithRetries", "tries -1", zmqkit.WithRetries(-1, time.Second), []string{"RRClient"}, 0)
	add("WithRetries", "tries 1", zmqkit.WithRetries(1, time.Second), []string{"RRClient"}, 1)
	add("WithRetries", "tries maxint32+1", zmqkit.WithRetries(maxI32+1, time.Second), []string{"RRClient"}, -1)
	add("WithRetries", "tries maxint", zmqkit.WithRetries(math.MaxInt, time.Second), []string{"RRClient"}, -1)
	for _, c := range []struct {
		label string
		n     int64
		valid int
	}{{"0", 0, -1}, {"1", 1, 1}, {"maxint32", maxI32, 1}, {"maxint32+1", maxI32 + 1, 1}, {"maxint64", math.MaxInt64, 1}, {"-1", -1, -1}, {"minint64", math.MinInt64, 0}} {
		add("WithMaxMessageSize", c.label, zmqkit.WithMaxMessageSize(c.n), receivers, c.valid)
	}
	for _, c := range []struct {
		label string
		n     int
		valid int
	}{{"0", 0, 1}, {"1", 1, 1}, {"maxint32+1", maxI32 + 1, 1}, {"maxint", math.MaxInt, 1}, {"-1", -1, 0}} {
		add("WithMsgID", c.label, zmqkit.WithMsgID(c.n), []string{"Publisher"}, c.valid)
		add("WithMsgIDs", c.label, zmqkit.WithMsgIDs(c.n), []string{"Subscriber"}, c.valid)
	}
	add("WithMsgIDs", "none", zmqkit.WithMsgIDs(), []string{"Subscriber"}, -1)
	add("WithMsgIDs", "1, -1", zmqkit.WithMsgIDs(1, -1), []string{"Subscriber"}, 0)
	for _, c := range []struct {
		label string
		valid int
	}{{"utf-8", 1}, {"gbk", 1}, {"GB18030", 1}, {"big5", 1}, {"shift_jis", 1}, {"windows-1252", 1}, {"latin1", 1}, {"", -1}, {"utf-16", 0}, {"utf-16le", 0}, {"no-such-encoding", 0}, {"\xff", 0}} {
		add("WithEncoding", c.label, zmqkit.WithEncoding(c.label), pubsub, c.valid)
	}
	add("WithBodyCodec", "raw", zmqkit.WithBodyCodec("raw", zmqkit.RawCodec{}), pubsub, 1)
	add("WithBodyCodec", "text", zmqkit.WithBodyCodec("text", zmqkit.RawCodec{}), pubsub, 0)
	add("WithBodyCodec", "json", zmqkit.WithBodyCodec("json", zmqkit.RawCodec{}), pubsub, 0)
	add("WithBodyCodec", "type with space", zmqkit.WithBodyCodec("a b", zmqkit.RawCodec{}), pubsub, 0)
	add("WithBodyCodec", "empty type", zmqkit.WithBodyCodec("", zmqkit.RawCodec{}), pubsub, 0)
	add("WithBodyCodec", "nil codec", zmqkit.WithBodyCodec("x", nil), pubsub, 0)
	// nil values: refused clearly or taken as the default, never a panic.
	add("WithErrorHandler", "nil", zmqkit.WithErrorHandler(nil), all, -1) // the doc: every type
	add("WithLogger", "nil", zmqkit.WithLogger(nil), all, -1)
	add("WithZMQContext", "nil", zmqkit.WithZMQContext(nil), all, -1)
	return cs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestOptionEdges: each value on each type: accepted where valid (and the
// object works and closes), refused with ErrInvalidOption naming the option
// where invalid or where the option does not apply.
func TestOptionEdges(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	for _, c := range optionCases() {
		for _, k := range kinds {
			ep := inprocEP("opt")
			var o object
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s(%s) on %s panicked: %v", c.name, c.label, k.name, r)
					}
				}()
				o, err = k.open(ep, zmqkit.WithZMQContext(zc), c.opt)
			}()
			applies := contains(c.applies, k.name)
			what := fmt.Sprintf("%s(%s) on %s", c.name, c.label, k.name)
			if err == nil {
				closeWithin(t, what+": Close", closeBound, o.Close)
			}
			switch {
			case !applies:
				if assert.Error(t, err, "%s: accepted an option that does not apply", what) {
					assert.ErrorIs(t, err, zmqkit.ErrInvalidOption, what)
					assert.Contains(t, err.Error(), c.name, "%s: the error must name the option", what)
					assert.Contains(t, err.Error(), k.name, "%s: the error should name the type", what)
				}
			case c.valid == 1:
				assert.NoError(t, err, what)
			case c.valid == 0:
				if assert.Error(t, err, "%s: accepted a value it should refuse", what) {
					assert.ErrorIs(t, err, zmqkit.ErrInvalidOption, "%s: %v", what, err)
					assert.Contains(t, err.Error(), c.name, "%s: the error must name the option", what)
				}
			default: // either; but a refusal must be the documented one
				if err != nil {
					assert.ErrorIs(t, err, zmqkit.ErrInvalidOption, "%s: %v", what, err)
					assert.Contains(t, err.Error(), c.name, what)
				}
			}
		}
	}
}

// TestZeroOption: the zero Option does nothing, for every type.
func TestZeroOption(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	for _, k := range kinds {
		o, err := k.open(inprocEP("zero"), zmqkit.WithZMQContext(zc), zmqkit.Option{})
		if assert.NoError(t, err, k.name) {
			assert.NoError(t, o.Close())
		}
	}
}

// TestOptionOnClosedContext: a closed Context refuses new objects with ErrClosed.
func TestOptionOnClosedContext(t *testing.T) {
	leakCheck(t)
	zc, err := zmqkit.NewContext()
	require.NoError(t, err)
	require.NoError(t, zc.Close())
	for _, k := range kinds {
		o, err := k.open(inprocEP("closed"), zmqkit.WithZMQContext(zc))
		if err == nil {
			_ = o.Close()
		}
		assert.ErrorIs(t, err, zmqkit.ErrClosed, k.name)
	}
}

// TestOptionValuesTakeEffect: edge values that are accepted behave as
// documented.
func TestOptionValuesTakeEffect(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("msgid above int32", func(t *testing.T) {
		id := maxI32 + 1
		pub, err := zmqkit.NewPublisher(inprocEP("big"), zmqkit.WithZMQContext(zc), zmqkit.WithMsgID(id))
		require.NoError(t, err)
		defer pub.Close()
		sub, err := zmqkit.NewSubscriber(pub.Endpoints()[0], zmqkit.WithZMQContext(zc), zmqkit.WithMsgIDs(id))
		require.NoError(t, err)
		defer sub.Close()
		require.NoError(t, exchange(ctx, pub, sub))
	})
	t.Run("linger 0 and 1ns close at once with queued messages", func(t *testing.T) {
		for _, l := range []time.Duration{0, 1} {
			push, err := zmqkit.NewPPPusher(">tcp://127.0.0.1:1", zmqkit.WithZMQContext(zc), zmqkit.WithLinger(l))
			require.NoError(t, err)
			// A connecting pusher queues for its endpoint even with no puller.
			c, cc := context.WithTimeout(ctx, 200*time.Millisecond)
			_ = push.Push(c, ping)
			cc()
			closeWithin(t, "PPPusher.Close", 500*time.Millisecond, push.Close)
		}
	})
	t.Run("HWM 1 blocks a pusher after a bounded queue", func(t *testing.T) {
		push, err := zmqkit.NewPPPusher(">tcp://127.0.0.1:1", zmqkit.WithZMQContext(zc), zmqkit.WithSendHWM(1), zmqkit.WithLinger(0))
		require.NoError(t, err)
		defer push.Close()
		n := 0
		for ; n < 100; n++ {
			c, cc := context.WithTimeout(ctx, 100*time.Millisecond)
			err := push.Push(c, ping)
			cc()
			if err != nil {
				assert.True(t, isCtxErr(err), "%v", err)
				break
			}
		}
		assert.LessOrEqual(t, n, 2, "HWM 1 queued %d messages", n)
	})
	t.Run("huge retries per-try", func(t *testing.T) {
		cli, err := zmqkit.NewRRClient("tcp://127.0.0.1:1", zmqkit.WithZMQContext(zc), zmqkit.WithRetries(math.MaxInt, time.Duration(math.MaxInt64)))
		if err != nil {
			assert.ErrorIs(t, err, zmqkit.ErrInvalidOption)
			return
		}
		defer cli.Close()
		err = endsByCtx(t, "RRClient.Request with huge retries", 200*time.Millisecond, func(ctx context.Context) error {
			_, err := cli.Request(ctx, ping)
			return err
		})
		assert.True(t, isCtxErr(err), "%v", err)
	})
}

// TestConcurrencyMax: WithConcurrency(MaxConcurrency) on every handler
// type: a burst is handled, and Close returns promptly with handlers
// blocked.
func TestConcurrencyMax(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const burst = 2000
	opts := []zmqkit.Option{zmqkit.WithZMQContext(zc), zmqkit.WithConcurrency(zmqkit.MaxConcurrency)}
	t.Run("RRServer", func(t *testing.T) {
		srv, err := zmqkit.NewRRServer(inprocEP("cmax"), func(ctx context.Context, req []byte) ([]byte, error) {
			time.Sleep(10 * time.Millisecond)
			return req, nil
		}, opts...)
		require.NoError(t, err)
		stopSrv := serveBG(t, "RRServer", srv)
		cli, err := zmqkit.NewRRClient(srv.Endpoints()[0], zmqkit.WithZMQContext(zc))
		require.NoError(t, err)
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < burst; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				want := fmt.Sprint(i)
				rep, err := cli.Request(ctx, []byte(want))
				if err != nil || string(rep) != want {
					t.Errorf("request %d: %q %v", i, rep, err)
				}
			}(i)
		}
		wg.Wait()
		t.Logf("%d requests of 10 ms at concurrency %d in %v", burst, zmqkit.MaxConcurrency, time.Since(start))
		closeWithin(t, "RRClient.Close", closeBound, cli.Close)
		stopSrv()
	})
	t.Run("PPPuller", func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		n := 0
		pull, err := zmqkit.NewPPPuller("@"+inprocEP("cmax"), opts...)
		require.NoError(t, err)
		wait := runBG(t, "PPPuller.Run", func() error {
			return pull.Run(context.Background(), func(ctx context.Context, m []byte) error {
				mu.Lock()
				n++
				mu.Unlock()
				<-release // handlers block, ignoring ctx
				return nil
			})
		})
		push, err := zmqkit.NewPPPusher(">"+pull.Endpoints()[0], zmqkit.WithZMQContext(zc))
		require.NoError(t, err)
		for i := 0; i < burst; i++ {
			require.NoError(t, push.Push(ctx, ping))
		}
		eventually(t, 30*time.Second, "every message handed to its own handler call at once", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return n == burst
		})
		closeWithin(t, "PPPuller.Close with blocked handlers", closeBound, pull.Close)
		close(release)
		assert.ErrorIs(t, wait(10*time.Second), zmqkit.ErrClosed)
		closeWithin(t, "PPPusher.Close", closeBound, push.Close)
	})
}

// TestMaxSockets: a small socket limit is refused with ErrSocketLimit
// saying the socket limit was reached; Close frees the address even at the
// limit; the Context still closes promptly. Each case runs in a child
// process (TestMaxSocketsChild): a libzmq assertion (SIGABRT) there fails
// that case, not the whole suite.
func TestMaxSockets(t *testing.T) {
	for _, v := range []int{0, -1, math.MinInt} {
		_, err := zmqkit.NewContext(zmqkit.WithMaxSockets(v))
		assert.ErrorIs(t, err, zmqkit.ErrInvalidOption, "WithMaxSockets(%d)", v)
		if err != nil {
			assert.Contains(t, err.Error(), "WithMaxSockets")
		}
	}
	for _, v := range []int{maxI32, maxI32 + 1, math.MaxInt} {
		zc, err := zmqkit.NewContext(zmqkit.WithMaxSockets(v))
		if err == nil {
			closeWithin(t, "Context.Close", closeBound, zc.Close)
		} else {
			assert.ErrorIs(t, err, zmqkit.ErrInvalidOption, "WithMaxSockets(%d): %v", v, err)
		}
	}
	for _, tr := range []string{"tcp", "ipc", "inproc"} {
		for _, k := range kinds {
			for _, limit := range []int{1, 2, 3, 4, 7} {
				t.Run(fmt.Sprintf("%s/%s/%d", k.name, tr, limit), func(t *testing.T) {
					runChild(t, "TestMaxSocketsChild", fmt.Sprintf("%s/%s/%d", k.name, tr, limit))
				})
			}
		}
	}
}

func TestMaxSocketsChild(t *testing.T) {
	c := os.Getenv("FAULTSUITE_CASE")
	if os.Getenv("FAULTSUITE_CHILD") != t.Name() || c == "" {
		t.Skip("run by TestMaxSockets in a child process")
	}
	var kname, tr string
	var limit int
	parts := strings.Split(c, "/")
	kname, tr = parts[0], parts[1]
	fmt.Sscan(parts[2], &limit)
	k := kindByName(kname)
	leakCheck(t)
	zc := newZCtx(t, zmqkit.WithMaxSockets(limit))
	prefix := k.bindSide()
	var objs []object
	defer func() {
		for _, o := range objs {
			closeWithin(t, "Close", closeBound, o.Close)
		}
	}()
	var err error
	for i := 0; i <= limit; i++ {
		var o object
		o, err = k.open(prefix+bindEP(t, tr), zmqkit.WithZMQContext(zc))
		if err != nil {
			break
		}
		objs = append(objs, o)
	}
	require.Error(t, err, "%d objects fit in a limit of %d sockets", len(objs), limit)
	assert.ErrorIs(t, err, zmqkit.ErrSocketLimit, "after %d objects: %v", len(objs), err)
	assert.Contains(t, err.Error(), "socket limit", "after %d objects: %v", len(objs), err)
	assert.Contains(t, err.Error(), fmt.Sprint(limit), "the error should give the limit: %v", err)
	// At the limit, Close must free the address (and the socket) at once.
	if len(objs) > 0 {
		last := objs[len(objs)-1]
		ep := last.Endpoints()[0]
		objs = objs[:len(objs)-1]
		require.NoError(t, last.Close())
		o, err := k.open(prefix+ep, zmqkit.WithZMQContext(zc))
		if assert.NoError(t, err, "rebinding %s right after Close at the socket limit", ep) {
			objs = append(objs, o)
		}
	}
}

// TestOptionErrorsNameOption: the refusal for an option on the wrong type
// has exactly one "zmqkit:" prefix and names option and types.
func TestOptionErrorsNameOption(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	_, err := zmqkit.NewPublisher(inprocEP("x"), zmqkit.WithZMQContext(zc), zmqkit.WithRetries(3, time.Second))
	require.Error(t, err)
	assert.ErrorIs(t, err, zmqkit.ErrInvalidOption)
	assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), err.Error())
	assert.Contains(t, err.Error(), "WithRetries")
	assert.Contains(t, err.Error(), "RRClient")
	assert.False(t, errors.Is(err, zmqkit.ErrInvalidArgument))
}
