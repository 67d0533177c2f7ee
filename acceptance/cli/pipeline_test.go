package clisuite

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func seq(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintln(&b, i)
	}
	return b.String()
}

// seq 10000 | push; pull --count 10000: none lost, in order.
func TestPushPull10000(t *testing.T) {
	in := seq(10000)
	push := zk(t, opts{stdin: str(in)}, "push", localAny)
	ep := push.bound(0)
	out, errs, code := run(t, opts{}, "pull", ep, "--count", "10000")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, in, out)
	assert.Equal(t, 0, push.wait())
}

// pull binds ("@"), pushes connect (">") and fan in.
func TestPushPullFanIn(t *testing.T) {
	pull := zk(t, opts{}, "pull", "@"+localAny, "--count", "4")
	ep := pull.bound(0)
	out, errs, code := run(t, opts{}, "push", ">"+ep, "--count", "3", "task")
	require.Equal(t, 0, code, errs+out)
	_, errs, code = run(t, opts{}, "push", ">"+ep, "done")
	require.Equal(t, 0, code, errs)
	require.Equal(t, 0, pull.wait())
	assert.Equal(t, []string{"task", "task", "task", "done"}, pull.stdout())
}

func TestPushToPyzmqPull(t *testing.T) {
	needPy(t)
	push := zk(t, opts{stdin: str(seq(500))}, "push", localAny)
	pull := py(t, opts{}, "pull", push.bound(0), "500")
	require.Equal(t, 0, pull.wait())
	require.Equal(t, 0, push.wait())
	got := pyFrames(t, pull.stdout())
	require.Len(t, got, 500)
	for i, m := range got {
		require.Equal(t, []string{fmt.Sprint(i + 1)}, m)
	}
}

func TestPyzmqPushToPull(t *testing.T) {
	needPy(t)
	pull := zk(t, opts{}, "pull", "@"+localAny, "--count", "3")
	ep := pull.bound(0)
	push := py(t, opts{}, "push", ep, "a", "b c", "d")
	require.Equal(t, 0, pull.wait())
	require.Equal(t, 0, push.wait())
	assert.Equal(t, []string{"a", "b c", "d"}, pull.stdout())
}

// The README's pair walk-through: each side sends its line and prints the other's.
func TestPairBothWays(t *testing.T) {
	a := zk(t, opts{stdin: str("pong\n")}, "pair", "@"+localAny, "--count", "1")
	ep := a.bound(0)
	b := zk(t, opts{stdin: str("ping\n")}, "pair", ep, "--count", "1")
	require.Equal(t, 0, b.wait())
	require.Equal(t, 0, a.wait())
	assert.Equal(t, []string{"ping"}, a.stdout())
	assert.Equal(t, []string{"pong"}, b.stdout())
}

func TestPairWithPyzmq(t *testing.T) {
	needPy(t)
	t.Run("zmqkit binds", func(t *testing.T) {
		a := zk(t, opts{stdin: str("from zmqkit\n")}, "pair", "@"+localAny, "--count", "2")
		p := py(t, opts{}, "pair", a.bound(0), "1", "one", "two")
		require.Equal(t, 0, a.wait())
		require.Equal(t, 0, p.wait())
		assert.Equal(t, []string{"one", "two"}, a.stdout())
		assert.Equal(t, [][]string{{"from zmqkit"}}, pyFrames(t, p.stdout()))
	})
	t.Run("pyzmq binds", func(t *testing.T) {
		p := py(t, opts{}, "pair", "@"+localAny, "1", "hi")
		ep := p.waitStderr(`^bound (\S+)`)[1]
		a := zk(t, opts{stdin: str("back\n")}, "pair", ep, "--count", "1")
		require.Equal(t, 0, a.wait())
		require.Equal(t, 0, p.wait())
		assert.Equal(t, []string{"hi"}, a.stdout())
		assert.Equal(t, [][]string{{"back"}}, pyFrames(t, p.stdout()))
	})
}
