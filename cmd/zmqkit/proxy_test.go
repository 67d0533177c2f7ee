package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

// startProxy runs "zmqkit proxy KIND" with both ends on ephemeral tcp
// ports, and returns it with the front's and back's endpoints (and the
// capture's, when args ask for one).
func startProxy(t *testing.T, kind string, args ...string) (px *proc, eps []string) {
	t.Helper()
	px = start(t, append([]string{"proxy", kind, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"}, args...)...)
	n := 2
	for _, a := range args {
		if a == "--capture" {
			n++
		}
	}
	return px, strings.Split(px.bound(n), ",")
}

// proxyCounts are the figures a proxy prints for one direction when it
// stops.
type proxyCounts struct{ received, sent, dropped uint64 }

var proxyStatsLine = regexp.MustCompile(`^(front->back|back->front) received (\d+) sent (\d+) dropped (\d+)$`)

// stopProxy stops px with sig, checks that it exits 0, and returns what it
// printed it moved, by direction.
func stopProxy(t *testing.T, px *proc, sig func()) map[string]proxyCounts {
	t.Helper()
	sig()
	code, out := px.wait()
	require.Equal(t, 0, code, "%q", px.errLines())
	assert.Empty(t, out, "a proxy prints nothing on stdout")
	stats := map[string]proxyCounts{}
	for _, l := range px.errLines() {
		m := proxyStatsLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n := func(s string) uint64 {
			v, err := strconv.ParseUint(s, 10, 64)
			require.NoError(t, err)
			return v
		}
		stats[m[1]] = proxyCounts{n(m[2]), n(m[3]), n(m[4])}
	}
	return stats
}

// runUntilCleanup runs f in a goroutine until the test ends, then cancels
// it and checks that it stopped because of that.
func runUntilCleanup(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("stopped with %v", err)
			}
		case <-time.After(waitFor):
			t.Error("did not stop")
		}
	})
}

