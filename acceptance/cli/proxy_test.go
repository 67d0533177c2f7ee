package clisuite

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var statsRx = regexp.MustCompile(`^(front->back|back->front) received (\d+) sent (\d+) dropped (\d+)$`)

// stats returns the proxy's "DIR received N sent N dropped N" lines by direction.
func stats(p *proc) map[string][]string {
	m := map[string][]string{}
	for _, l := range p.stderr() {
		if s := statsRx.FindStringSubmatch(l); s != nil {
			m[s[1]] = s[2:]
		}
	}
	return m
}

// forwarder: a pyzmq publisher at the front, a zmqkit sub and a pyzmq SUB at
// the back; then zmqkit pub --wait-subscribers through it.
func TestProxyForwarder(t *testing.T) {
	px := zk(t, opts{}, "proxy", "forwarder", localAny, localAny)
	front, back := px.bound(0), px.bound(1)

	sub := zk(t, opts{}, "sub", back, "--count", "1", "--msgid", "1000")
	pub := zk(t, opts{}, "pub", ">"+front, "--wait-subscribers", "1", "via forwarder")
	require.Equal(t, 0, pub.wait())
	require.Equal(t, 0, sub.wait())
	assert.Equal(t, []string{"1000 text via forwarder"}, sub.stdout())

	if pyzmqError == "" {
		// pyzmq publisher (repeating until told to stop) → forwarder → zmqkit sub
		ppub := py(t, opts{keepStdin: true}, "pub", front, "1000 text from python")
		sub2 := zk(t, opts{}, "sub", back, "--count", "1")
		require.Equal(t, 0, sub2.wait())
		assert.Equal(t, []string{"1000 text from python"}, sub2.stdout())
		ppub.stdin.Close()
		require.Equal(t, 0, ppub.wait())
	}
	assert.Equal(t, 0, px.interrupt())
	st := stats(px)
	assert.Contains(t, st, "front->back", "stats: %q", px.stderr())
	assert.Contains(t, st, "back->front", "stats: %q", px.stderr())
}

// queue: zmqkit req → queue → a zmqkit rep worker (--exec tr) and a pyzmq REP worker.
func TestProxyQueue(t *testing.T) {
	px := zk(t, opts{}, "proxy", "queue", localAny, localAny, "--events")
	front, back := px.bound(0), px.bound(1)
	w1 := zk(t, opts{}, "rep", ">"+back, "--events", "--exec", "tr", "a-z", "A-Z")
	w1.waitStderr(`^event handshake succeeded`)
	out, errs, code := run(t, opts{}, "req", front, "one", "two")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "ONE\nTWO\n", out)

	if pyzmqError == "" {
		w2 := py(t, opts{}, "rep", back, "2")
		// both workers are connected once the proxy has seen two handshakes on its back
		port := back[strings.LastIndex(back, ":"):]
		px.waitFor("two workers' handshakes", func() bool {
			n := 0
			for _, l := range px.stderr() {
				if strings.HasPrefix(l, "event handshake succeeded") && strings.Contains(l, port) {
					n++
				}
			}
			return n >= 2
		})
		c := py(t, opts{}, "req", front, "x", "y", "z", "w")
		require.Equal(t, 0, c.wait())
		got := pyFrames(t, c.stdout())
		assert.Equal(t, [][]string{{"X"}, {"Y"}, {"Z"}, {"W"}}, got, "both workers upper-case")
		require.Equal(t, 0, w2.wait())
		assert.Len(t, w2.stdout(), 2, "requests are dealt to both workers in turn")
	}
	assert.Equal(t, 0, w1.interrupt())
	assert.Equal(t, 0, px.interrupt())
	st := stats(px)
	require.Contains(t, st, "front->back", "stats: %q", px.stderr())
	require.Contains(t, st, "back->front")
	if pyzmqError == "" {
		assert.Equal(t, []string{"6", "6", "0"}, st["front->back"])
		assert.Equal(t, []string{"6", "6", "0"}, st["back->front"])
	}
}

// streamer: push → streamer → pull and a pyzmq PULL, with --capture watched by sub --raw.
func TestProxyStreamerCapture(t *testing.T) {
	px := zk(t, opts{}, "proxy", "streamer", localAny, localAny, "--capture", localAny)
	front, back, capture := px.bound(0), px.bound(1), px.bound(2)
	tap := zk(t, opts{}, "sub", capture, "--raw", "--count", "3", "--events")
	tap.waitStderr(`^event handshake succeeded`)
	pull := zk(t, opts{}, "pull", back, "--count", "3")
	_, errs, code := run(t, opts{stdin: str("1\n2\n3\n")}, "push", ">"+front)
	require.Equal(t, 0, code, errs)
	require.Equal(t, 0, pull.wait())
	assert.Equal(t, []string{"1", "2", "3"}, pull.stdout())
	require.Equal(t, 0, tap.wait())
	got := tap.stdout()
	sort.Strings(got)
	assert.Equal(t, []string{"1", "2", "3"}, got)

	if pyzmqError == "" {
		pp := py(t, opts{}, "pull", back, "2")
		pu := py(t, opts{}, "push", front, "p1", "p2")
		require.Equal(t, 0, pp.wait())
		require.Equal(t, 0, pu.wait())
		assert.Equal(t, [][]string{{"p1"}, {"p2"}}, pyFrames(t, pp.stdout()))
	}
	assert.Equal(t, 0, px.signal(15), "proxy on SIGTERM")
	assert.Contains(t, stats(px), "front->back", "stats: %q", px.stderr())
}
