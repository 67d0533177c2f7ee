package clisuite

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReqRepEcho(t *testing.T) {
	rep := zk(t, opts{}, "rep", localAny, "--echo")
	ep := rep.bound(0)
	out, errs, code := run(t, opts{}, "req", ep, "hello", "two words")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "hello\ntwo words\n", out)
	// requests from stdin, one per line
	out, errs, code = run(t, opts{stdin: str("a\nb\n")}, "req", ep)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "a\nb\n", out)
	assert.Equal(t, 0, rep.interrupt(), "rep on SIGINT")
}

func TestReqRepExec(t *testing.T) {
	// --exec takes the rest of the line, flags included (here a -c for sh)
	rep := zk(t, opts{}, "rep", localAny, "--events", "--exec", "tr", "a-z", "A-Z")
	ep := rep.bound(0)
	out, errs, code := run(t, opts{}, "req", ep, "hello", "world")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "HELLO\nWORLD\n", out)
	rep.waitStderr(`^event \S+ tcp://`)
	assert.Equal(t, 0, rep.interrupt())

	sh := zk(t, opts{}, "rep", localAny, "--exec", "sh", "-c", "wc -c")
	out, errs, code = run(t, opts{}, "req", sh.bound(0), "abc")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "4", strings.TrimSpace(out), "request on stdin followed by a newline")
}

// A CMD that exits non-zero makes an error reply: req exits 1, one line on stderr.
func TestReqErrorReply(t *testing.T) {
	rep := zk(t, opts{}, "rep", localAny, "--exec", "sh", "-c", "echo oops >&2; exit 3")
	out, errs, code := run(t, opts{}, "req", rep.bound(0), "x")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line on stderr: %q", errs)
	assert.True(t, strings.HasPrefix(errs, "zmqkit req:"), errs)
}

func TestReqTimeout(t *testing.T) {
	// a bound endpoint that never answers (a PULL: the REQ gets no reply)
	silent := zk(t, opts{}, "pull", "@"+localAny) // accepts the connection, never replies
	ep := silent.bound(0)
	out, errs, code := run(t, opts{}, "req", ep, "--timeout", "200ms", "hello")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "zmqkit req: no reply from "+ep+" within 200ms\n", errs)
	// and to nobody at all
	_, errs, code = run(t, opts{}, "req", "tcp://127.0.0.1:1", "--timeout", "200ms", "--retries", "1", "hello")
	assert.Equal(t, 1, code)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
	assert.Contains(t, errs, "no reply")
}

func TestPyzmqReqToRep(t *testing.T) {
	needPy(t)
	rep := zk(t, opts{}, "rep", localAny, "--exec", "tr", "a-z", "A-Z")
	c := py(t, opts{}, "req", rep.bound(0), "hello", "again")
	require.Equal(t, 0, c.wait())
	assert.Equal(t, [][]string{{"HELLO"}, {"AGAIN"}}, pyFrames(t, c.stdout()))
	assert.Equal(t, 0, rep.interrupt())
}

func TestReqToPyzmqRep(t *testing.T) {
	needPy(t)
	srv := py(t, opts{}, "rep", "@"+localAny, "2")
	ep := srv.waitStderr(`^bound (\S+)`)[1]
	out, errs, code := run(t, opts{}, "req", ep, "ping", "pong")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "PING\nPONG\n", out)
	require.Equal(t, 0, srv.wait())
}

func TestRepConcurrency(t *testing.T) {
	rep := zk(t, opts{}, "rep", localAny, "--concurrency", "4", "--exec", "cat")
	ep := rep.bound(0)
	out, errs, code := run(t, opts{}, "req", ep, "1", "2", "3")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "1\n2\n3\n", out)
}
