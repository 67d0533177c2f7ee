package zmqkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyCerts makes certificates with pyzmq's zmq.auth.create_certificates:
// <dir>/<name>.key and .key_secret for each name.
const pyCerts = `
import sys, zmq.auth
for name in sys.argv[2:]:
    zmq.auth.create_certificates(sys.argv[1], name)
print("ok")
`

// makePyCerts runs pyCerts in a new directory and returns it. pyzmq writes
// the secret files with the process's umask (0644, usually): they are made
// private as zmqkit's LoadKeyPair requires.
func makePyCerts(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	p := startPython(t, pyCerts, append([]string{dir}, names...)...)
	require.Equal(t, "ok", p.Line(t))
	p.Wait(t)
	for _, n := range names {
		require.NoError(t, os.Chmod(filepath.Join(dir, n+".key_secret"), 0o600))
	}
	return dir
}

// pyCurveREQ is a pyzmq CURVE client with pyzmq certificates: argv is the
// endpoint, the client's secret certificate, the server's public one, then
// the requests; it prints each reply.
const pyCurveREQ = `
import sys, zmq, zmq.auth
ctx = zmq.Context()
s = ctx.socket(zmq.REQ)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 10000)
pub, sec = zmq.auth.load_certificate(sys.argv[2])
spub, _ = zmq.auth.load_certificate(sys.argv[3])
s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, spub
s.connect(sys.argv[1])
for msg in sys.argv[4:]:
    s.send(msg.encode())
    print(s.recv().decode())
s.close()
ctx.term()
`

// A pyzmq CURVE client, with certificates pyzmq made, calls a zmqkit CURVE
// RRServer whose allow-list is pyzmq's directory of public certificates.
func TestCurveInteropPyzmqClientToRRServer(t *testing.T) {
	dir := makePyCerts(t, "server", "client")
	serverKeys, err := LoadKeyPair(filepath.Join(dir, "server.key_secret"))
	require.NoError(t, err)
	allowed, err := LoadPublicKeys(dir)
	require.NoError(t, err)
	zctx := newTestContext(t)
	srv, err := NewRRServer(bindEndpoint(t, "tcp"), echo, WithZMQContext(zctx), WithCurveServer(serverKeys, AllowKeys(allowed...)))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	p := startPython(t, pyCurveREQ, srv.Endpoints()[0], filepath.Join(dir, "client.key_secret"), filepath.Join(dir, "server.key"), "hello", "再见")
	assert.Equal(t, "reply:hello", p.Line(t))
	assert.Equal(t, "reply:再见", p.Line(t))
	p.Wait(t)
	assert.Zero(t, srv.Stats().AuthFailures)
}

// pyCurvePUB is a pyzmq CURVE client that publishes: it connects a PUB to
// argv[1] with the client certificate argv[2] and the server's argv[3],
// and publishes "1000 text from python" until its stdin closes.
const pyCurvePUB = `
import sys, threading, time, zmq, zmq.auth
ctx = zmq.Context()
s = ctx.socket(zmq.PUB)
s.setsockopt(zmq.LINGER, 0)
pub, sec = zmq.auth.load_certificate(sys.argv[2])
spub, _ = zmq.auth.load_certificate(sys.argv[3])
s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, spub
s.connect(sys.argv[1])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready")
while not done.is_set():
    s.send(b"1000 text from python")
    time.sleep(0.01)
s.close()
ctx.term()
`

// A zmqkit Subscriber that binds is the CURVE server for a pyzmq publisher
// connecting with pyzmq's certificates.
func TestCurveInteropPyzmqPublisherToSubscriber(t *testing.T) {
	dir := makePyCerts(t, "server", "client")
	serverKeys, err := LoadKeyPair(filepath.Join(dir, "server.key_secret"))
	require.NoError(t, err)
	clientKey, err := LoadPublicKey(filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	zctx := newTestContext(t)
	sub, err := NewSubscriber("@"+bindEndpoint(t, "tcp"), WithZMQContext(zctx), WithCurveServer(serverKeys, AllowKeys(clientKey)))
	require.NoError(t, err)
	closeOnCleanup(t, sub)
	p := startPython(t, pyCurvePUB, sub.Endpoints()[0], filepath.Join(dir, "client.key_secret"), filepath.Join(dir, "server.key"))
	require.Equal(t, "ready", p.Line(t))
	m, err := sub.Receive(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, "1000 text from python", m.String())
	require.NoError(t, p.stdin.Close())
	p.Wait(t)
}

// pyCurveREP is a pyzmq CURVE server that authenticates clients with
// pyzmq's ThreadAuthenticator against a directory of public certificates
// (argv[3]); argv[2] is its own secret certificate. It answers n requests.
const pyCurveREP = `
import sys, zmq, zmq.auth
from zmq.auth.thread import ThreadAuthenticator
ctx = zmq.Context()
auth = ThreadAuthenticator(ctx)
auth.start()
auth.configure_curve(domain='*', location=sys.argv[3])
s = ctx.socket(zmq.REP)
s.setsockopt(zmq.LINGER, 1000)
pub, sec = zmq.auth.load_certificate(sys.argv[2])
s.curve_publickey, s.curve_secretkey, s.curve_server = pub, sec, True
s.bind(sys.argv[1])
print(s.getsockopt(zmq.LAST_ENDPOINT).decode())
for _ in range(int(sys.argv[4])):
    s.send(b"rep:" + s.recv())
sys.stdin.readline()
s.close()
auth.stop()
ctx.term()
`

// A zmqkit CURVE client, with files zmqkit saved, calls a pyzmq server
// that authenticates with pyzmq's ThreadAuthenticator and the public
// certificates zmqkit wrote; a client whose certificate is not there is
// refused.
func TestCurveInteropRRClientToPyzmqServer(t *testing.T) {
	keysDir, allowDir := t.TempDir(), t.TempDir()
	server, client, stranger := newKeys(t), newKeys(t), newKeys(t)
	require.NoError(t, server.Save(keysDir, "server"))
	require.NoError(t, client.Save(allowDir, "client"))
	p := startPython(t, pyCurveREP, "tcp://127.0.0.1:0", filepath.Join(keysDir, "server.key_secret"), allowDir, "1")
	ep := p.Line(t)

	zctx := newTestContext(t)
	serverKey, err := LoadPublicKey(filepath.Join(keysDir, "server.key"))
	require.NoError(t, err)
	refused := newClient(t, zctx, ep, WithCurveClient(stranger, serverKey))
	requireRefused(t, refused)
	cli := newClient(t, zctx, ep, WithCurveClient(client, serverKey))
	reply, err := cli.Request(testCtx(t), []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "rep:hi", string(reply))
	p.Send(t, "done")
	p.Wait(t)
}
