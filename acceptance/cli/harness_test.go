package clisuite

import (
	"bufio"
	"encoding/hex"
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
)

// Paths and switches, set by TestMain.
var (
	zmqkitBin  string
	python     = "/usr/bin/python3"
	pyzmqError string // non-empty: pyzmq is not usable, tests needing it skip
	workDir    string
)

// deadline is how long any single wait may take: generous, because the
// machine is shared and slow; no test relies on anything being fast.
const deadline = 20 * time.Second

func TestMain(m *testing.M) {
	repo := os.Getenv("ZMQKIT_REPO")
	if repo == "" {
		repo = filepath.Join("..", "..") // this checkout
	}
	dir, err := os.MkdirTemp("", "zmqkit-clisuite-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	zmqkitBin = filepath.Join(dir, "zmqkit")
	build := exec.Command("go", "build", "-o", zmqkitBin, "github.com/zmqkit/zmqkit/cmd/zmqkit")
	build.Dir = repo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building zmqkit:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if out, err := exec.Command(python, "-c", "import zmq, zmq.auth, zmq.auth.thread").CombinedOutput(); err != nil {
		pyzmqError = fmt.Sprintf("%s with pyzmq not usable: %v %s", python, err, out)
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "CI=true and "+pyzmqError)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needPy(t *testing.T) {
	t.Helper()
	if pyzmqError != "" {
		t.Skip(pyzmqError)
	}
}

// proc is a running process whose stdout and stderr are collected line by line.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu       sync.Mutex
	out, err []string
	done     chan struct{}
	code     int
}

type opts struct {
	stdin     *string // nil: no stdin (/dev/null)
	keepStdin bool    // keep a pipe open (write with p.stdin)
	env       []string
	dir       string
}

func str(s string) *string { return &s }

func startCmd(t *testing.T, o opts, name string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Dir = o.dir
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{})}
	var stdin io.WriteCloser
	if o.stdin != nil || o.keepStdin {
		w, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdin = w
		p.stdin = w
	}
	so, err := cmd.StdoutPipe()
	require.NoError(t, err)
	se, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "starting %s", name)
	var wg sync.WaitGroup
	wg.Add(2)
	collect := func(r io.Reader, dst *[]string) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			p.mu.Lock()
			*dst = append(*dst, sc.Text())
			p.mu.Unlock()
		}
	}
	go collect(so, &p.out)
	go collect(se, &p.err)
	if o.stdin != nil {
		go func() { io.WriteString(stdin, *o.stdin); stdin.Close() }()
	}
	go func() {
		wg.Wait()
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s\n  status %d\n  stdout: %q\n  stderr: %q", name, p.code, p.stdout(), p.stderr())
		}
	})
	return p
}

// zk starts the built zmqkit with args.
func zk(t *testing.T, o opts, args ...string) *proc {
	t.Helper()
	return startCmd(t, o, "zmqkit "+strings.Join(args, " "), append([]string{zmqkitBin}, args...)...)
}

// py starts the pyzmq peer in mode (see pyPeer).
func py(t *testing.T, o opts, args ...string) *proc {
	t.Helper()
	needPy(t)
	return startCmd(t, o, "pyzmq "+strings.Join(args, " "), append([]string{python, "-u", "-c", pyPeer}, args...)...)
}

func (p *proc) stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

func (p *proc) stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.err...)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls until cond holds, the process ends (then one last check),
// or the deadline passes; it fails the test in the last two cases.
func (p *proc) waitFor(what string, cond func() bool) {
	p.t.Helper()
	end := time.Now().Add(deadline)
	for {
		if cond() {
			return
		}
		if p.exited() {
			if cond() {
				return
			}
			p.t.Fatalf("%s ended (status %d) before %s\n  stdout: %q\n  stderr: %q", p.name, p.code, what, p.stdout(), p.stderr())
		}
		if time.Now().After(end) {
			p.t.Fatalf("%s: no %s within %s\n  stdout: %q\n  stderr: %q", p.name, what, deadline, p.stdout(), p.stderr())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStderr waits for a stderr line matching re and returns its submatches.
func (p *proc) waitStderr(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	p.waitFor("stderr line /"+re+"/", func() bool {
		for _, l := range p.stderr() {
			if m = rx.FindStringSubmatch(l); m != nil {
				return true
			}
		}
		return false
	})
	return m
}

// waitStdoutLines waits until stdout has at least n lines.
func (p *proc) waitStdoutLines(n int) []string {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d stdout lines", n), func() bool { return len(p.stdout()) >= n })
	return p.stdout()
}

// bound waits for the i-th (0-based) "bound ENDPOINT" line on stderr and
// returns the endpoint, with a wildcard host made 127.0.0.1.
func (p *proc) bound(i int) string {
	p.t.Helper()
	rx := regexp.MustCompile(`^bound (\S+)$`)
	var ep string
	p.waitFor(fmt.Sprintf("bound line #%d", i+1), func() bool {
		n := 0
		for _, l := range p.stderr() {
			if m := rx.FindStringSubmatch(l); m != nil {
				if n == i {
					ep = m[1]
					return true
				}
				n++
			}
		}
		return false
	})
	ep = strings.Replace(ep, "://0.0.0.0:", "://127.0.0.1:", 1)
	ep = strings.Replace(ep, "://*:", "://127.0.0.1:", 1)
	return ep
}

// wait waits for the process to end and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(deadline):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s did not end within %s\n  stdout: %q\n  stderr: %q", p.name, deadline, p.stdout(), p.stderr())
		return -1
	}
}

// interrupt sends SIGINT and returns the exit status.
func (p *proc) interrupt() int {
	p.t.Helper()
	return p.signal(syscall.SIGINT)
}

func (p *proc) signal(sig syscall.Signal) int {
	p.t.Helper()
	require.False(p.t, p.exited(), "%s ended before the signal: status %d, stderr %q", p.name, p.code, p.stderr())
	require.NoError(p.t, p.cmd.Process.Signal(sig))
	return p.wait()
}

// run runs zmqkit to the end and returns stdout, stderr and status.
func run(t *testing.T, o opts, args ...string) (string, string, int) {
	t.Helper()
	p := zk(t, o, args...)
	code := p.wait()
	return joinLines(p.stdout()), joinLines(p.stderr()), code
}

func joinLines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
}

