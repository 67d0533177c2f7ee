package zmqkit

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lifecycle is one of the eight types, made and used through one shape, for
// tests of what every object must do (open, close, race its Context).
type lifecycle struct {
	name string
	bind bool // binds by default
	open func(ep string, opts ...Option) (closer, error)
	// use makes a call on obj that returns ErrClosed once obj is closed
	// (and blocks or succeeds while it is open).
	use func(ctx context.Context, obj closer) error
}

var lifecycles = []lifecycle{
	{"Publisher", true,
		func(ep string, opts ...Option) (closer, error) { return NewPublisher(ep, opts...) },
		func(ctx context.Context, o closer) error { return o.(*Publisher).Publish(ctx, "x") }},
	{"Subscriber", false,
		func(ep string, opts ...Option) (closer, error) { return NewSubscriber(ep, opts...) },
		func(ctx context.Context, o closer) error { _, err := o.(*Subscriber).Receive(ctx); return err }},
	{"RRServer", true,
		func(ep string, opts ...Option) (closer, error) { return NewRRServer(ep, echo, opts...) },
		func(ctx context.Context, o closer) error { return o.(*RRServer).Run(ctx) }},
	{"RRClient", false,
		func(ep string, opts ...Option) (closer, error) { return NewRRClient(ep, opts...) },
		func(ctx context.Context, o closer) error {
			_, err := o.(*RRClient).Request(ctx, []byte("x"))
			return err
		}},
	{"PPPusher", true,
		func(ep string, opts ...Option) (closer, error) { return NewPPPusher(ep, opts...) },
		func(ctx context.Context, o closer) error { return o.(*PPPusher).Push(ctx, []byte("x")) }},
	{"PPPuller", false,
		func(ep string, opts ...Option) (closer, error) { return NewPPPuller(ep, opts...) },
		func(ctx context.Context, o closer) error { _, err := o.(*PPPuller).Receive(ctx); return err }},
	{"PairServer", true,
		func(ep string, opts ...Option) (closer, error) { return NewPairServer(ep, echo, opts...) },
		func(ctx context.Context, o closer) error { return o.(*PairServer).Run(ctx) }},
	{"PairClient", false,
		func(ep string, opts ...Option) (closer, error) { return NewPairClient(ep, opts...) },
		func(ctx context.Context, o closer) error { _, err := o.(*PairClient).Receive(ctx); return err }},
}

// requireClosed requires obj to behave as closed: its call returns
// ErrClosed, not a time-out.
func (lc lifecycle) requireClosed(t testing.TB, obj closer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.ErrorIs(t, lc.use(ctx, obj), ErrClosed, "%s left open", lc.name)
}

