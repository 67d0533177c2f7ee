package faultsuite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/zmqkit/zmqkit"
)

// pythonPath is Debian's interpreter with python3-zmq.
const pythonPath = "/usr/bin/python3"

// closeBound is how long any Close (object or Context) may take: the brief's
// "promptly". The default linger is 200 ms; the listener wait is bounded.
const closeBound = 2 * time.Second

// slack is what a blocking call may overrun its ctx by on a shared,
// 2-core machine under -race before we call it "not prompt".
const slack = 1500 * time.Millisecond

// TestMain makes the process-wide default Context up front, so that its
// reactor goroutine is part of every test's goroutine baseline.
func TestMain(m *testing.M) {
	if _, err := zmqkit.DefaultContext(); err != nil {
		fmt.Fprintln(os.Stderr, "DefaultContext:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// leakCheck must be the first call of a test: it snapshots the goroutines
// now and, when the test and all its other cleanups are done, requires
// that no new goroutine is left.
func leakCheck(t *testing.T) {
	t.Helper()
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ign)
	})
}

// fdCount is the number of open descriptors of this process.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents) - 1 // ReadDir's own descriptor
}

// fdList renders /proc/self/fd's targets, for a failure message.
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "%s->%s ", e.Name(), l)
	}
	return b.String()
}

// requireFDsBack waits (bounded) until the descriptor count is back to base.
func requireFDsBack(t testing.TB, base int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := fdCount(t)
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: descriptors did not return to baseline: %d now, %d before (+%d)\n%s", what, n, base, n-base, fdList())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newZCtx makes a private zmqkit Context, closed (bounded) at cleanup.
func newZCtx(t testing.TB, opts ...zmqkit.ContextOption) *zmqkit.Context {
	t.Helper()
	zc, err := zmqkit.NewContext(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { closeWithin(t, "Context.Close", closeBound, zc.Close) })
	return zc
}

// closeWithin runs f (a Close) and fails the test if it takes longer than d
// or returns an error. A hung Close is left behind (and reported).
func closeWithin(t testing.TB, what string, d time.Duration, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s returned %v", what, err)
		}
		if el := time.Since(start); el > d {
			t.Errorf("%s took %v, more than %v", what, el, d)
		}
	case <-time.After(d + 10*time.Second):
		t.Errorf("%s did not return within %v (hung)\n%s", what, d+10*time.Second, goroutines())
	}
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// within runs f in a goroutine and requires it to return within d.
// It returns f's error. On a hang it fails the test and returns an error.
func within(t testing.TB, what string, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Errorf("%s did not return within %v", what, d)
		return errors.New("faultsuite: hung")
	}
}

// eventually polls cond every 5 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("condition not met within %v: %s", d, what)
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

var seq atomic.Uint64

// inprocEP is a fresh inproc name.
func inprocEP(tag string) string {
	return fmt.Sprintf("inproc://fs-%s-%d-%d", tag, os.Getpid(), seq.Add(1))
}

// ipcEP is a fresh ipc path in a short temporary directory (sun_path is 108 bytes).
func ipcEP(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "fs")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return "ipc://" + filepath.Join(dir, fmt.Sprintf("s%d", seq.Add(1)))
}

// bindEP is the endpoint a binding side asks for on transport tr.
func bindEP(t testing.TB, tr string) string {
	switch tr {
	case "tcp":
		return "tcp://127.0.0.1:*"
	case "ipc":
		return ipcEP(t)
	case "inproc":
		return inprocEP(t.Name())
	}
	panic("unknown transport " + tr)
}

// isCtxErr reports an error matching a ctx's end.
func isCtxErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// ---------------------------------------------------------------------------
// Python peers

// pyScript is every role a Python peer can play. It prints "ready" once its
// socket is bound or connected (with "port N" first for a bound tcp port),
// and reports progress on stdout.
const pyScript = `
import sys, time, os, zmq
role, ep = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
def out(*a):
    print(*a, flush=True)
def bind(s, ep):
    if ep.startswith("tcp://") and ep.endswith(":*"):
        port = s.bind_to_random_port(ep[:-2])
        out("port", port)
    else:
        s.bind(ep)
if role in ("sub", "pull"):       # connects to a Publisher or a PPPusher, counts
    if role == "sub":
        s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b"")
    else:
        s = ctx.socket(zmq.PULL)
    s.connect(ep); out("ready")
    n = 0
    while True:
        s.recv_multipart(); n += 1
        if n == 1 or n % 50 == 0: out("got", n)
elif role in ("pub", "push"):     # binds, publishes or pushes forever (a PUSH blocks at the mark)
    s = ctx.socket(zmq.PUB if role == "pub" else zmq.PUSH); bind(s, ep); out("ready")
    body, pause = (b"1000 text hello %d", 0.001) if role == "pub" else (b"task %d", 0.0005)
    i = 0
    while True:
        s.send(body % i); i += 1
        if i % 100 == 0: out("sent", i)
        time.sleep(pause)
elif role in ("req", "paircli"):  # connects a REQ (to an RRServer) or a PAIR, requests forever
    s = ctx.socket(zmq.REQ if role == "req" else zmq.PAIR); s.connect(ep); out("ready")
    tag = b"req" if role == "req" else b"msg"
    i = 0
    while True:
        s.send(b"%s %d" % (tag, i)); s.recv(); i += 1
        if i == 1 or i % 20 == 0: out("rep", i)
elif role in ("rep", "pairsrv"):  # binds a REP or a PAIR, echoes; "hang" requests are never answered
    s = ctx.socket(zmq.REP if role == "rep" else zmq.PAIR); bind(s, ep); out("ready")
    while True:
        m = s.recv()
        if m.startswith(b"hang"):
            out("hanging")
            time.sleep(3600)
        s.send(m)
elif role == "rep-all":           # binds, echoes everything
    s = ctx.socket(zmq.REP); bind(s, ep); out("ready")
    while True:
        s.send(s.recv())
else:
    out("unknown role", role); sys.exit(2)
`

