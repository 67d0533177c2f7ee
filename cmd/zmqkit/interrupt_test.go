package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Ctrl-C (SIGINT) ends each command that can wait forever, with the status
// its help gives: 0 for push, pull and pair ("Ctrl-C ends ... (status
// 0)"), 1 for bench, which then reports nothing and says "zmqkit bench:
// interrupted", as its help says. Every test interrupts a command only once it has shown
// that it runs (a "bound" line, an --events line or a message line: its
// signal handler is installed before any of them), and the wait helper's
// time-out bounds how long it may take to exit.

// push blocks while no puller is connected ("a push never drops"); Ctrl-C
// ends it with status 0. It says nothing of what it did not send.
func TestPushEndsOnSIGINT(t *testing.T) {
	t.Run("arguments", func(t *testing.T) {
		push := start(t, "push", "tcp://127.0.0.1:*", "never", "sent")
		ep := push.bound(1)
		push.interrupt()
		code, out := push.wait()
		assert.Equal(t, 0, code, "%q", push.errLines())
		assert.Empty(t, out)
		assert.Equal(t, []string{"bound " + ep}, push.errLines(), "nothing but the bound line")
	})
	t.Run("stdin", func(t *testing.T) {
		// stdin stays open, so only Ctrl-C ends push, whether it is
		// blocked on a line it cannot send or still reading.
		push := start(t, "push", "tcp://127.0.0.1:*")
		ep := push.bound(1)
		push.write("one")
		push.write("two")
		push.interrupt()
		code, out := push.wait()
		assert.Equal(t, 0, code, "%q", push.errLines())
		assert.Empty(t, out)
		assert.Equal(t, []string{"bound " + ep}, push.errLines())
	})
}

// pull runs until Ctrl-C without --count, and exits 0 on it, after
// printing what it received.
func TestPullEndsOnSIGINT(t *testing.T) {
	t.Run("bound, nothing received", func(t *testing.T) {
		pull := start(t, "pull", "@tcp://127.0.0.1:*")
		pull.bound(1)
		pull.interrupt()
		code, out := pull.wait()
		assert.Equal(t, 0, code, "%q", pull.errLines())
		assert.Empty(t, out)
	})
	t.Run("connected, after a message", func(t *testing.T) {
		push := start(t, "push", "tcp://127.0.0.1:*") // stdin left open: push keeps running
		ep := push.bound(1)
		pull := start(t, "pull", ep, "--events")
		pull.errLine(`^event connected ` + regexp.QuoteMeta(ep) + `( peer \S+)?$`)
		push.write("one")
		assert.Equal(t, "one", pull.line())
		pull.interrupt()
		code, out := pull.wait()
		assert.Equal(t, 0, code, "%q", pull.errLines())
		assert.Empty(t, out)
		code, _ = push.wait() // closes its stdin: the input ends
		assert.Equal(t, 0, code, "%q", push.errLines())
	})
}

// pair ends on Ctrl-C with status 0, whether its input is still open or
// it waits for --count messages.
func TestPairEndsOnSIGINT(t *testing.T) {
	ep := "ipc://" + filepath.Join(t.TempDir(), "pair")
	a := start(t, "pair", "@"+ep, "--count", "2")
	a.bound(1)
	b := start(t, "pair", ep, "--events")
	b.errLine(`^event connected ` + regexp.QuoteMeta(ep) + `( peer \S+)?$`)
	b.write("from b")
	assert.Equal(t, "from b", a.line())

	// b's input is open, and nothing arrives for it.
	b.interrupt()
	code, out := b.wait()
	assert.Equal(t, 0, code, "%q", b.errLines())
	assert.Empty(t, out)

	// a waits for a second message that never comes.
	a.interrupt()
	code, out = a.wait()
	assert.Equal(t, 0, code, "%q", a.errLines())
	assert.Empty(t, out)
}

// bench is a measurement, not a command that runs until stopped: Ctrl-C
// on either side ends it with status 1, one line "zmqkit bench:
// interrupted" on stderr, and no report on stdout.
func TestBenchInterrupted(t *testing.T) {
	interrupted := func(t *testing.T, p *proc) {
		t.Helper()
		p.interrupt()
		code, out := p.wait()
		assert.Equal(t, 1, code, "%q", p.errLines())
		assert.Empty(t, out, "no report")
		errs := p.errLines()
		if assert.NotEmpty(t, errs) {
			assert.Equal(t, "zmqkit bench: interrupted", errs[len(errs)-1])
		}
	}
	t.Run("thr receiver waiting for its sender", func(t *testing.T) {
		bind := start(t, "bench", "thr", "--bind", "tcp://127.0.0.1:*")
		bind.bound(1)
		interrupted(t, bind)
	})
	t.Run("lat echo server waiting for its client", func(t *testing.T) {
		bind := start(t, "bench", "lat", "--bind", "tcp://127.0.0.1:*")
		bind.bound(1)
		interrupted(t, bind)
	})
	t.Run("lat timer waiting for its echo", func(t *testing.T) {
		// The pushpull timer sends its first message down OUT to a puller
		// that never echoes it (a zmqkit pull) and waits on BACK, where a
		// push never sends: Ctrl-C ends the wait.
		out := start(t, "pull", "@tcp://127.0.0.1:*")
		outEP := out.bound(1)
		back := start(t, "push", "tcp://127.0.0.1:*") // never sends: stdin stays open
		backEP := back.bound(1)
		timer := start(t, "bench", "lat", "--pattern", "pushpull", "--connect", outEP+","+backEP)
		// Its untimed first message arrived: the timer runs, and now waits
		// for the echo.
		assert.Equal(t, "S"+strings.Repeat("x", 63), out.line())
		interrupted(t, timer)
		out.interrupt()
		code, _ := out.wait()
		assert.Equal(t, 0, code, "%q", out.errLines())
		code, _ = back.wait()
		assert.Equal(t, 0, code, "%q", back.errLines())
	})
}

// bench's help says what Ctrl-C does to it.
func TestBenchHelpSaysCtrlC(t *testing.T) {
	code, out, _ := runCmd(t, "", "bench", "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, strings.Join(strings.Fields(out), " "), `Ctrl-C stops either side at once: a run cut short measured nothing, so bench then reports nothing, prints "zmqkit bench: interrupted" on stderr and exits with status 1.`)
}
