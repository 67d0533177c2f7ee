package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

// --events prints a peer's connection as it comes and goes, with the
// endpoint and the peer's address, and the listener's end.
func TestEventsConnectAndDisconnect(t *testing.T) {
	sub := start(t, "sub", "@tcp://127.0.0.1:*", "--events")
	ep := sub.bound(1)
	q := regexp.QuoteMeta(ep)
	pub, err := zmqkit.NewPublisher(">"+ep, zmqkit.WithZMQContext(newTestContext(t)))
	require.NoError(t, err)

	accepted := sub.errLine(`^event accepted `)
	m := regexp.MustCompile(`^event accepted ` + q + ` peer (127\.0\.0\.1:\d+)$`).FindStringSubmatch(accepted)
	require.NotNil(t, m, "%q", accepted)
	peer := m[1]
	sub.errLine(`^event handshake succeeded ` + q + `$`)

	require.NoError(t, pub.Close())
	assert.Equal(t, "event disconnected "+ep+" peer "+peer, sub.errLine(`^event disconnected `))

	sub.interrupt()
	sub.errLine(`^event closed ` + q + `$`)
	code, out := sub.wait()
	assert.Equal(t, 0, code, "%q", sub.errLines())
	assert.Empty(t, out, "events go to stderr, never among the messages")
}

// A CURVE client the server does not admit: both sides' --events say the
// handshake failed, and why.
func TestEventsHandshakeFailed(t *testing.T) {
	dir := t.TempDir()
	keygenFor(t, filepath.Join(dir, "server"), "server")
	keygenFor(t, filepath.Join(dir, "clients"), "alice")
	keygenFor(t, filepath.Join(dir, "others"), "mallory")
	pub := start(t, "pub", "tcp://127.0.0.1:*", "--events",
		"--curve-server-key", filepath.Join(dir, "server", "server.key_secret"),
		"--curve-allow", filepath.Join(dir, "clients"))
	ep := pub.bound(1)
	mallory := start(t, "sub", ep, "--events",
		"--curve-client-key", filepath.Join(dir, "others", "mallory.key_secret"),
		"--curve-server-key", filepath.Join(dir, "server", "server.key"))

	server := pub.errLine(`^event handshake failed `)
	client := mallory.errLine(`^event handshake failed `)
	assert.Regexp(t, `^event handshake failed `+regexp.QuoteMeta(ep)+`( peer \S+)?: .*refused`, server)
	assert.Regexp(t, `^event handshake failed `+regexp.QuoteMeta(ep)+`( peer \S+)?: .*refused`, client)

	mallory.interrupt()
	code, out := mallory.wait()
	assert.Equal(t, 0, code, "%q", mallory.errLines())
	assert.Empty(t, out)
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

// Without --events, --verbose logs the events among its other records.
func TestVerboseLogsEvents(t *testing.T) {
	sub := start(t, "sub", "@tcp://127.0.0.1:*", "--verbose")
	ep := sub.bound(1)
	_, err := zmqkit.NewPublisher(">"+ep, zmqkit.WithZMQContext(newTestContext(t)))
	require.NoError(t, err)
	l := sub.errLine(`msg=event kind=accepted`)
	assert.Regexp(t, `level=DEBUG msg=event kind=accepted endpoint=`+regexp.QuoteMeta(ep)+` peer=127\.0\.0\.1:\d+$`, l)
	for _, l := range sub.errLines() {
		assert.NotRegexp(t, `^event `, l, "no --events lines without --events")
	}
	sub.interrupt()
	code, _ := sub.wait()
	assert.Equal(t, 0, code, "%q", sub.errLines())
}
