package pairlink

import (
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// step is one monitor event fed to a tracker, and whether the tracker
// must then ask for the socket to be replaced.
type step struct {
	kind    zmq.Event
	fd      int
	replace bool
}

const (
	accepted     = zmq.EVENT_ACCEPTED
	connected    = zmq.EVENT_CONNECTED
	gone         = zmq.EVENT_DISCONNECTED
	handshake    = zmq.EVENT_HANDSHAKE_SUCCEEDED
	failedNoInfo = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
	failedProto  = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
	failedAuth   = zmq.EVENT_HANDSHAKE_FAILED_AUTH
	retried      = zmq.EVENT_CONNECT_RETRIED
)

// t0 is the time every event is fed at.
var t0 = time.Unix(1_000_000, 0)

// run feeds steps to a fresh tracker of a socket bound on (or connected
// to) ep, at t0, checking each verdict; the tracker is returned for more.
func run(t *testing.T, ep string, steps []step) *tracker {
	t.Helper()
	return runWith(t, newTracker(ep), ep, steps)
}

// runWith is run with the tracker given.
func runWith(t *testing.T, tr *tracker, ep string, steps []step) *tracker {
	t.Helper()
	for i, s := range steps {
		v := tr.event(zsock.Event{Kind: s.kind, Value: s.fd, Endpoint: ep}, t0, 0)
		require.Equal(t, s.replace, v.replace, "step %d (%v %d): %q", i, s.kind, s.fd, v.why)
		if v.replace {
			require.Equal(t, len(steps)-1, i, "a replaced socket has no more events")
		}
	}
	return tr
}

// The sequence the fault suite's churn caught (a PairServer with clients
// coming and going, libzmq 4.3.4): a client (27) connects; the last
// socket of the client before it, closed as it reconnected, comes and goes
// (24) with a handshake failure; 27's handshake completes; the next client
// (24 again) connects and completes its handshake, refused by PAIR since
// 27 holds the slot; 27 leaves. The old rule took the first connection
// accepted for the peer, pinned the failure on it and forgot it; 24's
// handshake then "confirmed" 24, 27's departure went unseen, and the new
// client stayed refused for good. A replacement must come by the end,
// before the new client is stranded: here as soon as 24 leaves, because a
// connection that leaves without a ZMTP 3 handshake failure may have been
// a non-ZMTP client holding the slot.
func TestTrackerChurnSequence(t *testing.T) {
	run(t, "tcp://127.0.0.1:1", []step{
		{kind: accepted, fd: 27},
		{kind: accepted, fd: 24},
		{kind: failedNoInfo, fd: 32},
		{kind: gone, fd: 24, replace: true},
	})
	// Had 24 failed a ZMTP 3 handshake instead, 27 becomes the known peer,
	// the next client is refused while it is there, and 27's departure is
	// the replacement that lets the next client in.
	run(t, "tcp://127.0.0.1:1", []step{
		{kind: accepted, fd: 27},
		{kind: accepted, fd: 24},
		{kind: failedProto},
		{kind: gone, fd: 24},
		{kind: handshake},
		{kind: accepted, fd: 24},
		{kind: handshake},
		{kind: gone, fd: 24},
		{kind: accepted, fd: 24},
		{kind: handshake},
		{kind: gone, fd: 27, replace: true},
	})
}

// A known peer is disturbed by nothing but its own departure.
func TestTrackerKnownPeer(t *testing.T) {
	run(t, "tcp://127.0.0.1:1", []step{
		{kind: accepted, fd: 5},
		{kind: handshake},
		{kind: accepted, fd: 6}, {kind: failedProto}, {kind: gone, fd: 6}, // a bogus greeting
		{kind: accepted, fd: 6}, {kind: failedNoInfo}, {kind: gone, fd: 6}, // connect, close
		{kind: accepted, fd: 6}, {kind: gone, fd: 6}, // taken for ZMTP 1.0, no slot for it
		{kind: accepted, fd: 7}, {kind: handshake}, {kind: gone, fd: 7}, // a second peer, refused
		{kind: accepted, fd: 8}, // stays
		{kind: gone, fd: 5, replace: true},
	})
}

// Without a known peer, the socket is replaced whenever a peer may have
// been refused, or a connection that may have held the slot leaves.
func TestTrackerNoKnownPeer(t *testing.T) {
	for name, steps := range map[string][]step{
		"handshake while a silent connection is open": {
			{kind: accepted, fd: 5}, {kind: accepted, fd: 6}, {kind: handshake, replace: true},
		},
		"a connection taken for ZMTP 1.0 leaves": {
			{kind: accepted, fd: 5}, {kind: gone, fd: 5, replace: true},
		},
		"a connection ends before its handshake": {
			{kind: accepted, fd: 5}, {kind: failedNoInfo}, {kind: gone, fd: 5, replace: true},
		},
		"a failure not reported just before the end is not pinned on it": {
			{kind: accepted, fd: 5}, {kind: accepted, fd: 6}, {kind: failedProto}, {kind: accepted, fd: 7},
			{kind: gone, fd: 5, replace: true},
		},
		"failed ZMTP 3 handshakes": {
			{kind: accepted, fd: 5}, {kind: failedProto}, {kind: gone, fd: 5},
			{kind: accepted, fd: 5}, {kind: failedAuth}, {kind: gone, fd: 5},
			{kind: accepted, fd: 6}, {kind: handshake}, {kind: gone, fd: 6, replace: true},
		},
		"a connection never seen arriving": {
			{kind: gone, fd: 9, replace: true},
		},
	} {
		t.Run(name, func(t *testing.T) { run(t, "tcp://127.0.0.1:1", steps) })
	}
}

// A connection the socket made is replaced once libzmq is seen not to
// make it again: at once after its announcement when the peer left, after
// giveUpAfter (and reported) when it dropped the peer for a protocol
// error, after a growing back-off when its handshake failed; never when
// libzmq retries a handshake cut short.
func TestTrackerConnectSide(t *testing.T) {
	const ep = "tcp://127.0.0.1:1"
	now := t0
	feed := func(tr *tracker, kind zmq.Event, fd int, ep string, failures int) verdict {
		return tr.event(zsock.Event{Kind: kind, Value: fd, Endpoint: ep}, now, failures)
	}

	tr := run(t, ep, []step{{kind: connected, fd: 5}, {kind: handshake}, {kind: gone, fd: 5}})
	v := feed(tr, retried, 0, ep, 0)
	assert.True(t, v.replace)
	assert.Empty(t, v.dropped, "the peer left: libzmq was reconnecting")

	tr = run(t, ep, []step{{kind: connected, fd: 5}, {kind: handshake}, {kind: gone, fd: 5}})
	due, ok := tr.next()
	require.True(t, ok)
	assert.Equal(t, now.Add(giveUpAfter), due)
	assert.False(t, tr.expire(due.Add(-time.Millisecond)).replace)
	v = tr.expire(due)
	assert.True(t, v.replace)
	assert.Equal(t, ep, v.dropped)
	assert.False(t, v.failed)

	tr = run(t, ep, []step{{kind: connected, fd: 5}, {kind: failedNoInfo}, {kind: gone, fd: 5}, {kind: retried}})
	_, ok = tr.next()
	assert.False(t, ok, "libzmq retries by itself")

	for failures, wait := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		tr = newTracker(ep)
		feed(tr, connected, 5, ep, failures)
		feed(tr, failedProto, 0, ep, failures)
		feed(tr, gone, 5, ep, failures)
		due, ok := tr.next()
		require.True(t, ok)
		assert.Equal(t, now.Add(wait), due, "after %d failures", failures)
		v := tr.expire(due)
		assert.True(t, v.replace)
		assert.True(t, v.failed)
		assert.Empty(t, v.dropped, "a failed handshake is reported as such elsewhere")
	}

	// libzmq may name the endpoint otherwise in its announcement (an
	// address resolved): with one connect endpoint, it is that one's.
	tr = run(t, "tcp://localhost:1", []step{{kind: connected, fd: 5}, {kind: handshake}, {kind: gone, fd: 5}})
	assert.True(t, feed(tr, retried, 0, "tcp://127.0.0.1:1", 0).replace)
	tr = newTracker("tcp://localhost:1", "tcp://localhost:2")
	feed(tr, connected, 5, "tcp://localhost:1", 0)
	feed(tr, handshake, 0, "", 0)
	feed(tr, gone, 5, "tcp://localhost:1", 0)
	assert.False(t, feed(tr, retried, 0, "tcp://127.0.0.1:2", 0).replace, "another endpoint's retry says nothing")
	// With several connect endpoints, the one on the same port. (Before,
	// the announcement went unmatched, and the check expired as if libzmq
	// had dropped the peer for good.)
	tr = newTracker("tcp://localhost:1", "tcp://localhost:2")
	feed(tr, connected, 5, "tcp://localhost:1", 0)
	feed(tr, handshake, 0, "", 0)
	feed(tr, gone, 5, "tcp://localhost:1", 0)
	assert.True(t, feed(tr, retried, 0, "tcp://127.0.0.1:1", 0).replace, "the peer left")
	// Two endpoints on one port: the other's announcements leave the
	// check on the lost one alone, which expires (libzmq gave up).
	tr = newTracker("tcp://127.0.0.1:1", "tcp://127.0.0.2:1")
	feed(tr, connected, 5, "tcp://127.0.0.1:1", 0)
	feed(tr, handshake, 0, "", 0)
	feed(tr, gone, 5, "tcp://127.0.0.1:1", 0)
	for _, k := range []zmq.Event{retried, connected} {
		assert.False(t, feed(tr, k, 6, "tcp://127.0.0.2:1", 0).replace)
	}
	due, ok = tr.next()
	require.True(t, ok, "the lost connection's check is still there")
	assert.Equal(t, "tcp://127.0.0.1:1", tr.expire(due).dropped)
}

