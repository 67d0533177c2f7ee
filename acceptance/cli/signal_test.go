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
	t.Run("req before a reply", func(t *testing.T) {
		req := zk(t, opts{}, "req", "@"+localAny, "hello", "--timeout", "1m")
		req.bound(0)
		assert.Equal(t, 1, req.interrupt(), "req exits 1 on Ctrl-C before a reply")
		assert.Empty(t, req.stdout())
	})
	// These need only have bound to show that they run; each exits 0.
	for _, c := range []struct {
		name string
		o    opts
		args []string
	}{
		{"pub reading stdin", opts{keepStdin: true}, []string{"pub", localAny}},
		{"rep", opts{}, []string{"rep", localAny}},
		{"push waiting for a puller", opts{keepStdin: true}, []string{"push", localAny}},
		{"pull", opts{}, []string{"pull", "@" + localAny}},
		{"pair", opts{keepStdin: true}, []string{"pair", "@" + localAny}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := zk(t, c.o, c.args...)
			p.bound(0)
			assert.Equal(t, 0, p.interrupt())
		})
	}
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
	for _, args := range [][]string{{"thr", "--bind", localAny}, {"lat", "--bind", localAny, "--json"}} {
		t.Run("bench "+args[0]+" --bind is interrupted", func(t *testing.T) {
			b := zk(t, opts{}, append([]string{"bench"}, args...)...)
			b.bound(0)
			assertBenchInterrupted(t, b)
		})
	}
	t.Run("bench lat --connect mid-run is interrupted", func(t *testing.T) {
		// an echo side, then a timing side with many round trips, cut short
		// once it has shown it runs (its events line)
		b := zk(t, opts{}, "bench", "lat", "--bind", localAny)
		c := zk(t, opts{}, "bench", "lat", "--connect", b.bound(0), "--count", "100000000", "--events")
		c.waitStderr(`^event handshake succeeded`)
		assertBenchInterrupted(t, c)
	})
}

// assertBenchInterrupted sends SIGINT to a running bench and checks that it
// exits 1 with no report and says it was interrupted.
func assertBenchInterrupted(t *testing.T, b *proc) {
	t.Helper()
	assert.Equal(t, 1, b.interrupt())
	assert.Empty(t, b.stdout(), "no report")
	assert.Contains(t, b.stderr(), "zmqkit bench: interrupted")
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
