package zmqkit

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pythonPath is Debian's interpreter, whose python3-zmq .ci/run installs.
const pythonPath = "/usr/bin/python3"

// requirePyzmq skips the test when pyzmq is missing, except under CI=true,
// where a missing dependency is a failure: CI must not go green by skipping.
func requirePyzmq(t testing.TB) {
	t.Helper()
	out, err := exec.Command(pythonPath, "-c", "import zmq; print(zmq.zmq_version())").CombinedOutput()
	if err == nil {
		return
	}
	msg := "pyzmq is not available (" + strings.TrimSpace(string(out)) + "): run `make deps` (apt-get install python3-zmq)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// pyPeer is a running Python script. Its stdout lines arrive on Lines; the
// script is killed, if still running, when the test ends.
type pyPeer struct {
	cmd   *exec.Cmd
	Lines chan string
	done  chan error
	stdin io.WriteCloser
}

// startPython runs script with args under pyzmq. The script should print a
// line once its sockets are ready, and exit by itself.
func startPython(t testing.TB, script string, args ...string) *pyPeer {
	t.Helper()
	requirePyzmq(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, pythonPath, append([]string{"-u", "-c", script}, args...)...)
	cmd.Stderr = &testWriter{t: t}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &pyPeer{cmd: cmd, Lines: make(chan string, 1024), done: make(chan error, 1), stdin: stdin}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		defer close(p.Lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.Lines <- sc.Text()
		}
	}()
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		<-scanDone
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		for range p.Lines {
		}
		<-waited // stderr is copied (and logged) until Wait returns
	})
	return p
}

// Line returns the script's next stdout line, failing the test if none
// comes within the test's time bound.
func (p *pyPeer) Line(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-p.Lines:
		require.True(t, ok, "python peer exited early")
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("no line from python peer")
		return ""
	}
}

// Send writes one line to the script's stdin.
func (p *pyPeer) Send(t testing.TB, line string) {
	t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(t, err)
}

// Wait waits for the script to exit and requires it to have succeeded.
func (p *pyPeer) Wait(t testing.TB) {
	t.Helper()
	for range p.Lines {
	}
	select {
	case err := <-p.done:
		require.NoError(t, err, "python peer failed")
	case <-time.After(20 * time.Second):
		t.Fatal("python peer did not exit")
	}
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("python: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