// A zmqkit Publisher → zmqkit proxy forwarder → a zmqkit Subscriber: the
// subscription goes upstream through the proxy (the Publisher's
// WaitForSubscribers sees it), every message comes down, in order, and
// the proxy counts both.
func TestProxyForwarder(t *testing.T) {
	px, eps := startProxy(t, "forwarder")
	zctx := newTestContext(t)
	ctx := testCtx(t)
	sub, err := zmqkit.NewSubscriber(eps[1], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	pub, err := zmqkit.NewPublisher(">"+eps[0], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	require.NoError(t, pub.WaitForSubscribers(ctx, 1), "the subscription never came through the proxy")

	const n = 100
	for i := 0; i < n; i++ {
		require.NoError(t, pub.Publish(ctx, fmt.Sprintf("update %d", i)))
	}
	for i := 0; i < n; i++ {
		m, err := sub.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("update %d", i), m.Text())
	}

	stats := stopProxy(t, px, px.interrupt)
	assert.Equal(t, proxyCounts{n, n, 0}, stats["front->back"])
	up := stats["back->front"]
	assert.GreaterOrEqual(t, up.received, uint64(1), "the subscription went upstream")
	assert.Equal(t, up.received, up.sent)
}

// zmqkit RRClients → zmqkit proxy queue → two zmqkit RRServers connected
// to its back as workers: every request reaches a worker and every reply
// its own client, and the proxy counts requests and replies.
func TestProxyQueue(t *testing.T) {
	px, eps := startProxy(t, "queue")
	zctx := newTestContext(t)
	ctx := testCtx(t)
	for w := 0; w < 2; w++ {
		srv, err := zmqkit.NewRRServer(">"+eps[1], func(_ context.Context, req []byte) ([]byte, error) {
			return []byte(strings.ToUpper(string(req))), nil
		}, zmqkit.WithZMQContext(zctx))
		require.NoError(t, err)
		runUntilCleanup(t, srv.Run)
	}
	const clients, each = 4, 25
	errc := make(chan error, clients)
	for c := 0; c < clients; c++ {
		cli, err := zmqkit.NewRRClient(eps[0], zmqkit.WithZMQContext(zctx))
		require.NoError(t, err)
		go func() {
			for i := 0; i < each; i++ {
				req := fmt.Sprintf("request %d from client %d", i, c)
				reply, err := cli.Request(ctx, []byte(req))
				if err != nil {
					errc <- err
					return
				}
				if string(reply) != strings.ToUpper(req) {
					errc <- fmt.Errorf("%q got the reply %q", req, reply)
					return
				}
			}
			errc <- nil
		}()
	}
	for c := 0; c < clients; c++ {
		require.NoError(t, <-errc)
	}

	stats := stopProxy(t, px, px.interrupt)
	assert.Equal(t, proxyCounts{clients * each, clients * each, 0}, stats["front->back"], "requests")
	assert.Equal(t, proxyCounts{clients * each, clients * each, 0}, stats["back->front"], "replies")
}

// A zmqkit PPPusher → zmqkit proxy streamer → a zmqkit PPPuller: none lost,
// in order; SIGTERM stops the proxy as Ctrl-C does, and a streamer has one
// direction only.
func TestProxyStreamer(t *testing.T) {
	px, eps := startProxy(t, "streamer")
	zctx := newTestContext(t)
	ctx := testCtx(t)
	pull, err := zmqkit.NewPPPuller(eps[1], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	push, err := zmqkit.NewPPPusher(">"+eps[0], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	const n = 1000
	go func() {
		for i := 0; i < n; i++ {
			if err := push.Push(ctx, []byte(fmt.Sprintf("task %d", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		msg, err := pull.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("task %d", i), string(msg))
	}

	stats := stopProxy(t, px, px.terminate)
	assert.Equal(t, map[string]proxyCounts{"front->back": {n, n, 0}}, stats)
}

// proxy --capture publishes a copy of each message, frames as they are,
// both ways: through a queue, the request and then its reply.
func TestProxyCapture(t *testing.T) {
	px, eps := startProxy(t, "queue", "--capture", "tcp://127.0.0.1:*")
	require.Len(t, eps, 3)
	zctx := newTestContext(t)
	ctx := testCtx(t)
	srv, err := zmqkit.NewRRServer(">"+eps[1], func(_ context.Context, req []byte) ([]byte, error) {
		return []byte(strings.ToUpper(string(req))), nil
	}, zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	runUntilCleanup(t, srv.Run)
	cli, err := zmqkit.NewRRClient(eps[0], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)
	tap, err := zmqkit.NewSubscriber(eps[2], zmqkit.WithZMQContext(zctx))
	require.NoError(t, err)

	// Probe requests until the tap sees one: its subscription has then
	// reached the capture.
	probes := 0
	for seen := false; !seen; {
		reply, err := cli.Request(ctx, []byte("probe"))
		require.NoError(t, err)
		require.Equal(t, "PROBE", string(reply))
		probes++
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		_, err = tap.ReceiveFrames(rctx)
		cancel()
		seen = err == nil
	}
	reply, err := cli.Request(ctx, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "HELLO", string(reply))

	// The request, then its reply, each with its routing envelope before
	// the body.
	var got []string
	for len(got) < 2 {
		frames, err := tap.ReceiveFrames(ctx)
		require.NoError(t, err)
		body := string(frames[len(frames)-1])
		if body == "probe" || body == "PROBE" {
			continue
		}
		assert.Greater(t, len(frames), 1, "the envelope is captured too")
		got = append(got, body)
	}
	assert.Equal(t, []string{"hello", "HELLO"}, got)

	stats := stopProxy(t, px, px.interrupt)
	moved := uint64(probes + 1)
	assert.Equal(t, proxyCounts{moved, moved, 0}, stats["front->back"])
	assert.Equal(t, proxyCounts{moved, moved, 0}, stats["back->front"])
}