func unhex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err, "hex %q", s)
	return string(b)
}

// pyFrames decodes the pyzmq peer's output lines (frames in hex, space separated).
func pyFrames(t *testing.T, lines []string) [][]string {
	t.Helper()
	var msgs [][]string
	for _, l := range lines {
		var fr []string
		for _, h := range strings.Fields(l) {
			fr = append(fr, unhex(t, h))
		}
		msgs = append(msgs, fr)
	}
	return msgs
}

const localAny = "tcp://127.0.0.1:*"

// pyPeer is a small pyzmq program: python3 -c pyPeer MODE ENDPOINT ARGS...
// An endpoint starting with @ binds (reported on stderr as "bound EP"),
// otherwise it connects. Received messages are printed on stdout, one line
// each, frames in hex separated by spaces. CURVE from the environment:
// PYZ_SERVER_SECRET (+ PYZ_ALLOW dir) makes a server, PYZ_CLIENT_SECRET +
// PYZ_SERVER_PUBLIC a client.
const pyPeer = `
import os, sys, zmq, zmq.auth
from zmq.auth.thread import ThreadAuthenticator
def err(*a): print(*a, file=sys.stderr, flush=True)
def show(frames): print(' '.join(f.hex() for f in frames), flush=True)
def arg(s): return bytes.fromhex(s[4:]) if s.startswith('hex:') else s.encode()
ctx = zmq.Context.instance()
mode = sys.argv[1]
if mode == 'loadcert':
    pub, sec = zmq.auth.load_certificate(sys.argv[2])
    print(pub.decode(), sec.decode() if sec else 'None', flush=True); sys.exit(0)
if mode == 'mkcert':
    pubf, secf = zmq.auth.create_certificates(sys.argv[2], sys.argv[3])
    os.chmod(secf, 0o600)
    print(zmq.auth.load_certificate(pubf)[0].decode(), flush=True); sys.exit(0)
ep = sys.argv[2]; rest = sys.argv[3:]
kind = {'sub': zmq.SUB, 'xpub': zmq.XPUB, 'pub': zmq.PUB, 'req': zmq.REQ, 'rep': zmq.REP,
        'push': zmq.PUSH, 'pull': zmq.PULL, 'pair': zmq.PAIR}[mode]
s = ctx.socket(kind)
s.linger = 0 if mode in ('sub', 'pull') else 5000
s.rcvtimeo = 20000
if os.environ.get('PYZ_SERVER_SECRET'):
    global auth
    auth = ThreadAuthenticator(ctx); auth.start()
    auth.configure_curve(domain='*', location=os.environ['PYZ_ALLOW'])
    pub, sec = zmq.auth.load_certificate(os.environ['PYZ_SERVER_SECRET'])
    s.curve_publickey, s.curve_secretkey, s.curve_server = pub, sec, True
if os.environ.get('PYZ_CLIENT_SECRET'):
    pub, sec = zmq.auth.load_certificate(os.environ['PYZ_CLIENT_SECRET'])
    s.curve_publickey, s.curve_secretkey = pub, sec
    s.curve_serverkey = zmq.auth.load_certificate(os.environ['PYZ_SERVER_PUBLIC'])[0]
if ep.startswith('@'):
    s.bind(ep[1:]); err('bound', s.last_endpoint.decode())
else:
    s.connect(ep); err('connected', ep)
if mode == 'sub':
    # sub EP COUNT [PREFIX]
    s.setsockopt(zmq.SUBSCRIBE, arg(rest[1]) if len(rest) > 1 else b'')
    for _ in range(int(rest[0])): show(s.recv_multipart())
elif mode == 'xpub':
    # xpub EP MSG...: wait for a subscription, then send each message
    sub = s.recv(); err('subscription', sub.hex())
    for m in rest: s.send(arg(m))
elif mode == 'pub':
    # pub EP MSG...: send the messages again and again until stdin closes
    import threading
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        for m in rest: s.send(arg(m))
        stop.wait(0.05)
elif mode == 'req':
    for m in rest:
        s.send(arg(m)); show(s.recv_multipart())
elif mode == 'rep':
    # rep EP COUNT: reply with the request upper-cased
    for _ in range(int(rest[0])):
        m = s.recv_multipart(); show(m); s.send_multipart([f.upper() for f in m])
elif mode == 'push':
    for m in rest: s.send(arg(m))
elif mode == 'pull':
    for _ in range(int(rest[0])): show(s.recv_multipart())
elif mode == 'pair':
    # pair EP COUNT MSG...: send the messages, print COUNT received
    for m in rest[1:]: s.send(arg(m))
    for _ in range(int(rest[0])): show(s.recv_multipart())
s.close()
if 'auth' in globals(): auth.stop()
ctx.term()
`
