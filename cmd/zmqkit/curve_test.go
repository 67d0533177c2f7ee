package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keygenFor makes a key pair with the command and returns its public key.
func keygenFor(t *testing.T, dir, name string) string {
	t.Helper()
	code, out, errText := runCmd(t, "", "keygen", name, "--dir", dir)
	require.Equal(t, 0, code, errText)
	return strings.TrimSpace(out)
}

// keygen's files load in pyzmq, with the keys keygen printed.
func TestKeygenFilesLoadInPyzmq(t *testing.T) {
	requirePyzmq(t)
	dir := t.TempDir()
	public := keygenFor(t, dir, "server")
	py := startPython(t, `
import sys, zmq.auth
pub, sec = zmq.auth.load_certificate(sys.argv[1] + ".key_secret")
pub2, none = zmq.auth.load_certificate(sys.argv[1] + ".key")
assert none is None and pub == pub2 and len(sec) == 40
print(pub.decode())
`, filepath.Join(dir, "server"))
	assert.Equal(t, public, py.line())
	code, _ := py.wait()
	assert.Equal(t, 0, code, "%q", py.errLines())
}

// keygen's files secure a pub/sub pair: an allowed client gets the
// messages; the pub (the CURVE server) admits only the keys in its
// --curve-allow directory.
func TestCurvePubSub(t *testing.T) {
	dir := t.TempDir()
	keygenFor(t, filepath.Join(dir, "server"), "server")
	keygenFor(t, filepath.Join(dir, "clients"), "alice")
	keygenFor(t, filepath.Join(dir, "others"), "mallory")

	pub := start(t, "pub", "tcp://127.0.0.1:*",
		"--curve-server-key", filepath.Join(dir, "server", "server.key_secret"),
		"--curve-allow", filepath.Join(dir, "clients"))
	ep := pub.bound(1)
	alice := start(t, "sub", ep, "--count", "1",
		"--curve-client-key", filepath.Join(dir, "clients", "alice.key_secret"),
		"--curve-server-key", filepath.Join(dir, "server", "server.key"))
	mallory := start(t, "sub", ep,
		"--curve-client-key", filepath.Join(dir, "others", "mallory.key_secret"),
		"--curve-server-key", filepath.Join(dir, "server", "server.key"))

	writeUntil(t, pub, "secret", func() bool {
		select {
		case <-alice.exited:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	})
	code, lines := alice.wait()
	assert.Equal(t, 0, code, "%q", alice.errLines())
	assert.Equal(t, []string{"1000 text secret"}, lines)

	// mallory was refused while alice got in: her sub reports the
	// failed handshakes (the error callback) and prints no message. (That
	// report also shows her signal handler is in place: an interrupt
	// before it would kill her.)
	mallory.errLine(`^zmqkit sub: .*(?i:auth|refused|denied)`)
	mallory.interrupt()
	code, lines = mallory.wait()
	assert.Equal(t, 0, code)
	assert.Empty(t, lines)
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

// A proxy given the CURVE server flags secures both its ends: a pusher
// and a puller with an allowed key talk through a streamer.
func TestCurveProxy(t *testing.T) {
	dir := t.TempDir()
	keygenFor(t, filepath.Join(dir, "server"), "server")
	keygenFor(t, filepath.Join(dir, "clients"), "alice")
	client := []string{"--curve-client-key", filepath.Join(dir, "clients", "alice.key_secret"),
		"--curve-server-key", filepath.Join(dir, "server", "server.key")}

	proxy := start(t, "proxy", "streamer", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
		"--curve-server-key", filepath.Join(dir, "server", "server.key_secret"),
		"--curve-allow", filepath.Join(dir, "clients"))
	front, back, _ := strings.Cut(proxy.bound(2), ",")
	pull := start(t, append([]string{"pull", back, "--count", "1"}, client...)...)
	push := startIn(t, strings.NewReader("through the proxy\n"), append([]string{"push", ">" + front}, client...)...)
	code, lines := pull.wait()
	assert.Equal(t, 0, code, "%q", pull.errLines())
	assert.Equal(t, []string{"through the proxy"}, lines)
	code, _ = push.wait()
	assert.Equal(t, 0, code, "%q", push.errLines())
	proxy.interrupt()
	code, _ = proxy.wait()
	assert.Equal(t, 0, code, "%q", proxy.errLines())
	assert.Contains(t, proxy.errLines(), "front->back received 1 sent 1 dropped 0")
}

// pyzmqCerts makes CURVE certificates with pyzmq's
// zmq.auth.create_certificates, each NAME in its own directory dir/NAME,
// as a pyzmq user would.
func pyzmqCerts(t *testing.T, dir string, names ...string) {
	t.Helper()
	py := startPython(t, `
import os, sys, zmq.auth
for name in sys.argv[2:]:
    d = os.path.join(sys.argv[1], name)
    os.makedirs(d)
    zmq.auth.create_certificates(d, name)
print("ok")
`, append([]string{dir}, names...)...)
	assert.Equal(t, "ok", py.line())
	code, _ := py.wait()
	require.Equal(t, 0, code, "%q", py.errLines())
}

// Certificates pyzmq made secure a pub/sub pair (issue 13's bar): the
// server's NAME.key_secret and the client's NAME.key for the pub, the
// client's NAME.key_secret and the server's NAME.key for the sub. pyzmq
// writes secret files with the umask (0644, usually), which the command
// refuses, saying why; made private, they work.
func TestCurvePubSubPyzmqCerts(t *testing.T) {
	dir := t.TempDir()
	pyzmqCerts(t, dir, "server", "client")
	serverSecret := filepath.Join(dir, "server", "server.key_secret")
	clientSecret := filepath.Join(dir, "client", "client.key_secret")
	serverArgs := []string{"--curve-server-key", serverSecret, "--curve-allow", filepath.Join(dir, "client")}
	clientArgs := []string{"--curve-client-key", clientSecret, "--curve-server-key", filepath.Join(dir, "server", "server.key")}

	for _, f := range []string{serverSecret, clientSecret} {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		if fi.Mode().Perm()&0o077 == 0 {
			continue // a umask of 077: nothing to refuse
		}
		code, out, errText := runCmd(t, "", append([]string{"pub", "tcp://127.0.0.1:*", "hi"}, serverArgs...)...)
		if f == clientSecret {
			code, out, errText = runCmd(t, "", append([]string{"sub", "ipc://" + filepath.Join(dir, "nobody"), "--count", "1"}, clientArgs...)...)
		}
		assert.Equal(t, 1, code, errText)
		assert.Empty(t, out)
		assert.Regexp(t, `^zmqkit (pub|sub): --curve-(server|client)-key: `+regexp.QuoteMeta(f)+`: permissions 0\d+ are too open.*\(chmod 600\)\n$`, errText)
		require.NoError(t, os.Chmod(f, 0o600))
	}

	pub := start(t, append([]string{"pub", "tcp://127.0.0.1:*"}, serverArgs...)...)
	ep := pub.bound(1)
	sub := start(t, append([]string{"sub", ep, "--count", "1"}, clientArgs...)...)
	writeUntil(t, pub, "from pyzmq certificates", func() bool {
		select {
		case <-sub.exited:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	})
	code, lines := sub.wait()
	assert.Equal(t, 0, code, "%q", sub.errLines())
	assert.Equal(t, []string{"1000 text from pyzmq certificates"}, lines)
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

// A req the CURVE server refuses exits 1 with one line, which says why
// (the refusals the error callback reported are not printed one by one).
func TestCurveReqRefusedOneLine(t *testing.T) {
	dir := t.TempDir()
	keygenFor(t, filepath.Join(dir, "server"), "server")
	keygenFor(t, filepath.Join(dir, "clients"), "alice")
	keygenFor(t, filepath.Join(dir, "others"), "mallory")
	rep := start(t, "rep", "tcp://127.0.0.1:*", "--echo",
		"--curve-server-key", filepath.Join(dir, "server", "server.key_secret"),
		"--curve-allow", filepath.Join(dir, "clients"))
	ep := rep.bound(1)
	code, out, errText := runCmd(t, "", "req", ep, "--timeout", "500ms",
		"--curve-client-key", filepath.Join(dir, "others", "mallory.key_secret"),
		"--curve-server-key", filepath.Join(dir, "server", "server.key"), "let me in")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	lines := strings.Split(strings.TrimSuffix(errText, "\n"), "\n")
	require.Len(t, lines, 1, "%q", errText)
	assert.Regexp(t, `^zmqkit req: no reply from `+regexp.QuoteMeta(ep)+` within 500ms \(last problem: CURVE: .*refused.*\)$`, lines[0])
	rep.interrupt()
	code, _ = rep.wait()
	assert.Equal(t, 0, code, "%q", rep.errLines())
}
