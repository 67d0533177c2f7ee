package zmqkit

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// EventKind says what happened to one of an object's connections.
type EventKind int

// The connection events, from libzmq's socket monitor.
const (
	EventListening          EventKind = iota + 1 // a bound endpoint is listening
	EventAccepted                                // a peer connected to a bound endpoint
	EventConnected                               // a connect succeeded
	EventConnectRetried                          // a connect failed or was lost; it will be retried
	EventDisconnected                            // a connection ended (the peer left, went silent, misbehaved)
	EventClosed                                  // a listener closed
	EventHandshakeSucceeded                      // a connection's ZMTP (and CURVE) handshake succeeded
	EventHandshakeFailed                         // a connection's handshake failed (Err says why)
)

var eventNames = [...]string{"", "listening", "accepted", "connected", "connect retried", "disconnected", "closed",
	"handshake succeeded", "handshake failed"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one connection event of an object (see WithEvents).
type Event struct {
	Kind     EventKind
	Endpoint string // the object's endpoint the event is about
	Peer     string // the peer's address where libzmq gives it (tcp: "ip:port"), else ""
	Err      error  // why, for EventHandshakeFailed; the retry interval is not an error
	Time     time.Time
}

func (e Event) String() string {
	s := e.Kind.String() + " " + e.Endpoint
	if e.Peer != "" {
		s += " peer " + e.Peer
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// WithEvents calls f for each connection event of the object: listening,
// accepted, connected, connect retried, disconnected, closed, handshake
// succeeded or failed, with the endpoint and, where libzmq gives it, the
// peer's address. With it, Stats counts Connects, Disconnects,
// HandshakeFailures and the Peers connected now. Without it, no event is
// read: an object that connects over tcp or ipc (from its constructor or
// AddEndpoint), or a pair type, still has a monitor, for zmqkit's own use
// (see the package doc), and the others have none.
//
// f is called from a goroutine of the object's, one event at a time in
// the order libzmq reported them, never under a lock; a panic in f is
// recovered and reported to the error callback. A slow f cannot stall the
// object or libzmq: events wait in a queue of EventQueueLen, and when f
// falls that far behind, later events are dropped and counted in
// Stats.EventsDropped. inproc connections have no events.
//
// Applies to every type and Proxy.
func WithEvents(f func(Event)) Option {
	return option("WithEvents", func(o *options) error {
		if f == nil {
			return invalid("WithEvents", "nil func")
		}
		o.onEvent = f
		return nil
	})
}

// EventQueueLen is how many events wait for a slow WithEvents callback
// before further ones are dropped.
const EventQueueLen = 1024

// eventMonitor turns an object's libzmq monitor into Events: it counts them
// in Stats and queues them for the WithEvents callback, which a goroutine
// of its own calls.
type eventMonitor struct {
	b     *base
	f     func(Event)
	queue chan Event
	done  chan struct{}

	mu    sync.Mutex     // the monitor's goroutine and the socket's replacements
	peers map[int]string // open connections by descriptor: their peer address
}

// monitorEvents are all the events zmqkit turns into Events.
const monitorEvents = zmq.EVENT_LISTENING | zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED |
	zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
	zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH

func newEventMonitor(b *base, f func(Event)) *eventMonitor {
	m := &eventMonitor{b: b, f: f, queue: make(chan Event, EventQueueLen), done: make(chan struct{}), peers: map[int]string{}}
	go m.dispatch()
	return m
}

// monitor is the zsock monitor of one of the object's sockets.
func (m *eventMonitor) monitor() *zsock.Monitor {
	return &zsock.Monitor{Events: monitorEvents, On: m.on}
}

// on takes one libzmq event (on the monitor's goroutine): it counts it and
// queues it, never waiting.
func (m *eventMonitor) on(ev zsock.Event) {
	e := Event{Endpoint: ev.Endpoint, Time: time.Now()}
	st := &m.b.stats
	switch ev.Kind {
	case zmq.EVENT_LISTENING:
		e.Kind = EventListening
	case zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED:
		e.Kind = EventAccepted
		e.Peer = peerAddress(ev.Value)
		if ev.Kind == zmq.EVENT_CONNECTED {
			e.Kind = EventConnected
			if e.Peer == "" {
				e.Peer = endpointAddress(ev.Endpoint)
			}
		}
		m.mu.Lock()
		m.peers[ev.Value] = e.Peer
		m.mu.Unlock()
		st.connects.Add(1)
		st.peers.Add(1)
	case zmq.EVENT_CONNECT_RETRIED:
		e.Kind = EventConnectRetried
	case zmq.EVENT_DISCONNECTED:
		e.Kind = EventDisconnected
		m.mu.Lock()
		peer, ok := m.peers[ev.Value]
		delete(m.peers, ev.Value)
		m.mu.Unlock()
		e.Peer = peer
		st.disconnects.Add(1)
		if ok {
			st.peers.Add(-1)
		}
	case zmq.EVENT_CLOSED:
		e.Kind = EventClosed
	case zmq.EVENT_HANDSHAKE_SUCCEEDED:
		e.Kind = EventHandshakeSucceeded
	default: // a handshake failure
		e.Kind = EventHandshakeFailed
		server := m.b.o.curve != nil && m.b.o.curve.server
		e.Err = fmt.Errorf("%s", handshakeFailure(ev, server))
		st.handshakeFailures.Add(1)
	}
	select {
	case m.queue <- e:
	default:
		st.eventsDropped.Add(1)
	}
}

// dispatch calls the callback for each queued event, recovering a panic.
func (m *eventMonitor) dispatch() {
	defer close(m.done)
	for e := range m.queue {
		m.call(e)
	}
}

func (m *eventMonitor) call(e Event) {
	defer func() {
		if r := recover(); r != nil {
			m.b.report(&HandlerError{Err: fmt.Errorf("events callback panicked: %v", r), Panic: r})
		}
	}()
	m.f(e)
}

// stop ends the dispatch once the queued events are delivered; the
// object's monitors have stopped.
func (m *eventMonitor) stop() {
	close(m.queue)
	<-m.done
}

// peerAddress is the address of the peer of libzmq's connection fd, "" if
// it cannot tell (an ipc socket, a connection already gone). libzmq gives
// the descriptor, not the address, in its version 1 events.
func peerAddress(fd int) string {
	sa, err := syscall.Getpeername(fd)
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	case *syscall.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	}
	return ""
}

// endpointAddress is the address part of an endpoint: "tcp://a:1" → "a:1".
func endpointAddress(ep string) string {
	for i := 0; i+3 <= len(ep); i++ {
		if ep[i:i+3] == "://" {
			return ep[i+3:]
		}
	}
	return ep
}
