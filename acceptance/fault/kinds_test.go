package faultsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmqkit/zmqkit"
)

// object is what every zmqkit type has.
type object interface {
	Close() error
	Endpoints() []string
	Stats() zmqkit.Stats
	AddEndpoint(string) error
}

// kindSpec describes one of the eight types.
type kindSpec struct {
	name  string
	binds bool // its default side
	open  func(ep string, opts ...zmqkit.Option) (object, error)
	// peer is the counterpart's kind name.
	peer string
}

var kinds = []kindSpec{
	{"Publisher", true, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewPublisher(ep, o...)) }, "Subscriber"},
	{"Subscriber", false, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewSubscriber(ep, o...)) }, "Publisher"},
	{"RRServer", true, func(ep string, o ...zmqkit.Option) (object, error) {
		return nilIfErr(zmqkit.NewRRServer(ep, echo, o...))
	}, "RRClient"},
	{"RRClient", false, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewRRClient(ep, o...)) }, "RRServer"},
	{"PPPusher", true, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewPPPusher(ep, o...)) }, "PPPuller"},
	{"PPPuller", false, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewPPPuller(ep, o...)) }, "PPPusher"},
	{"PairServer", true, func(ep string, o ...zmqkit.Option) (object, error) {
		return nilIfErr(zmqkit.NewPairServer(ep, echo, o...))
	}, "PairClient"},
	{"PairClient", false, func(ep string, o ...zmqkit.Option) (object, error) { return nilIfErr(zmqkit.NewPairClient(ep, o...)) }, "PairServer"},
}

// nilIfErr keeps a typed nil pointer out of the interface.
func nilIfErr[T object](o T, err error) (object, error) {
	if err != nil {
		return nil, err
	}
	return o, nil
}

// bindSide is the endpoint prefix that makes k bind: "@" for the types that
// connect by default.
func (k kindSpec) bindSide() string {
	if k.binds {
		return ""
	}
	return "@"
}

func kindByName(name string) kindSpec {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	panic("no kind " + name)
}

// running is an object with its Run (for the servers) going in the
// background; stop closes it and waits for Run.
type running struct {
	object
	runDone chan error
}

// start opens kind k on ep and, for a server, starts Run.
func start(k kindSpec, ep string, opts ...zmqkit.Option) (*running, error) {
	o, err := k.open(ep, opts...)
	if err != nil {
		return nil, err
	}
	r := &running{object: o}
	var run func(context.Context) error
	switch v := o.(type) {
	case *zmqkit.RRServer:
		run = v.Run
	case *zmqkit.PairServer:
		run = v.Run
	}
	if run != nil {
		r.runDone = make(chan error, 1)
		go func() { r.runDone <- run(context.Background()) }()
	}
	return r, nil
}

// stop closes the object, within closeBound, and waits for its Run, which
// must end with ErrClosed.
func (r *running) stop(t testing.TB) {
	t.Helper()
	closeWithin(t, fmt.Sprintf("%T.Close", r.object), closeBound, r.object.Close)
	if r.runDone != nil {
		select {
		case err := <-r.runDone:
			if !errors.Is(err, zmqkit.ErrClosed) {
				t.Errorf("%T.Run after Close returned %v, want ErrClosed", r.object, err)
			}
		case <-time.After(closeBound):
			t.Errorf("%T.Run did not return within %v of Close", r.object, closeBound)
		}
	}
}

var ping = []byte("ping")

// exchange proves that one message goes between a and b (either order of
// the pattern's two sides) before ctx ends. Servers must be running.
func exchange(ctx context.Context, a, b object) error {
	if strings.Compare(fmt.Sprintf("%T", a), fmt.Sprintf("%T", b)) > 0 {
		a, b = b, a
	}
	try := func(d time.Duration) (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, d) }
	var last error
	for ctx.Err() == nil {
		switch x := a.(type) {
		case *zmqkit.PPPuller: // b is *PPPusher
			p := b.(*zmqkit.PPPusher)
			c, cancel := try(20 * time.Millisecond)
			last = p.Push(c, ping)
			cancel()
			c, cancel = try(20 * time.Millisecond)
			m, err := x.Receive(c)
			cancel()
			if err == nil && bytes.Equal(m, ping) {
				return nil
			}
			if err != nil {
				last = err
			}
		case *zmqkit.PairClient: // b is *PairServer
			c, cancel := try(500 * time.Millisecond)
			rep, err := x.Request(c, ping)
			cancel()
			if err == nil {
				if !bytes.Equal(rep, ping) {
					return fmt.Errorf("pair reply %q, want %q", rep, ping)
				}
				return nil
			}
			last = err
		case *zmqkit.Publisher: // b is *Subscriber
			s := b.(*zmqkit.Subscriber)
			last = x.Publish(ctx, "ping")
			c, cancel := try(20 * time.Millisecond)
			m, err := s.Receive(c)
			cancel()
			if err == nil {
				if m.Text() != "ping" {
					return fmt.Errorf("subscriber got %v", m)
				}
				return nil
			}
			last = err
		case *zmqkit.RRClient: // b is *RRServer
			c, cancel := try(time.Second)
			rep, err := x.Request(c, ping)
			cancel()
			if err == nil {
				if !bytes.Equal(rep, ping) {
					return fmt.Errorf("reply %q, want %q", rep, ping)
				}
				return nil
			}
			last = err
		default:
			return fmt.Errorf("exchange: no pattern for %T and %T", a, b)
		}
		// Malformed input is a clear error, not the end of an exchange
		// (a non-ZMTP peer's bytes may reach us as ZMTP 1.0 frames).
		if last != nil && !isCtxErr(last) && !errors.Is(last, zmqkit.ErrPairReset) && !errors.Is(last, zmqkit.ErrMalformed) {
			return last
		}
	}
	return fmt.Errorf("exchange %T<->%T: %w (last error: %v)", a, b, ctx.Err(), last)
}
