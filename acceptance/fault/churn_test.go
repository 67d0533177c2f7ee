package faultsuite

// Section 3: churn. Every type opened and closed 1,000 times (FAULTSUITE_CHURN
// overrides), over tcp, ipc and inproc, without a peer (binding the very
// same endpoint each time: rebinding right after Close must never fail) and
// with a peer (one message each time). Descriptors and goroutines must come
// back to their baseline.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

func churnN() int { return envInt("FAULTSUITE_CHURN", 1000) }

// churnEach runs body as a subtest for every kind on tcp, ipc and inproc,
// with a private Context whose descriptors are warmed up (warmFDs), and then
// requires the descriptors back at that count (what names the moment).
func churnEach(t *testing.T, what string, body func(t *testing.T, k kindSpec, tr string, zc *zmqkit.Context)) {
	for _, tr := range []string{"tcp", "ipc", "inproc"} {
		for _, k := range kinds {
			t.Run(k.name+"/"+tr, func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				base := warmFDs(t, zc)
				body(t, k, tr, zc)
				requireFDsBack(t, base, what)
			})
		}
	}
}

func TestChurnRebind(t *testing.T) {
	n := churnN()
	churnEach(t, "after churn", func(t *testing.T, k kindSpec, tr string, zc *zmqkit.Context) {
		ep := bindEP(t, tr)
		start := time.Now()
		for i := 0; i < n; i++ {
			o, err := k.open(k.bindSide()+ep, zmqkit.WithZMQContext(zc))
			if err != nil {
				t.Fatalf("iteration %d: rebinding %q right after Close failed: %v", i, ep, err)
			}
			if i == 0 && tr == "tcp" {
				ep = o.Endpoints()[0] // the same port from now on
				require.False(t, strings.HasSuffix(ep, ":*"))
			}
			cs := time.Now()
			if err := o.Close(); err != nil {
				t.Fatalf("iteration %d: Close: %v", i, err)
			}
			if d := time.Since(cs); d > closeBound {
				t.Errorf("iteration %d: Close took %v", i, d)
			}
		}
		t.Logf("%d open/close in %v", n, time.Since(start))
	})
}

// TestChurnWithPeer: a long-lived peer (tcp, ipc) or a fresh one each
// time (inproc, which does not reconnect); the churned object exchanges a
// message with it every time.
func TestChurnWithPeer(t *testing.T) {
	n := churnN()
	churnEach(t, fmt.Sprintf("after %d iterations", n), func(t *testing.T, k kindSpec, tr string, zc *zmqkit.Context) {
		pk := kindByName(k.peer)
		opts := []zmqkit.Option{zmqkit.WithZMQContext(zc), zmqkit.WithReconnectInterval(2*time.Millisecond, 0)}
		// A restarted server loses the requests in flight to it (documented):
		// the long-lived client retries quickly.
		peerOpts := opts
		if pk.name == "RRClient" {
			peerOpts = append(peerOpts[:len(peerOpts):len(peerOpts)], zmqkit.WithRetries(1000, 50*time.Millisecond))
		}
		// inproc peers cannot restart apart (documented for pairs, and
		// inproc never reconnects): a fresh peer each time.
		freshPeer := tr == "inproc" && (k.binds || strings.HasPrefix(k.name, "Pair"))
		var ep string
		var peer *running
		openPeer := func(ep string) {
			t.Helper()
			var err error
			peer, err = start(pk, ep, peerOpts...)
			require.NoError(t, err)
		}
		// The bound side takes the endpoint; the other connects to it.
		ep = bindEP(t, tr)
		if !k.binds && !freshPeer {
			openPeer(ep)
			ep = peer.Endpoints()[0]
		}
		started := time.Now()
		for i := 0; i < n; i++ {
			x, err := start(k, ep, opts...)
			if err != nil {
				t.Fatalf("iteration %d: open %s on %q: %v", i, k.name, ep, err)
			}
			if i == 0 && k.binds {
				ep = x.Endpoints()[0]
			}
			if k.binds && peer == nil {
				openPeer(ep)
			}
			if !k.binds && freshPeer {
				// the peer binds the inproc name, x connected first
				openPeer(ep)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = exchange(ctx, x.object, peer.object)
			cancel()
			if err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
			x.stop(t)
			if freshPeer {
				peer.stop(t)
				peer = nil
			}
			if t.Failed() {
				t.FailNow()
			}
		}
		if peer != nil {
			peer.stop(t)
		}
		t.Logf("%d open/exchange/close in %v", n, time.Since(started))
	})
}

// TestChurnContexts: whole Contexts made, filled with one object of each
// type, and closed, many times.
func TestChurnContexts(t *testing.T) {
	leakCheck(t)
	base := fdCount(t)
	n := churnN() / 10
	for i := 0; i < n; i++ {
		zc, err := zmqkit.NewContext()
		require.NoError(t, err)
		for _, k := range kinds {
			ep := "tcp://127.0.0.1:*"
			if !k.binds {
				ep = "@" + ep
			}
			if i%2 == 1 {
				ep = inprocEP("ctx")
			}
			_, err := start(k, ep, zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
		}
		closeWithin(t, "Context.Close", closeBound, zc.Close)
	}
	requireFDsBack(t, base, "after context churn")
}

// warmFDs opens and closes one object of every kind on zc (libzmq starts its
// I/O threads and their descriptors lazily) and returns the descriptor count.
func warmFDs(t *testing.T, zc *zmqkit.Context) int {
	t.Helper()
	for _, k := range kinds {
		o, err := k.open(k.bindSide()+"tcp://127.0.0.1:*", zmqkit.WithZMQContext(zc))
		require.NoError(t, err)
		require.NoError(t, o.Close())
	}
	return fdCount(t)
}