var pyOnce sync.Once
var pyErr error

func requirePython(t testing.TB) {
	t.Helper()
	pyOnce.Do(func() {
		out, err := exec.Command(pythonPath, "-c", "import zmq").CombinedOutput()
		if err != nil {
			pyErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if pyErr != nil {
		t.Fatalf("pyzmq is required: %v", pyErr)
	}
}

type pyPeer struct {
	t     testing.TB
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	last  string
	gone  chan struct{}
	port  int
}

// startPy starts a Python peer playing role on ep and waits for "ready".
// Cleanup resumes it (SIGCONT), kills it and reaps it.
func startPy(t testing.TB, role, ep string) *pyPeer {
	t.Helper()
	requirePython(t)
	cmd := exec.Command(pythonPath, "-u", "-c", pyScript, role, ep)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &pyPeer{t: t, cmd: cmd, lines: make(chan string, 4096), gone: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.last = sc.Text()
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default: // nobody reads progress any more
			}
		}
	}()
	go func() {
		defer wg.Done()
		b, _ := io.ReadAll(stderr)
		if s := strings.TrimSpace(string(b)); s != "" && !strings.Contains(s, "KeyboardInterrupt") {
			t.Logf("python %s stderr: %s", role, s)
		}
	}()
	go func() {
		wg.Wait()
		_ = cmd.Wait()
		close(p.gone)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		select {
		case <-p.gone:
		case <-time.After(10 * time.Second):
			t.Errorf("python peer %s not reaped", role)
		}
	})
	for {
		l := p.line(t, 20*time.Second)
		if strings.HasPrefix(l, "port ") {
			p.port, _ = strconv.Atoi(strings.TrimPrefix(l, "port "))
			continue
		}
		require.Equal(t, "ready", l, "python peer %s did not start", role)
		return p
	}
}

func (p *pyPeer) line(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("python peer exited early")
		}
		return l
	case <-time.After(d):
		t.Fatalf("no line from python peer within %v", d)
	}
	return ""
}

// waitLine waits for a line starting with prefix.
func (p *pyPeer) waitLine(t testing.TB, prefix string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := p.line(t, time.Until(deadline))
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

func (p *pyPeer) tcpEP() string { return fmt.Sprintf("tcp://127.0.0.1:%d", p.port) }

func (p *pyPeer) kill(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("killed python peer not reaped")
	}
}

func (p *pyPeer) stop(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
	// Wait until the kernel says it is stopped.
	eventually(t, 5*time.Second, "python peer stopped", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return false
		}
		f := strings.Fields(string(b))
		// comm may contain spaces only in odd cases; python3 does not.
		return len(f) > 2 && f[2] == "T"
	})
}

func (p *pyPeer) cont() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// ---------------------------------------------------------------------------

func randBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

func echo(_ context.Context, req []byte) ([]byte, error) { return req, nil }

// requester is what RRClient and PairClient share.
type requester interface {
	Request(ctx context.Context, msg []byte) ([]byte, error)
	Close() error
}

// server is what RRServer and PairServer share.
type server interface {
	Run(ctx context.Context) error
	Close() error
}

// serveBG starts srv's Run in the background; the returned stop closes srv
// (within closeBound) and requires Run to return ErrClosed. name is the
// type's name, for messages.
func serveBG(t testing.TB, name string, srv server) (stop func()) {
	t.Helper()
	wait := runBG(t, name+".Run", func() error { return srv.Run(context.Background()) })
	return func() {
		t.Helper()
		closeWithin(t, name+".Close", closeBound, srv.Close)
		assert.ErrorIs(t, wait(closeBound), zmqkit.ErrClosed)
	}
}

// runUntilCancel starts run (a Run) in the background with a ctx of its
// own; the returned stop cancels that ctx and requires run to return
// context.Canceled within closeBound.
func runUntilCancel(t testing.TB, what string, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := runBG(t, what, func() error { return run(ctx) })
	t.Cleanup(cancel) // a test that stops early does not leave Run to the 20 s wait
	return func() {
		t.Helper()
		cancel()
		assert.ErrorIs(t, wait(closeBound), context.Canceled)
	}
}

// runBG runs f (a Run) in the background; the returned func waits (bounded)
// for it and returns its error.
func runBG(t testing.TB, what string, f func() error) func(d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	var once sync.Once
	var res error
	wait := func(d time.Duration) error {
		once.Do(func() {
			select {
			case res = <-done:
			case <-time.After(d):
				t.Errorf("%s did not return within %v", what, d)
				res = errors.New("faultsuite: Run hung")
			}
		})
		return res
	}
	t.Cleanup(func() { _ = wait(20 * time.Second) })
	return wait
}

// runChild runs the test named name in a child process (this test binary)
// and fails with its output if it fails or crashes.
func runChild(t *testing.T, name, caseName string) {
	t.Helper()
	args := []string{"-test.run", "^" + name + "$", "-test.count=1", "-test.timeout=10m"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FAULTSUITE_CHILD="+name, "FAULTSUITE_CASE="+caseName)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := string(out)
		if i := strings.Index(s, "\ngoroutine "); i > 0 {
			s = s[:i] + "\n[goroutine dump cut]" // the first lines say what happened
		}
		if len(s) > 4000 {
			s = s[:4000]
		}
		t.Errorf("%s (child process) failed: %v\n%s", name, err, s)
	} else if testing.Verbose() {
		t.Logf("%s", out)
	}
}
