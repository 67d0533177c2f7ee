package clisuite

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIGINT ends each long-running command with its documented status, once
// the process has shown that it runs.
func TestSIGINT(t *testing.T) {
	t.Run("sub after a message", func(t *testing.T) {
		sub := zk(t, opts{}, "sub", "@"+localAny)
		ep := sub.bound(0)
		_, errs, code := run(t, opts{}, "pub", ">"+ep, "--wait-subscribers", "1", "first")
		require.Equal(t, 0, code, errs)
		sub.waitStdoutLines(1)
		assert.Equal(t, 0, sub.interrupt())
		assert.Equal(t, []string{"1000 text first"}, sub.stdout())
	})
	t.Run("sub connecting, events shown", func(t *testing.T) {
		sub := zk(t, opts{}, "sub", "tcp://127.0.0.1:1", "--events")
		sub.waitStderr(`^event `)
		assert.Equal(t, 0, sub.interrupt())
	})
	t.Run("pub waiting for subscribers sends nothing", func(t *testing.T) {
		pub := zk(t, opts{}, "pub", localAny, "--wait-subscribers", "1", "never")
		pub.bound(0)
		assert.Equal(t, 0, pub.interrupt())
		assert.Empty(t, pub.stdout())
	})
	t.Run("pub reading stdin", func(t *testing.T) {
		pub := zk(t, opts{keepStdin: true}, "pub", localAny)
		pub.bound(0)
		assert.Equal(t, 0, pub.interrupt())
	})
	t.Run("rep", func(t *testing.T) {
		rep := zk(t, opts{}, "rep", localAny)
		rep.bound(0)
		assert.Equal(t, 0, rep.interrupt())
	})
	t.Run("req before a reply", func(t *testing.T) {
		req := zk(t, opts{}, "req", "@"+localAny, "hello", "--timeout", "1m")
		req.bound(0)
		assert.Equal(t, 1, req.interrupt(), "req exits 1 on Ctrl-C before a reply")
		assert.Empty(t, req.stdout())
	})
	t.Run("push waiting for a puller", func(t *testing.T) {
		push := zk(t, opts{keepStdin: true}, "push", localAny)
		push.bound(0)
		assert.Equal(t, 0, push.interrupt())
	})
	t.Run("pull", func(t *testing.T) {
		pull := zk(t, opts{}, "pull", "@"+localAny)
		pull.bound(0)
		assert.Equal(t, 0, pull.interrupt())
	})
	t.Run("pair", func(t *testing.T) {
		pair := zk(t, opts{keepStdin: true}, "pair", "@"+localAny)
		pair.bound(0)
		assert.Equal(t, 0, pair.interrupt())
	})
	t.Run("proxy prints what it moved", func(t *testing.T) {
		for _, kind := range []string{"forwarder", "queue", "streamer"} {
			px := zk(t, opts{}, "proxy", kind, localAny, localAny)
			px.bound(1)
			assert.Equal(t, 0, px.interrupt(), kind)
			st := stats(px)
			assert.Equal(t, []string{"0", "0", "0"}, st["front->back"], "%s: %q", kind, px.stderr())
			if kind != "streamer" {
				assert.Equal(t, []string{"0", "0", "0"}, st["back->front"], "%s: %q", kind, px.stderr())
			}
		}
	})
	t.Run("bench thr --bind is interrupted", func(t *testing.T) {
		b := zk(t, opts{}, "bench", "thr", "--bind", localAny)
		b.bound(0)
		assert.Equal(t, 1, b.interrupt())
		assert.Empty(t, b.stdout(), "no report")
		assert.Contains(t, b.stderr(), "zmqkit bench: interrupted")
	})
	t.Run("bench lat --bind is interrupted", func(t *testing.T) {
		b := zk(t, opts{}, "bench", "lat", "--bind", localAny, "--json")
		b.bound(0)
		assert.Equal(t, 1, b.interrupt())
		assert.Empty(t, b.stdout(), "no report")
		assert.Contains(t, b.stderr(), "zmqkit bench: interrupted")
	})
	t.Run("bench lat --connect mid-run is interrupted", func(t *testing.T) {
		// an echo side, then a timing side with many round trips, cut short
		// once it has shown it runs (its events line)
		b := zk(t, opts{}, "bench", "lat", "--bind", localAny)
		c := zk(t, opts{}, "bench", "lat", "--connect", b.bound(0), "--count", "100000000", "--events")
		c.waitStderr(`^event handshake succeeded`)
		assert.Equal(t, 1, c.interrupt())
		assert.Empty(t, c.stdout(), "no report")
		assert.Contains(t, c.stderr(), "zmqkit bench: interrupted")
	})
}

// stdout carries only messages and results: a bound line goes to stderr.
func TestBoundLineOnStderr(t *testing.T) {
	push := zk(t, opts{keepStdin: true}, "push", "tcp://127.0.0.1:*,"+"@tcp://127.0.0.1:*")
	a, b := push.bound(0), push.bound(1)
	assert.NotEqual(t, a, b)
	assert.Regexp(t, regexp.MustCompile(`^tcp://127\.0\.0\.1:\d+$`), a)
	for _, l := range push.stdout() {
		assert.False(t, strings.HasPrefix(l, "bound"), l)
	}
	assert.Equal(t, 0, push.interrupt())
}
