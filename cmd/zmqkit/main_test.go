package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The tests run the zmqkit binary as a user would, built once by TestMain
// (with -race when the tests have it).
var (
	binDir  string
	binPath string
)

type buildThenRun struct{ m *testing.M }

func (b buildThenRun) Run() int {
	dir, err := os.MkdirTemp("", "zmqkit-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir, binPath = dir, filepath.Join(dir, "zmqkit")
	if err := goBuild(binPath, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return b.m.Run()
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(buildThenRun{m})
}

func goBuild(out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

// childEnv is the environment of the commands the tests run. A -race
// binary sleeps a second at exit (GORACE atexit_sleep_ms) unless told not
// to; a race it finds still fails the test (exit status 66).
func childEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// waitFor bounds every wait of a test, so that a bug fails it instead of
// hanging it.
const waitFor = 20 * time.Second

// proc is a running zmqkit command. Its stdout and stderr lines arrive on
// channels; it is killed, if still running, when the test ends.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout chan string
	stderr chan string
	exited chan struct{}

	mu      sync.Mutex
	errText []string // every stderr line, for failure messages
}

// start runs zmqkit with args, stdin a pipe the test writes to.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startBin(t, binPath, nil, args...)
}

// startIn runs zmqkit with args and stdin read from in.
func startIn(t testing.TB, in io.Reader, args ...string) *proc {
	t.Helper()
	return startBin(t, binPath, in, args...)
}

func startBin(t testing.TB, bin string, in io.Reader, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), stdout: make(chan string, 1<<15), stderr: make(chan string, 1024), exited: make(chan struct{})}
	p.cmd.Env = childEnv()
	if in != nil {
		p.cmd.Stdin = in
	} else {
		var err error
		p.stdin, err = p.cmd.StdinPipe()
		require.NoError(t, err)
	}
	outPipe, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	errPipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start(), "start zmqkit %v", args)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		defer close(p.stdout)
		sc := bufio.NewScanner(outPipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.stdout <- sc.Text()
		}
	}()
	go func() {
		defer readers.Done()
		defer close(p.stderr)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.errText = append(p.errText, sc.Text())
			p.mu.Unlock()
			select {
			case p.stderr <- sc.Text():
			default: // nobody reads stderr lines past the first ones
			}
		}
	}()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			for range p.stdout {
			}
			<-p.exited
		}
	})
	return p
}

// errLines returns what the command wrote on stderr so far.
func (p *proc) errLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errText...)
}

// bound returns the endpoints the command reports it bound ("bound EP" on
// stderr), once it has reported n of them.
func (p *proc) bound(n int) string {
	p.t.Helper()
	var eps []string
	deadline := time.After(waitFor)
	for len(eps) < n {
		select {
		case l, ok := <-p.stderr:
			require.True(p.t, ok, "zmqkit exited before binding: %q", p.errLines())
			if ep, ok := strings.CutPrefix(l, "bound "); ok {
				eps = append(eps, ep)
			}
		case <-deadline:
			p.t.Fatalf("zmqkit reported no bound endpoint: %q", p.errLines())
		}
	}
	return strings.Join(eps, ",")
}

// errLine returns the command's next stderr line that matches re, skipping
// the others.
func (p *proc) errLine(re string) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(waitFor)
	for {
		select {
		case l, ok := <-p.stderr:
			require.True(p.t, ok, "zmqkit exited before a line matching %q: %q", re, p.errLines())
			if rx.MatchString(l) {
				return l
			}
		case <-deadline:
			p.t.Fatalf("no line matching %q on zmqkit's stderr: %q", re, p.errLines())
			return ""
		}
	}
}

// line returns the command's next stdout line.
func (p *proc) line() string {
	p.t.Helper()
	select {
	case l, ok := <-p.stdout:
		require.True(p.t, ok, "zmqkit exited: %q", p.errLines())
		return l
	case <-time.After(waitFor):
		p.t.Fatalf("no output line from zmqkit: %q", p.errLines())
		return ""
	}
}

// write sends one line to the command's stdin.
func (p *proc) write(line string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.t, err)
}

// wait waits for the command to exit and returns its status and stdout
// lines not read yet.
func (p *proc) wait() (int, []string) {
	p.t.Helper()
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	var rest []string
	timeout := time.After(waitFor)
	for {
		select {
		case l, ok := <-p.stdout:
			if ok {
				rest = append(rest, l)
				continue
			}
			select {
			case <-p.exited:
			case <-timeout:
				p.t.Fatalf("zmqkit did not exit: %q", p.errLines())
			}
			return p.cmd.ProcessState.ExitCode(), rest
		case <-timeout:
			p.t.Fatalf("zmqkit did not exit: %q", p.errLines())
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C does.
func (p *proc) interrupt() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGINT))
}

// terminate sends SIGTERM, as a service manager does.
func (p *proc) terminate() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGTERM))
}

// runCmd runs zmqkit to the end and returns its status, stdout and stderr.
func runCmd(t testing.TB, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		require.NoError(t, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// pythonPath is Debian's interpreter, with python3-zmq.
const pythonPath = "/usr/bin/python3"

// requirePyzmq skips the test when pyzmq is missing, except under CI=true,
// where a missing dependency is a failure.
func requirePyzmq(t testing.TB) {
	t.Helper()
	out, err := exec.Command(pythonPath, "-c", "import zmq").CombinedOutput()
	if err == nil {
		return
	}
	msg := "pyzmq is not available (" + strings.TrimSpace(string(out)) + "): run `make deps` (apt-get install python3-zmq)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// startPython runs a pyzmq script as a proc.
func startPython(t testing.TB, script string, args ...string) *proc {
	t.Helper()
	requirePyzmq(t)
	return startBin(t, pythonPath, nil, append([]string{"-u", "-c", script}, args...)...)
}