// A socket that refuses ZMTP 1.0 and 2.0 peers (strict) gives the slot
// only to a connection whose handshake succeeded: a connection that leaves
// before its handshake, or stays silent while a peer's succeeds, is no
// reason to replace the socket. A peer that may have been refused still is.
func TestTrackerStrict(t *testing.T) {
	strict := func() *tracker {
		tr := newTracker("tcp://127.0.0.1:1")
		tr.strict = true
		return tr
	}
	for name, steps := range map[string][]step{
		"connections that end before a handshake": {
			{kind: accepted, fd: 5}, {kind: gone, fd: 5},
			{kind: accepted, fd: 5}, {kind: failedNoInfo}, {kind: gone, fd: 5},
			{kind: accepted, fd: 6}, {kind: handshake}, {kind: gone, fd: 6, replace: true},
		},
		"a silent connection open while the peer arrives": {
			{kind: accepted, fd: 5}, {kind: accepted, fd: 6}, {kind: handshake},
			{kind: accepted, fd: 7}, {kind: gone, fd: 7},
			// Either of 5 and 6 may be the peer.
			{kind: gone, fd: 5, replace: true},
		},
		"a peer known": {
			{kind: accepted, fd: 5}, {kind: handshake}, {kind: accepted, fd: 6}, {kind: gone, fd: 6},
			{kind: gone, fd: 5, replace: true},
		},
		"a silent connection taken for the peer ends at the handshake time-out": {
			{kind: accepted, fd: 5}, {kind: accepted, fd: 6}, {kind: handshake},
			{kind: failedNoInfo}, {kind: gone, fd: 5},
			{kind: gone, fd: 6, replace: true},
		},
		"a handshake while one that may hold the slot is open": {
			{kind: accepted, fd: 5}, {kind: accepted, fd: 6}, {kind: handshake},
			{kind: accepted, fd: 7}, {kind: handshake, replace: true},
		},
		"a connection never seen arriving": {
			{kind: gone, fd: 9, replace: true},
		},
	} {
		t.Run(name, func(t *testing.T) { runWith(t, strict(), "tcp://127.0.0.1:1", steps) })
	}
}

// When a check falls due while events wait to be read (the loop was held),
// the events go first: libzmq announced the reconnection before the check
// fell due, so the peer left; libzmq did not give up on it.
func TestDrainBeforeExpire(t *testing.T) {
	const ep = "tcp://127.0.0.1:1"
	tr := run(t, ep, []step{{kind: connected, fd: 5}, {kind: handshake}, {kind: gone, fd: 5}})
	g := &generation{events: make(chan zsock.Event, 1)}
	g.events <- zsock.Event{Kind: retried, Endpoint: ep}
	v := (&Link{}).drainEvents(g, tr)
	assert.True(t, v.replace)
	assert.Equal(t, "the peer left", v.why)
	assert.Empty(t, v.dropped, "not reported as a connection libzmq gave up on")
	_, ok := tr.next()
	assert.False(t, ok, "no check left to expire")
}