// Context.Close racing the constructors of every type: each constructor
// either returns an object that the Close has closed, or fails with
// ErrClosed; nothing panics, nothing is left open, no goroutine leaks.
func TestContextCloseRacingConstructors(t *testing.T) {
	for round := 0; round < 300; round++ {
		zctx, err := NewContext()
		require.NoError(t, err)
		type result struct {
			lc  lifecycle
			obj closer
			err error
		}
		results := make(chan result, 2*len(lifecycles))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, lc := range lifecycles {
			for _, tr := range []string{"inproc", "tcp"} {
				ep := fmt.Sprintf("inproc://race-%d-%s", round, lc.name)
				if tr == "tcp" {
					ep = "tcp://127.0.0.1:*"
					if !lc.bind {
						ep = "tcp://127.0.0.1:9" // nobody there: connecting is enough
					}
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					obj, err := lc.open(ep, WithZMQContext(zctx), WithLinger(0))
					results <- result{lc, obj, err}
				}()
			}
		}
		close(start)
		require.NoError(t, zctx.Close())
		wg.Wait()
		close(results)
		for r := range results {
			if r.err != nil {
				require.ErrorIs(t, r.err, ErrClosed, "%s", r.lc.name)
				continue
			}
			r.lc.requireClosed(t, r.obj)
			require.NoError(t, r.obj.Close())
		}
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// peerOf is the type at the other end of each type.
var peerOf = map[string]string{
	"Publisher": "Subscriber", "Subscriber": "Publisher",
	"RRServer": "RRClient", "RRClient": "RRServer",
	"PPPusher": "PPPuller", "PPPuller": "PPPusher",
	"PairServer": "PairClient", "PairClient": "PairServer",
}

func lifecycleOf(t testing.TB, name string) lifecycle {
	t.Helper()
	for _, lc := range lifecycles {
		if lc.name == name {
			return lc
		}
	}
	t.Fatalf("no type %s", name)
	return lifecycle{}
}

// Opening and closing objects again and again next to an idle peer,
// connected to it over inproc and tcp, leaves no descriptor, socket or
// goroutine behind: Close releases everything whatever the peer does.
func TestOpenCloseChurnReleasesEverything(t *testing.T) {
	const cycles = 300
	for _, lc := range lifecycles {
		for _, tr := range []string{"inproc", "tcp"} {
			t.Run(lc.name+"/"+tr, func(t *testing.T) {
				zctx := newTestContext(t)
				peer := lifecycleOf(t, peerOf[lc.name])
				// The side that binds stays; the other comes and goes.
				stay, churn, stayEp := peer, lc, bindEndpoint(t, tr)
				if lc.bind {
					stay, churn = lc, peer
				}
				_ = stay
				obj, err := stay.open(stayEp, WithZMQContext(zctx))
				require.NoError(t, err)
				closeOnCleanup(t, obj)
				ep := obj.(interface{ Endpoints() []string }).Endpoints()[0]
				baseFDs, baseG := openFDs(t), runtime.NumGoroutine()
				for i := 0; i < cycles; i++ {
					o, err := churn.open(ep, WithZMQContext(zctx))
					require.NoError(t, err)
					require.NoError(t, o.Close())
				}
				require.Eventually(t, func() bool { return openFDs(t) <= baseFDs+2 && runtime.NumGoroutine() <= baseG+2 },
					5*time.Second, 10*time.Millisecond, "descriptors %d → %d, goroutines %d → %d after %d cycles of %s",
					baseFDs, openFDs(t), baseG, runtime.NumGoroutine(), cycles, churn.name)
			})
		}
	}
}

// After Close returns, the address it bound can be bound again at once,
// for every type that binds, over tcp, ipc and inproc; and after
// Context.Close too.
func TestCloseFreesTheAddress(t *testing.T) {
	const cycles = 200
	for _, lc := range lifecycles {
		for _, tr := range transports {
			t.Run(lc.name+"/"+tr, func(t *testing.T) {
				zctx := newTestContext(t)
				ep := "@" + bindEndpoint(t, tr)
				obj, err := lc.open(ep, WithZMQContext(zctx))
				require.NoError(t, err)
				ep = "@" + obj.(interface{ Endpoints() []string }).Endpoints()[0] // the port really bound
				require.NoError(t, obj.Close())
				for i := 0; i < cycles; i++ {
					obj, err := lc.open(ep, WithZMQContext(zctx))
					require.NoError(t, err, "cycle %d", i)
					require.NoError(t, obj.Close())
				}
			})
		}
	}
	t.Run("Context.Close", func(t *testing.T) {
		ep := "@" + bindEndpoint(t, "tcp")
		for i := 0; i < cycles/4; i++ {
			zctx, err := NewContext()
			require.NoError(t, err)
			for _, lc := range lifecycles {
				obj, err := lc.open(ep, WithZMQContext(zctx))
				require.NoError(t, err, "cycle %d: %s", i, lc.name)
				ep = "@" + obj.(interface{ Endpoints() []string }).Endpoints()[0]
				_ = obj // closed by the Context
				require.NoError(t, zctx.Close())
				zctx, err = NewContext()
				require.NoError(t, err)
			}
			require.NoError(t, zctx.Close())
		}
	})
}
