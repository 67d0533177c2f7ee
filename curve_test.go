package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newKeys(t testing.TB) KeyPair {
	t.Helper()
	k, err := NewKeyPair()
	require.NoError(t, err)
	return k
}

func TestKeyPairsAndFiles(t *testing.T) {
	k := newKeys(t)
	assert.Len(t, k.Public, 40)
	assert.Len(t, k.Secret, 40)
	assert.NotContains(t, fmt.Sprint(k), k.Secret, "a KeyPair prints without its secret")
	again, err := KeyPairFromSecret(k.Secret)
	require.NoError(t, err)
	assert.Equal(t, k, again)
	_, err = KeyPairFromSecret("short")
	require.ErrorIs(t, err, ErrInvalidKey)

	dir := t.TempDir()
	require.NoError(t, k.Save(dir, "alice"))
	loaded, err := LoadKeyPair(filepath.Join(dir, "alice.key_secret"))
	require.NoError(t, err)
	assert.Equal(t, k, loaded)
	pub, err := LoadPublicKey(filepath.Join(dir, "alice.key"))
	require.NoError(t, err)
	assert.Equal(t, k.Public, pub)
	require.NoError(t, newKeys(t).Save(dir, "bob"))
	keys, err := LoadPublicKeys(dir)
	require.NoError(t, err)
	assert.Len(t, keys, 2)
	assert.Contains(t, keys, k.Public)

	require.NoError(t, os.Chmod(filepath.Join(dir, "alice.key_secret"), 0o644))
	_, err = LoadKeyPair(filepath.Join(dir, "alice.key_secret"))
	require.ErrorIs(t, err, ErrInsecureKeyFile)
	assert.Contains(t, err.Error(), "alice.key_secret")

	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("curve\n    public-key = \"tooshort\"\n"), 0o644))
	_, err = LoadPublicKey(bad)
	require.ErrorIs(t, err, ErrInvalidKey)
	assert.Contains(t, err.Error(), "bad.key:2")
	_, err = LoadPublicKeys(dir)
	require.Error(t, err, "one bad certificate fails the whole allow-list")
	_, err = LoadPublicKeys(t.TempDir())
	require.ErrorIs(t, err, ErrNoCertificates)
}

func TestCurveOptionsAreChecked(t *testing.T) {
	zctx := newTestContext(t)
	k := newKeys(t)
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"nil policy", []Option{WithCurveServer(k, nil)}, "nil *ClientPolicy"},
		{"bad allowed key", []Option{WithCurveServer(k, AllowKeys(k.Public, "nope"))}, "allowed key 2"},
		{"bad address", []Option{WithCurveServer(k, AllowAnyClient().AllowIPs("not-an-ip"))}, "not-an-ip"},
		{"bad key pair", []Option{WithCurveServer(KeyPair{Public: k.Public, Secret: newKeys(t).Secret}, AllowAnyClient())}, "WithCurveServer"},
		{"bad server key", []Option{WithCurveClient(k, "x")}, "server key"},
		{"both sides", []Option{WithCurveServer(k, AllowAnyClient()), WithCurveClient(k, k.Public)}, "already a CURVE server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRRServer(bindEndpoint(t, "inproc"), echo, append([]Option{WithZMQContext(zctx)}, tc.opts...)...)
			require.ErrorIs(t, err, ErrInvalidOption)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), k.Secret)
			assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "one prefix: %q", err)
			if strings.HasPrefix(tc.name, "bad key") || tc.name == "bad server key" {
				assert.ErrorIs(t, err, ErrInvalidKey)
			}
		})
	}
}

// curveServer runs an echo RRServer that is a CURVE server with policy,
// and returns it with its keys.
func curveServer(t testing.TB, zctx *Context, policy *ClientPolicy, tr string, opts ...Option) (*RRServer, KeyPair) {
	t.Helper()
	k := newKeys(t)
	opts = append([]Option{WithCurveServer(k, policy)}, opts...)
	if zctx != nil {
		opts = append(opts, WithZMQContext(zctx))
	}
	srv, err := NewRRServer(bindEndpoint(t, tr), echo, opts...)
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	return srv, k
}

func newClient(t testing.TB, zctx *Context, ep string, opts ...Option) *RRClient {
	t.Helper()
	if zctx != nil {
		opts = append(opts, WithZMQContext(zctx))
	}
	cli, err := NewRRClient(ep, opts...)
	require.NoError(t, err)
	closeOnCleanup(t, cli)
	return cli
}

