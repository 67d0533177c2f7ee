package pairlink

import (
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// handshakeFailed are the events of a connection whose handshake failed.
const handshakeFailed = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH

// watchEvents are the events a generation's socket is monitored for.
const watchEvents = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED |
	zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED | handshakeFailed

// How long a connection the socket made may be lost without libzmq
// announcing that it reconnects (it does so at once: CONNECT_RETRIED)
// before the link concludes libzmq gave up on it. After a failed handshake
// (a refused CURVE client, a peer that does not speak ZMTP) the wait
// doubles with each replacement in a row, up to giveUpMax, so such a peer
// is not hammered. The same figures as zsock's redial.
const (
	giveUpAfter = 250 * time.Millisecond
	giveUpMax   = 10 * time.Second
)

// tracker follows the connections of one generation's socket, from its
// monitor's events, and says when the socket must be replaced.
//
// libzmq's monitor names a connection (by its descriptor) when it is
// accepted or made and when it ends, but not when its handshake succeeds;
// a handshake failure is reported just before the connection's end. So a
// successful handshake can be pinned on a connection only when that is the
// only one open, and that is also when the connection is known to hold
// PAIR's one slot: nothing else could have taken it first. Every other
// case is decided so that a peer is never left refused: the socket is
// replaced, and the peer, which a connecting libzmq socket (a zmqkit one
// included) makes again by itself, gets a fresh socket with a free slot.
type tracker struct {
	conns    map[int]*trackedConn // open connections, by descriptor
	holder   int                  // the accepted connection known to hold the slot, or -1
	failed   zmq.Event            // the handshake failure reported just before, or 0
	checks   map[string]check     // connect endpoints whose connection was lost
	connects []string             // the socket's connect endpoints, as given
	// strict: the socket refuses ZMTP 1.0 and 2.0 peers, so only a
	// connection whose handshake succeeded (ready) can hold the slot.
	strict bool
}

type trackedConn struct {
	accepted bool   // accepted on a bound endpoint; else made to a connect endpoint
	endpoint string // as the monitor names it
	ready    bool   // its handshake succeeded (or may have: see event)
}

// check waits for libzmq to say that it reconnects a lost connection.
type check struct {
	due  time.Time
	peer bool // the connection had completed its handshake
}

// verdict is what the tracker concludes from an event.
type verdict struct {
	replace bool
	why     string
	dropped string // the peer's connection libzmq gave up on (a protocol error)
	failed  bool   // the replacement follows a failed handshake
}

func newTracker(connects ...string) *tracker {
	return &tracker{conns: map[int]*trackedConn{}, holder: -1, checks: map[string]check{}, connects: connects}
}

func replace(why string) verdict { return verdict{replace: true, why: why} }

// event takes the socket's next event; failures is how many replacements
// after failed handshakes came in a row.
func (t *tracker) event(ev zsock.Event, now time.Time, failures int) verdict {
	failed := t.failed
	t.failed = 0
	switch ev.Kind {
	case zmq.EVENT_ACCEPTED:
		t.conns[ev.Value] = &trackedConn{accepted: true, endpoint: ev.Endpoint}
	case zmq.EVENT_CONNECTED:
		ep := endpoint.Of(ev.Endpoint, t.connects) // libzmq may name it by its address
		t.conns[ev.Value] = &trackedConn{endpoint: ep}
		return t.reconnecting(ep)
	case zmq.EVENT_CONNECT_DELAYED, zmq.EVENT_CONNECT_RETRIED:
		return t.reconnecting(endpoint.Of(ev.Endpoint, t.connects))
	case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		t.failed = ev.Kind
	case zmq.EVENT_HANDSHAKE_SUCCEEDED:
		return t.handshake()
	case zmq.EVENT_DISCONNECTED:
		return t.disconnected(ev, failed, now, failures)
	}
	return verdict{}
}

// handshake takes a successful handshake. It is the one of the connection
// still handshaking, if there is one; if there are several, each is taken
// to have succeeded.
func (t *tracker) handshake() verdict {
	fd, candidates, accepted := -1, 0, false
	for d, c := range t.conns {
		if !c.ready {
			c.ready = true
			fd, candidates = d, candidates+1
			accepted = accepted || c.accepted
		}
	}
	// Strict, none of the others open can hold the slot unless its own
	// handshake succeeded before: silent connections do not count.
	alone := len(t.conns) == candidates || !t.strict && len(t.conns) == 1
	switch {
	case !accepted || t.holder >= 0:
		// A connection made holds the slot from the start (a connecting
		// PAIR attaches its peer's pipe at connect time), and one accepted
		// while the slot was known to be held was refused.
		return verdict{}
	case candidates == 1 && alone:
		t.holder = fd
		return verdict{}
	case t.strict && alone:
		// One of the candidates took the free slot; which one is not
		// known, so each one's leaving counts as the peer's.
		return verdict{}
	}
	// Another connection may have the slot (a non-ZMTP client taken for
	// ZMTP 1.0 gets it with no event), so this peer may have been refused.
	return replace("a peer completed its handshake while another connection may have held PAIR's only slot")
}

// disconnected takes the end of a connection; failed is the handshake
// failure reported just before it, if any.
func (t *tracker) disconnected(ev zsock.Event, failed zmq.Event, now time.Time, failures int) verdict {
	c := t.conns[ev.Value]
	delete(t.conns, ev.Value)
	if c == nil { // not seen arriving: assume the worst
		c = &trackedConn{accepted: true, endpoint: ev.Endpoint, ready: true}
	}
	if !c.accepted {
		// libzmq says at once whether it reconnects: wait for that.
		wait := giveUpAfter
		if !c.ready {
			wait = min(giveUpAfter<<min(failures, 6), giveUpMax)
		}
		t.checks[c.endpoint] = check{due: now.Add(wait), peer: c.ready}
		return verdict{}
	}
	switch {
	case ev.Value == t.holder:
		return replace("the peer left")
	case t.holder >= 0:
		return verdict{} // refused, or never past its handshake: it had no slot
	case t.strict && !c.ready:
		return verdict{} // never past its handshake: it had no slot
	case failed == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL || failed == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		return verdict{} // a ZMTP 3 handshake that failed: it never had the slot
	case t.strict && failed == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
		// Reported only while a handshake is under way (libzmq's
		// stream_engine_base::error): it never had the slot. Not so for
		// a ZMTP 1.0 peer, which has no handshake to fail, but strict
		// sockets refuse those. So a silent connection taken for the
		// peer at an ambiguous handshake, which ends at the handshake
		// time-out, does not reset the peer's connection.
		return verdict{}
	}
	// It may have had the slot, and a departed connection keeps it until
	// the socket has read what it left: a peer connecting now might be
	// refused.
	return replace("a connection that may have held PAIR's only slot left")
}

// reconnecting takes libzmq's word that it is (re)connecting the connect
// endpoint ep.
func (t *tracker) reconnecting(ep string) verdict {
	c, ok := t.checks[ep]
	if !ok {
		return verdict{}
	}
	delete(t.checks, ep)
	if c.peer {
		return replace("the peer left")
	}
	return verdict{} // libzmq retries a handshake that failed for want of a connection
}

// next returns when the earliest check falls due.
func (t *tracker) next() (time.Time, bool) {
	var due time.Time
	for _, c := range t.checks {
		if due.IsZero() || c.due.Before(due) {
			due = c.due
		}
	}
	return due, !due.IsZero()
}

// expire takes the checks due by now: libzmq gave up on those connections.
func (t *tracker) expire(now time.Time) verdict {
	for ep, c := range t.checks {
		if c.due.After(now) {
			continue
		}
		delete(t.checks, ep)
		if c.peer {
			v := replace("libzmq dropped the connection to the peer for a protocol error and would not make it again")
			v.dropped = ep
			return v
		}
		v := replace("libzmq gave up on a connection whose handshake failed")
		v.failed = true
		return v
	}
	return verdict{}
}
