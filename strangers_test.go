package zmqkit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zmtp1Peer is what a ZMTP/1.0 peer (libzmq 2) sends first: its identity
// (one byte of length, a flags byte, no identity), then a message, "junk".
// Random bytes whose first byte is not 0xff read the same way to libzmq.
var zmtp1Peer = []byte{1, 0, 5, 0, 'j', 'u', 'n', 'k'}

// zmtp2Peer is a ZMTP/2.0 peer's (libzmq 3) greeting, as a PUSH, with an
// empty identity.
var zmtp2Peer = []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 8, 0, 0}

// requireDropped requires the server at addr to close a connection that
// sends b: libzmq refuses the peer instead of decoding its bytes.
func requireDropped(t *testing.T, addr string, b []byte) {
	t.Helper()
	var c net.Conn
	require.Eventually(t, func() bool { // a PAIR may be binding its socket again
		var err error
		c, err = net.Dial("tcp", addr)
		return err == nil
	}, 5*time.Second, time.Millisecond)
	defer c.Close()
	_, _ = c.Write(b) // the server may have dropped it already
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.Copy(io.Discard, c) // until the server closes it
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: a peer that sent % x is still connected after 5 s", addr, b)
	}
}

// A plain object refuses the peers that speak ZMTP/1.0 or 2.0, as libzmq
// takes for ZMTP/1.0 any client whose first byte is not 0xff: their bytes
// never reach Receive as messages, nor take a PAIR's one slot.
func TestPlainRefusesOldZMTPPeers(t *testing.T) {
	zctx := newTestContext(t)
	with := WithZMQContext(zctx)
	ep := "@tcp://127.0.0.1:*"
	kinds := []struct {
		name string
		open func() (interface{ Endpoints() []string }, error)
	}{
		{"PPPuller", func() (interface{ Endpoints() []string }, error) { return NewPPPuller(ep, with) }},
		{"PPPusher", func() (interface{ Endpoints() []string }, error) { return NewPPPusher(ep, with) }},
		{"Publisher", func() (interface{ Endpoints() []string }, error) { return NewPublisher(ep, with) }},
		{"Subscriber", func() (interface{ Endpoints() []string }, error) { return NewSubscriber(ep, with) }},
		{"RRServer", func() (interface{ Endpoints() []string }, error) { return NewRRServer(ep, echo, with) }},
		{"RRClient", func() (interface{ Endpoints() []string }, error) { return NewRRClient(ep, with) }},
		{"PairServer", func() (interface{ Endpoints() []string }, error) { return NewPairServer(ep, echo, with) }},
		{"PairClient", func() (interface{ Endpoints() []string }, error) { return NewPairClient(ep, with) }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			obj, err := k.open()
			require.NoError(t, err)
			closeOnCleanup(t, obj.(interface{ Close() error }))
			addr := strings.TrimPrefix(obj.Endpoints()[0], "tcp://")
			requireDropped(t, addr, zmtp1Peer)
			requireDropped(t, addr, zmtp2Peer)
		})
	}
}

// The refused peer's message is not delivered: the first message a Puller
// receives is its real peer's.
func TestPullerIgnoresZMTP1Peer(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	pull, err := NewPPPuller("@tcp://127.0.0.1:*", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pull)
	requireDropped(t, strings.TrimPrefix(pull.Endpoints()[0], "tcp://"), zmtp1Peer)

	push, err := NewPPPusher(">"+pull.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, push)
	require.NoError(t, push.Push(ctx, []byte("real")))
	msg, err := pull.Receive(ctx)
	require.NoError(t, err)
	assert.Equal(t, "real", string(msg))
}

// A plain object admits plain peers when its Context has a ZAP handler
// (started for a CURVE server in it), which libzmq then asks about each.
func TestPlainPeersAdmittedBesideCURVEServer(t *testing.T) {
	zctx := newTestContext(t)
	curveServer(t, zctx, AllowAnyClient(), "tcp")
	srv, err := NewRRServer("tcp://127.0.0.1:*", echo, WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runServer(t, srv)
	cli := newClient(t, zctx, srv.Endpoints()[0])
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	rep, err := cli.Request(ctx, []byte("plain"))
	require.NoError(t, err)
	assert.Equal(t, "reply:plain", string(rep))
}

// Strangers that come and go before any handshake (a port scanner, an
// HTTP probe, a ZMTP/1.0 peer refused) cost a PairServer nothing: it keeps
// its socket, and the first replacement it makes is for its peer leaving.
// (Before old peers were refused, each such connection might have held
// PAIR's slot, and its leaving replaced the socket.)
func TestPairServerKeepsSocketForStrangers(t *testing.T) {
	zctx := newTestContext(t)
	replaced := make(replacements, 64)
	leaving, left := eventsOfKind(EventDisconnected)
	srv, err := NewPairServer("tcp://127.0.0.1:*", upper, WithZMQContext(zctx), WithLogger(slog.New(replaced)), leaving)
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	runInBackground(t, srv.Run)
	addr := strings.TrimPrefix(srv.Endpoints()[0], "tcp://")
	ctx := testCtx(t)
	for _, junk := range [][]byte{nil, []byte("GET / HTTP/1.0\r\n\r\n"), zmtp1Peer} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, _ = c.Write(junk)
		require.NoError(t, c.Close())
		// The server saw it go before the client comes.
		awaitEvent(t, ctx, left, nil, "a stranger's connection never ended")
	}
	cli, err := NewPairClient(srv.Endpoints()[0], WithZMQContext(zctx))
	require.NoError(t, err)
	assert.Equal(t, "HI", requestEventually(t, cli, "hi"))
	require.NoError(t, cli.Close())
	select {
	case why := <-replaced:
		assert.Equal(t, "the peer left", why)
	case <-ctx.Done():
		t.Fatal("no replacement after the peer left")
	}
}