// requireRefused requires a request from cli to get nothing through (it
// ends by its ctx) and the refusal to be counted on the client.
func requireRefused(t testing.TB, cli *RRClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cli.Request(ctx, []byte("let me in"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return cli.Stats().AuthFailures > 0 }, 10*time.Second, time.Millisecond,
		"the refused client never counted its failure")
}

// On the default Context and on a Context of its own, a CURVE server
// admits the clients its allow-list names, and nothing else: an unlisted
// key, a plain client, a client with the wrong server key. Each refusal is
// counted and reported on the server, and the refused side's calls end by
// ctx.
func TestCurveAdmitsOnlyTheListed(t *testing.T) {
	for _, name := range []string{"default Context", "NewContext"} {
		t.Run(name, func(t *testing.T) {
			var zctx *Context
			if name == "NewContext" {
				zctx = newTestContext(t)
			} else {
				t.Cleanup(closeDefaultContext(t))
			}
			alice, bob := newKeys(t), newKeys(t)
			var rec errorRecorder
			srv, sk := curveServer(t, zctx, AllowKeys(alice.Public), "tcp", rec.option())
			ep := srv.Endpoints()[0]

			ok := newClient(t, zctx, ep, WithCurveClient(alice, sk.Public))
			reply, err := ok.Request(testCtx(t), []byte("hi"))
			require.NoError(t, err)
			assert.Equal(t, "reply:hi", string(reply))

			unlisted := newClient(t, zctx, ep, WithCurveClient(bob, sk.Public))
			requireRefused(t, unlisted)
			var ae *AuthError
			require.Eventually(t, func() bool {
				for _, err := range rec.errors() {
					if errors.As(err, &ae) && ae.PublicKey == bob.Public {
						return true
					}
				}
				return false
			}, 10*time.Second, time.Millisecond, "the denial was not reported with the key")
			assert.Equal(t, "127.0.0.1", ae.PeerAddress)
			assert.Contains(t, ae.Reason, "key not allowed")
			assert.Equal(t, ep, ae.Endpoint)

			wrongServer := newClient(t, zctx, ep, WithCurveClient(alice, newKeys(t).Public))
			requireRefused(t, wrongServer)

			plain := newClient(t, zctx, ep)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err = plain.Request(ctx, []byte("plain"))
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// Unlisted, wrong server key, plain: three refusals at least.
			require.Eventually(t, func() bool { return srv.Stats().AuthFailures >= 3 }, 10*time.Second, time.Millisecond)
			assert.EqualValues(t, 1, srv.Stats().Sent, "only alice's request was answered")
		})
	}
}

// secured is one pair of types, one side the CURVE server and the other
// its client, exchanging one message.
type secured struct {
	name     string
	exchange func(t *testing.T, zctx *Context, tr string, server, client []Option)
}

