package clisuite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keygen NAME --dir D: two files with the documented modes, the public key on
// stdout, pyzmq's zmq.auth.load_certificate reads both, and --force is needed
// to replace them.
func TestKeygenFilesLoadInPyzmq(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // made if missing
	out, errs, code := run(t, opts{}, "keygen", "server", "--dir", dir)
	require.Equal(t, 0, code, errs)
	pub := strings.TrimSpace(out)
	assert.Len(t, pub, 40, "Z85 public key on stdout: %q", out)
	for name, mode := range map[string]os.FileMode{"server.key": 0o644, "server.key_secret": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), name)
	}
	if pyzmqError == "" {
		l := py(t, opts{}, "loadcert", filepath.Join(dir, "server.key"))
		require.Equal(t, 0, l.wait())
		assert.Equal(t, []string{pub + " None"}, l.stdout())
		l = py(t, opts{}, "loadcert", filepath.Join(dir, "server.key_secret"))
		require.Equal(t, 0, l.wait())
		got := strings.Fields(strings.Join(l.stdout(), " "))
		require.Len(t, got, 2)
		assert.Equal(t, pub, got[0])
		assert.Len(t, got[1], 40)
	}
	_, errs, code = run(t, opts{}, "keygen", "server", "--dir", dir)
	assert.Equal(t, 1, code, "existing files without --force")
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
	out, errs, code = run(t, opts{}, "keygen", "server", "--dir", dir, "--force")
	require.Equal(t, 0, code, errs)
	assert.NotEqual(t, pub, strings.TrimSpace(out))
}

func keygen(t *testing.T, dir, name string) {
	t.Helper()
	_, errs, code := run(t, opts{}, "keygen", name, "--dir", dir)
	require.Equal(t, 0, code, errs)
}

// curveCerts makes, with keygen in a fresh directory, the server's keys in
// certs, alice's in clients and mallory's in others, and returns the three
// directories.
func curveCerts(t *testing.T) (certs, clients, others string) {
	t.Helper()
	d := t.TempDir()
	certs, clients, others = filepath.Join(d, "certs"), filepath.Join(d, "clients"), filepath.Join(d, "others")
	keygen(t, certs, "server")
	keygen(t, clients, "alice")
	keygen(t, others, "mallory")
	return certs, clients, others
}

// The README's CURVE walk-through with keygen files: pub is the server,
// allowing the clients directory; sub the client.
func TestCurveKeygenPubSub(t *testing.T) {
	certs, clients, _ := curveCerts(t)
	sub := zk(t, opts{}, "sub", "@"+localAny, "--count", "1",
		"--curve-client-key", filepath.Join(clients, "alice.key_secret"), "--curve-server-key", filepath.Join(certs, "server.key"))
	ep := sub.bound(0)
	pub := zk(t, opts{}, "pub", ">"+ep, "--wait-subscribers", "1", "for alice only",
		"--curve-server-key", filepath.Join(certs, "server.key_secret"), "--curve-allow", clients)
	require.Equal(t, 0, pub.wait())
	require.Equal(t, 0, sub.wait())
	assert.Equal(t, []string{"1000 text for alice only"}, sub.stdout())
}

// req/rep with CURVE: an allowed client gets its reply, one not in
// --curve-allow gets none (exit 1), and a plain client gets none.
func TestCurveReqRepAllowList(t *testing.T) {
	certs, clients, others := curveCerts(t)
	rep := zk(t, opts{}, "rep", localAny, "--echo",
		"--curve-server-key", filepath.Join(certs, "server.key_secret"), "--curve-allow", clients)
	ep := rep.bound(0)
	srv := filepath.Join(certs, "server.key")
	out, errs, code := run(t, opts{}, "req", ep, "secret", "--curve-client-key", filepath.Join(clients, "alice.key_secret"), "--curve-server-key", srv)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "secret\n", out)
	out, errs, code = run(t, opts{}, "req", ep, "x", "--timeout", "300ms", "--curve-client-key", filepath.Join(others, "mallory.key_secret"), "--curve-server-key", srv)
	assert.Equal(t, 1, code, "a client not in --curve-allow")
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "req exits 1 with one line on stderr: %q", errs)
	out, errs, code = run(t, opts{}, "req", ep, "x", "--timeout", "300ms")
	assert.Equal(t, 1, code, "a plain client")
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "req exits 1 with one line on stderr: %q", errs)
}

// pyzmq-made certificates (zmq.auth.create_certificates) used by the CURVE
// flags, and keygen files used by pyzmq CURVE peers.
func TestCurveWithPyzmq(t *testing.T) {
	needPy(t)
	d := t.TempDir()
	certs, clients := filepath.Join(d, "certs"), filepath.Join(d, "clients")
	for _, c := range [][2]string{{certs, "server"}, {clients, "alice"}} {
		require.NoError(t, os.MkdirAll(c[0], 0o755))
		mk := py(t, opts{}, "mkcert", c[0], c[1])
		require.Equal(t, 0, mk.wait())
	}
	t.Run("pyzmq certs, zmqkit both ends", func(t *testing.T) {
		// --exec takes the rest of the line, so it comes last
		rep := zk(t, opts{}, "rep", localAny, "--curve-server-key", filepath.Join(certs, "server.key_secret"), "--curve-allow", clients,
			"--exec", "tr", "a-z", "A-Z")
		out, errs, code := run(t, opts{}, "req", rep.bound(0), "hi",
			"--curve-client-key", filepath.Join(clients, "alice.key_secret"), "--curve-server-key", filepath.Join(certs, "server.key"))
		require.Equal(t, 0, code, errs)
		assert.Equal(t, "HI\n", out)
	})
	t.Run("pyzmq certs, pyzmq server, zmqkit client", func(t *testing.T) {
		srv := py(t, opts{env: []string{"PYZ_SERVER_SECRET=" + filepath.Join(certs, "server.key_secret"), "PYZ_ALLOW=" + clients}}, "rep", "@"+localAny, "1")
		ep := srv.waitStderr(`^bound (\S+)`)[1]
		out, errs, code := run(t, opts{}, "req", ep, "hello",
			"--curve-client-key", filepath.Join(clients, "alice.key_secret"), "--curve-server-key", filepath.Join(certs, "server.key"))
		require.Equal(t, 0, code, errs)
		assert.Equal(t, "HELLO\n", out)
		require.Equal(t, 0, srv.wait())
	})
	t.Run("keygen certs, zmqkit server, pyzmq client", func(t *testing.T) {
		kd := t.TempDir()
		keygen(t, filepath.Join(kd, "certs"), "server")
		keygen(t, filepath.Join(kd, "clients"), "bob")
		pub := zk(t, opts{}, "pub", localAny, "--wait-subscribers", "1", "to bob",
			"--curve-server-key", filepath.Join(kd, "certs", "server.key_secret"), "--curve-allow", filepath.Join(kd, "clients"))
		sub := py(t, opts{env: []string{"PYZ_CLIENT_SECRET=" + filepath.Join(kd, "clients", "bob.key_secret"), "PYZ_SERVER_PUBLIC=" + filepath.Join(kd, "certs", "server.key")}},
			"sub", pub.bound(0), "1", "1000")
		require.Equal(t, 0, pub.wait())
		require.Equal(t, 0, sub.wait())
		assert.Equal(t, [][]string{{"1000 text to bob"}}, pyFrames(t, sub.stdout()))
	})
}

// A proxy with --curve-server-key is the CURVE server on both ends.
func TestCurveProxy(t *testing.T) {
	d := t.TempDir()
	keygen(t, filepath.Join(d, "certs"), "broker")
	keygen(t, filepath.Join(d, "clients"), "w")
	sec, pubk := filepath.Join(d, "certs", "broker.key_secret"), filepath.Join(d, "certs", "broker.key")
	cli := filepath.Join(d, "clients", "w.key_secret")
	px := zk(t, opts{}, "proxy", "queue", localAny, localAny, "--curve-server-key", sec, "--curve-allow", filepath.Join(d, "clients"))
	front, back := px.bound(0), px.bound(1)
	zk(t, opts{}, "rep", ">"+back, "--echo", "--curve-client-key", cli, "--curve-server-key", pubk)
	out, errs, code := run(t, opts{}, "req", front, "through", "--curve-client-key", cli, "--curve-server-key", pubk)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "through\n", out)
	assert.Equal(t, 0, px.interrupt())
}

// A CURVE client against a server that does not use CURVE gets no reply:
// req exits 1 with one line on stderr.
func TestCurveClientPlainServer(t *testing.T) {
	d := t.TempDir()
	keygen(t, filepath.Join(d, "certs"), "server")
	keygen(t, filepath.Join(d, "clients"), "alice")
	rep := zk(t, opts{}, "rep", localAny)
	out, errs, code := run(t, opts{}, "req", rep.bound(0), "x", "--timeout", "300ms",
		"--curve-client-key", filepath.Join(d, "clients", "alice.key_secret"), "--curve-server-key", filepath.Join(d, "certs", "server.key"))
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "req exits 1 with one line on stderr: %q", errs)
}