var securedPairs = []secured{
	{"Publisher/Subscriber", func(t *testing.T, zctx *Context, tr string, server, client []Option) {
		pub, err := NewPublisher(bindEndpoint(t, tr), append(server, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, pub)
		sub, err := NewSubscriber(pub.Endpoints()[0], append(client, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, sub)
		awaitSubscribed(t, pub, sub)
	}},
	{"Subscriber (connecting, CURVE server)/Publisher", func(t *testing.T, zctx *Context, tr string, server, client []Option) {
		pub, err := NewPublisher(bindEndpoint(t, tr), append(client, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, pub)
		sub, err := NewSubscriber(pub.Endpoints()[0], append(server, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, sub)
		awaitSubscribed(t, pub, sub)
	}},
	{"RRServer/RRClient", func(t *testing.T, zctx *Context, tr string, server, client []Option) {
		srv, err := NewRRServer(bindEndpoint(t, tr), echo, append(server, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, srv)
		runServer(t, srv)
		cli := newClient(t, zctx, srv.Endpoints()[0], client...)
		reply, err := cli.Request(testCtx(t), []byte("x"))
		require.NoError(t, err)
		require.Equal(t, "reply:x", string(reply))
	}},
	{"PPPusher/PPPuller", func(t *testing.T, zctx *Context, tr string, server, client []Option) {
		push, err := NewPPPusher(bindEndpoint(t, tr), append(server, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, push)
		pull, err := NewPPPuller(push.Endpoints()[0], append(client, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, pull)
		require.NoError(t, push.Push(testCtx(t), []byte("x")))
		got, err := pull.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, "x", string(got))
	}},
	{"PairServer/PairClient", func(t *testing.T, zctx *Context, tr string, server, client []Option) {
		srv, err := NewPairServer(bindEndpoint(t, tr), upper, append(server, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, srv)
		stop := runInBackground(t, srv.Run)
		t.Cleanup(func() { _ = stop() })
		cli, err := NewPairClient(srv.Endpoints()[0], append(client, WithZMQContext(zctx))...)
		require.NoError(t, err)
		closeOnCleanup(t, cli)
		reply, err := cli.Request(testCtx(t), []byte("x"))
		require.NoError(t, err)
		require.Equal(t, "X", string(reply))
	}},
}

// Each of the eight types, secured, over tcp and ipc: a listed client
// gets through, and the server counted no failure.
func TestCurveEveryType(t *testing.T) {
	for _, p := range securedPairs {
		for _, tr := range []string{"tcp", "ipc"} {
			t.Run(p.name+"/"+tr, func(t *testing.T) {
				zctx := newTestContext(t)
				sk, ck := newKeys(t), newKeys(t)
				p.exchange(t, zctx, tr,
					[]Option{WithCurveServer(sk, AllowKeys(ck.Public))},
					[]Option{WithCurveClient(ck, sk.Public)})
			})
		}
	}
}

// Two CURVE servers on one Context hold different allow-lists: each admits
// only its own clients.
func TestCurveTwoServersTwoPolicies(t *testing.T) {
	zctx := newTestContext(t)
	alice, bob := newKeys(t), newKeys(t)
	a, ak := curveServer(t, zctx, AllowKeys(alice.Public), "tcp")
	b, bk := curveServer(t, zctx, AllowKeys(bob.Public), "tcp")
	ctx := testCtx(t)
	_, err := newClient(t, zctx, a.Endpoints()[0], WithCurveClient(alice, ak.Public)).Request(ctx, []byte("x"))
	require.NoError(t, err)
	_, err = newClient(t, zctx, b.Endpoints()[0], WithCurveClient(bob, bk.Public)).Request(ctx, []byte("x"))
	require.NoError(t, err)
	requireRefused(t, newClient(t, zctx, a.Endpoints()[0], WithCurveClient(bob, ak.Public)))
	requireRefused(t, newClient(t, zctx, b.Endpoints()[0], WithCurveClient(alice, bk.Public)))
}

// SetKeys replaces the allow-list while the server runs: a newly listed
// key gets in (its refused client keeps trying), and a removed key's new
// connections are refused.
func TestCurveAllowListReplacedAtRunTime(t *testing.T) {
	zctx := newTestContext(t)
	alice, bob := newKeys(t), newKeys(t)
	policy := AllowKeys(alice.Public)
	srv, sk := curveServer(t, zctx, policy, "tcp")
	ep := srv.Endpoints()[0]
	bobCli := newClient(t, zctx, ep, WithCurveClient(bob, sk.Public))
	requireRefused(t, bobCli)

	policy.SetKeys(bob.Public)
	reply, err := bobCli.Request(testCtx(t), []byte("now"))
	require.NoError(t, err, "bob, listed now, gets in")
	assert.Equal(t, "reply:now", string(reply))
	requireRefused(t, newClient(t, zctx, ep, WithCurveClient(alice, sk.Public)))
}

// IP lists sit on top of keys: a denied address is refused whatever its
// key, and an allow-list of addresses admits only them.
func TestCurveIPLists(t *testing.T) {
	zctx := newTestContext(t)
	alice := newKeys(t)
	denied, dk := curveServer(t, zctx, AllowKeys(alice.Public).DenyIPs("127.0.0.0/8"), "tcp")
	requireRefused(t, newClient(t, zctx, denied.Endpoints()[0], WithCurveClient(alice, dk.Public)))
	allowed, ak := curveServer(t, zctx, AllowAnyClient().AllowIPs("127.0.0.1", "::1"), "tcp")
	_, err := newClient(t, zctx, allowed.Endpoints()[0], WithCurveClient(newKeys(t), ak.Public)).Request(testCtx(t), []byte("x"))
	require.NoError(t, err)
	other, ok := curveServer(t, zctx, AllowAnyClient().AllowIPs("10.1.2.3"), "tcp")
	requireRefused(t, newClient(t, zctx, other.Endpoints()[0], WithCurveClient(newKeys(t), ok.Public)))
}

// The ZAP handler answers a malformed request with a denial and keeps
// serving.
func TestZAPHandlerDeniesMalformedRequests(t *testing.T) {
	zctx := newTestContext(t)
	alice := newKeys(t)
	srv, sk := curveServer(t, zctx, AllowKeys(alice.Public), "tcp")
	zap := rawSocket(t, zctx, zmq.REQ)
	require.NoError(t, zap.Connect(zapEndpoint))
	for _, req := range [][]string{
		{"garbage"},
		{"1.0", "id-1"},
		{"2.0", "id-2", "zmqkit-1", "127.0.0.1", "", "CURVE", "key"},
		{"1.0", "id-3", "no-such-domain", "127.0.0.1", "", "CURVE", strings.Repeat("k", 32)},
		{"1.0", "id-4", srv.o.zapDomain, "127.0.0.1", "", "PLAIN", "user", "pass"},
		{"1.0", "id-5", srv.o.zapDomain, "127.0.0.1", "", "CURVE", "short key"},
		{"1.0", "id-6", plainDomain, "127.0.0.1", "", "CURVE", strings.Repeat("k", 32)}, // plain is NULL only
		{"1.0", "id-7", plainDomain, "127.0.0.1", "", "PLAIN", "user", "pass"},
	} {
		_, err := zap.SendMessage(req)
		require.NoError(t, err)
		reply, err := zap.RecvMessage(0)
		require.NoError(t, err, "request %q", req)
		require.GreaterOrEqual(t, len(reply), 3, "request %q", req)
		assert.Equal(t, "400", reply[2], "request %q: %q", req, reply)
	}
	_, err := newClient(t, zctx, srv.Endpoints()[0], WithCurveClient(alice, sk.Public)).Request(testCtx(t), []byte("x"))
	require.NoError(t, err, "the handler keeps serving")
}

// A PairServer's socket re-created after its client left keeps its CURVE
// settings: a new listed client gets in, an unlisted one does not.
func TestCurvePairRestartKeepsSecurity(t *testing.T) {
	zctx := newTestContext(t)
	sk, alice := newKeys(t), newKeys(t)
	srv, err := NewPairServer(bindEndpoint(t, "tcp"), upper, WithZMQContext(zctx), WithCurveServer(sk, AllowKeys(alice.Public)))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runInBackground(t, srv.Run)
	for round := 0; round < 2; round++ {
		cli, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx), WithCurveClient(alice, sk.Public))
		require.NoError(t, err)
		reply, err := cli.Request(testCtx(t), []byte("x"))
		if errors.Is(err, ErrPairReset) { // got in before the server saw the last client leave
			reply, err = cli.Request(testCtx(t), []byte("x"))
		}
		require.NoError(t, err, "round %d", round)
		assert.Equal(t, "X", string(reply))
		require.NoError(t, cli.Close())
	}
	intruder, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx), WithCurveClient(newKeys(t), sk.Public))
	require.NoError(t, err)
	closeOnCleanup(t, intruder)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = intruder.Request(ctx, []byte("x"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// A Proxy made WithCurveServer is the server on both sides: clients and
// workers with an allowed key get through it, an unlisted client is
// refused and counted.
func TestCurveProxyServer(t *testing.T) {
	zctx := newTestContext(t)
	sk, alice, bob := newKeys(t), newKeys(t), newKeys(t)
	q, err := NewQueue(bindEndpoint(t, "tcp"), bindEndpoint(t, "tcp"), WithZMQContext(zctx),
		WithCurveServer(sk, AllowKeys(alice.Public)))
	require.NoError(t, err)
	closeOnCleanup(t, q)
	runProxy(t, q)
	worker, err := NewRRServer(">"+q.Back()[0], echo, WithZMQContext(zctx), WithCurveClient(alice, sk.Public))
	require.NoError(t, err)
	closeOnCleanup(t, worker)
	runServer(t, worker)

	ok := newClient(t, zctx, q.Front()[0], WithCurveClient(alice, sk.Public))
	reply, err := ok.Request(testCtx(t), []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "reply:hi", string(reply))

	requireRefused(t, newClient(t, zctx, q.Front()[0], WithCurveClient(bob, sk.Public)))
	require.Eventually(t, func() bool { return q.Stats().Connections.AuthFailures >= 1 }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, worker.Stats().Sent, "only alice's request reached the worker")
}

// A Proxy made WithCurveClient connects to secured servers on both sides:
// a streamer between a CURVE pusher and a CURVE puller (one server key)
// moves their messages; with a key the servers do not know, nothing moves
// and the proxy counts its refusals.
func TestCurveProxyClient(t *testing.T) {
	zctx := newTestContext(t)
	sk, alice, bob := newKeys(t), newKeys(t), newKeys(t)
	policy := AllowKeys(alice.Public)
	push, err := NewPPPusher(bindEndpoint(t, "tcp"), WithZMQContext(zctx), WithCurveServer(sk, policy))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	pull, err := NewPPPuller("@"+bindEndpoint(t, "tcp"), WithZMQContext(zctx), WithCurveServer(sk, policy))
	require.NoError(t, err)
	closeOnCleanup(t, pull)

	refused, err := NewStreamer(">"+push.Endpoints()[0], ">"+pull.Endpoints()[0], WithZMQContext(zctx), WithCurveClient(bob, sk.Public))
	require.NoError(t, err)
	closeOnCleanup(t, refused)
	require.Eventually(t, func() bool { return refused.Stats().Connections.AuthFailures >= 2 }, 10*time.Second, time.Millisecond,
		"the refusals are counted")
	require.NoError(t, refused.Close())

	s, err := NewStreamer(">"+push.Endpoints()[0], ">"+pull.Endpoints()[0], WithZMQContext(zctx), WithCurveClient(alice, sk.Public))
	require.NoError(t, err)
	closeOnCleanup(t, s)
	runProxy(t, s)
	ctx := testCtx(t)
	require.NoError(t, push.Push(ctx, []byte("through")))
	got, err := pull.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "through", string(got))
}

// logBuffer is a goroutine-safe log destination.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A client the policy denies is logged at Warn, with its key and address,
// besides the error callback and the counter.
func TestCurveDenialLoggedAtWarn(t *testing.T) {
	zctx := newTestContext(t)
	alice, bob := newKeys(t), newKeys(t)
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, sk := curveServer(t, zctx, AllowKeys(alice.Public), "tcp", WithLogger(logger))
	requireRefused(t, newClient(t, zctx, srv.Endpoints()[0], WithCurveClient(bob, sk.Public)))
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, bob.Public) &&
				strings.Contains(line, "127.0.0.1") && strings.Contains(line, "key not allowed") {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "no Warn record of the denial: %q", logs.String())
	assert.NotContains(t, logs.String(), bob.Secret)
}

// A server taken out of an RRClient's round-robin is watched by the
// client's probe; a CURVE handshake the probe fails (the server has
// another key than the client expects) is reported as the client's own
// are. (Before, the probe's failures went unseen.)
func TestCurveProbeFailureReported(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	a, ak := curveServer(t, zctx, AllowAnyClient(), "tcp")
	bEp := bindEndpoint(t, "ipc") // nothing there yet
	var rec errorRecorder
	cli := newClient(t, zctx, a.Endpoints()[0]+","+bEp, WithCurveClient(newKeys(t), ak.Public),
		WithReconnectInterval(10*time.Millisecond, 0), rec.option())
	require.Eventually(t, func() bool {
		if _, err := cli.Request(ctx, []byte("x")); err != nil {
			return false
		}
		cli.pmu.Lock()
		defer cli.pmu.Unlock()
		return slices.ContainsFunc(cli.servers, func(sv *server) bool { return sv.ep == bEp && sv.state == retired })
	}, 10*time.Second, time.Millisecond, "b, not reached, taken out")

	b, err := NewRRServer(bEp, echo, WithZMQContext(zctx), WithCurveServer(newKeys(t), AllowAnyClient()))
	require.NoError(t, err)
	closeOnCleanup(t, b)
	require.Eventually(t, func() bool {
		for _, err := range rec.errors() {
			var ae *AuthError
			if errors.As(err, &ae) && ae.Endpoint == bEp {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "the probe's failed handshake with b reported")
	assert.Positive(t, cli.Stats().AuthFailures)
}
