package zsock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

// Event is one event of libzmq's socket monitor.
type Event struct {
	Kind     zmq.Event
	Value    int    // what libzmq attaches: a descriptor, an errno, an interval
	Endpoint string // the endpoint the event is about
	// ByDetach marks a DISCONNECTED that zsock reports for a connection
	// Detach closed (libzmq reports none): it says nothing of the peer.
	ByDetach bool
}

// Monitor asks for a socket's libzmq events.
type Monitor struct {
	Events zmq.Event // the events On is called for
	// On is called from the monitor's goroutine, one event at a time, in
	// the order libzmq reported them; and, once that goroutine has ended,
	// by Close, from the caller's goroutine, with the EVENT_CLOSED of each
	// tcp and ipc listener. It must not block for long: libzmq's
	// I/O thread blocks once a thousand events wait to be read.
	On func(Event)
}

// redialAfter is how long a disconnected endpoint may go without libzmq
// announcing a reconnection (it does so at once: CONNECT_RETRIED, or
// CONNECT_DELAYED) before zsock concludes libzmq gave up on it. Each redial
// of an endpoint whose handshake has not succeeded since doubles the wait,
// up to redialMax: a server that refuses a client (CURVE) is not hammered.
const (
	redialAfter = 250 * time.Millisecond
	redialMax   = 10 * time.Second
)

// monitor reads the events of one socket on an inproc PAIR, in its own
// goroutine, for as long as the socket lives.
type monitor struct {
	s      *Socket
	reader *Socket
	cfg    Monitor
	done   chan struct{}

	// Redial (see Config.Redial): endpoints disconnected and when they are
	// due to be made again; used by the monitor's goroutine only.
	redial   bool
	onRedial func(endpoint string, handshakeFailed bool)
	due      map[string]time.Time
	tries    map[string]int  // redials since the endpoint's last handshake
	failed   map[string]bool // its last connection failed its handshake

	// While On asks for EVENT_DISCONNECTED, the monitor reports the
	// connections Detach closes, of which libzmq reports nothing. Under
	// the socket's mu:
	//   - open: the connections of the socket's connect endpoints whose
	//     CONNECTED On was given, by descriptor;
	//   - closed: those reported closed (a DISCONNECTED libzmq raises for
	//     one of them after all is dropped), until a CONNECTED reuses the
	//     descriptor;
	//   - gone: the DISCONNECTED events Detach made, for the monitor's
	//     goroutine to deliver before it takes any other event.
	open   map[int]openConn
	closed map[int]bool
	gone   []Event
}

// openConn is one connection of a connect endpoint: the endpoint, and
// libzmq's name for the connection in its events.
type openConn struct{ ep, name string }

// Monitor starts monitoring an open socket that has no monitor yet: m.On
// is called for the events m asks for from now on.
func (s *Socket) Monitor(m *Monitor) error {
	s.mu.Lock()
	busy := s.mon != nil || s.closed
	s.mu.Unlock()
	if busy {
		return errors.New("zmqkit: socket closed or monitored already")
	}
	return s.startMonitor(m)
}

// startMonitor starts monitoring s with cfg; its caller holds no lock.
func (s *Socket) startMonitor(cfg *Monitor) error {
	s.zc.mu.RLock() // libzmq makes a socket: see newLocked
	defer s.zc.mu.RUnlock()
	if s.zc.term {
		return ErrClosed
	}
	return s.startMonitorLocked(cfg, false, nil)
}

// redialEvents are the events that tell a connection down for good from
// one libzmq is reconnecting.
const redialEvents = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECTED |
	zmq.EVENT_HANDSHAKE_SUCCEEDED | handshakeFailed

// handshakeFailed are the events of a connection whose ZMTP handshake
// failed (a mechanism mismatch, CURVE keys, a ZAP denial).
const handshakeFailed = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH

// startMonitorLocked is startMonitor for a caller that holds s.zc.mu for
// reading (and not s.mu).
func (s *Socket) startMonitorLocked(cfg *Monitor, redial bool, onRedial func(string, bool)) error {
	addr := fmt.Sprintf("inproc://zmqkit-monitor-%d", s.zc.seq.Add(1))
	// Three steps, so that a failure leaves nothing behind: the reader's
	// socket is made, then libzmq's monitor (its socket binds addr), then
	// the reader connects. A reader that connected first and then found
	// no monitor would leave a pending inproc connection, which aborts
	// the context's termination when the socket limit is reached. Events
	// libzmq raises before the reader connects wait for it.
	reader, err := newLocked(s.zc, Config{Type: zmq.PAIR})
	if err != nil {
		return monitorError(err)
	}
	m := &monitor{s: s, reader: reader, done: make(chan struct{}),
		redial: redial, onRedial: onRedial, due: map[string]time.Time{}, tries: map[string]int{}, failed: map[string]bool{}}
	if cfg != nil {
		m.cfg = *cfg
	}
	events := m.cfg.Events
	if redial {
		events |= redialEvents
	}
	if m.cfg.On != nil && m.cfg.Events&zmq.EVENT_DISCONNECTED != 0 {
		events |= zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
		m.open, m.closed = map[int]openConn{}, map[int]bool{}
	}
	if err := s.zc.reserve(1); err != nil { // libzmq's monitor socket
		_ = reader.Close()
		return err
	}
	s.mu.Lock()
	if s.closed { // Close ran while Attach was starting this monitor
		err = ErrClosed
	} else {
		err = retryReaped(func() error { return s.sock.Monitor(addr, events) })
	}
	if err == nil {
		s.mon = m
	}
	s.mu.Unlock()
	if err != nil {
		s.zc.release(1)
		_ = reader.Close()
		return monitorError(s.zc.socketError("monitor", err))
	}
	if err := reader.attachLocked(endpoint.Endpoint{Addr: addr}); err != nil {
		s.mu.Lock()
		s.mon = nil
		_ = s.sock.Monitor("", 0)
		s.mu.Unlock()
		s.zc.release(1)
		_ = reader.Close()
		return monitorError(err)
	}
	go m.run()
	return nil
}

// monitorError names the monitor in err, unless err is the socket limit
// or a closed context, which are not the monitor's own.
func monitorError(err error) error {
	if errors.Is(err, ErrSocketLimit) || errors.Is(err, ErrClosed) {
		return err
	}
	return &monitorErr{err}
}

type monitorErr struct{ err error }

func (e *monitorErr) Error() string {
	return "zmqkit: monitor: " + strings.TrimPrefix(e.err.Error(), "zmqkit: ")
}

func (e *monitorErr) Unwrap() error { return e.err }

func (m *monitor) run() {
	defer close(m.done)
	for {
		frames, err := m.receive()
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrInterrupted):
			// Events already queued go first (this goroutine may have
			// been held, by a callback or a host lookup): a reconnection
			// libzmq announced before the redial fell due cancels it.
			m.deliverGone()
			for {
				frames, ok, err := m.reader.TryRecvMessage()
				if err != nil || !ok {
					break
				}
				m.take(frames)
			}
			m.redialDue()
		case err != nil:
			return // the reader closed: the monitor stopped
		default:
			m.take(frames)
		}
	}
}

// detached makes, for the monitor's goroutine to deliver, a DISCONNECTED
// for each connection of ep whose CONNECTED On was given: Detach has
// disconnected ep, and libzmq reports none of the connections it closes.
// The connections are those known now, so that one made after an Attach
// of ep again is not taken for one of them. s.mu is held.
func (m *monitor) detached(ep string) {
	if m.open == nil {
		return
	}
	for _, fd := range slices.Sorted(maps.Keys(m.open)) {
		if c := m.open[fd]; c.ep == ep {
			delete(m.open, fd)
			m.closed[fd] = true
			m.gone = append(m.gone, Event{Kind: zmq.EVENT_DISCONNECTED, Value: fd, Endpoint: c.name, ByDetach: true})
		}
	}
	if len(m.gone) > 0 {
		m.reader.Interrupt()
	}
}

// deliverGone gives On the DISCONNECTED events Detach made. They go before
// any event taken after the Detach: a CONNECTED that reuses a descriptor
// must follow the DISCONNECTED of the connection that had it.
func (m *monitor) deliverGone() {
	if m.open == nil {
		return
	}
	m.s.mu.Lock()
	gone := m.gone
	m.gone = nil
	m.s.mu.Unlock()
	for _, ev := range gone {
		m.deliver(ev)
	}
}

// take handles one event's frames: the redial bookkeeping, the open
// connections, then cfg.On.
func (m *monitor) take(frames [][]byte) {
	ev, ok := parseEvent(frames)
	if !ok {
		return
	}
	// A peer of a listener reconnects by itself, and Detach leaves it
	// alone: only the socket's own connections are followed, each known
	// by its connect endpoint (libzmq may name it by its address
	// resolved).
	own := !m.s.Listens(ev.Endpoint)
	var ep string
	if own && (m.redial || m.open != nil) {
		ep = m.s.connectNamed(ev.Endpoint)
	}
	if m.redial && own {
		switch ev.Kind {
		case zmq.EVENT_DISCONNECTED:
			wait := redialAfter << min(m.tries[ep], 6)
			m.due[ep] = time.Now().Add(min(wait, redialMax))
		case zmq.EVENT_CONNECT_RETRIED, zmq.EVENT_CONNECT_DELAYED, zmq.EVENT_CONNECTED:
			delete(m.due, ep) // libzmq is on it
		case zmq.EVENT_HANDSHAKE_SUCCEEDED:
			delete(m.tries, ep)
		case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
			m.failed[ep] = true
		}
	}
	m.deliverGone()
	if m.open != nil && own && ev.Kind&(zmq.EVENT_CONNECTED|zmq.EVENT_DISCONNECTED) != 0 {
		for _, e := range m.follow(ev, ep) {
			m.deliver(e)
		}
		return
	}
	m.deliver(ev)
}

// follow keeps the open connections up to date with ev, a CONNECTED or
// DISCONNECTED of the connect endpoint ep, and returns the events to
// deliver for it.
func (m *monitor) follow(ev Event, ep string) []Event {
	m.s.mu.Lock() // against Detach (see detached)
	defer m.s.mu.Unlock()
	fd := ev.Value
	if ev.Kind == zmq.EVENT_DISCONNECTED {
		if m.closed[fd] {
			delete(m.closed, fd)
			return nil // reported when Detach closed it
		}
		delete(m.open, fd)
		return []Event{ev}
	}
	delete(m.closed, fd) // the descriptor is reused
	out := []Event{ev}
	if old, ok := m.open[fd]; ok {
		// Its descriptor reused: the connection that had it was closed
		// unreported (one whose CONNECTED came only after its endpoint
		// was attached again, so that Detach did not know it).
		out = []Event{{Kind: zmq.EVENT_DISCONNECTED, Value: fd, Endpoint: old.name, ByDetach: true}, ev}
	}
	if m.s.detached[ep] && !slices.Contains(m.s.conns, ep) {
		// Made as Detach ran: libzmq closes it unreported.
		delete(m.open, fd)
		m.closed[fd] = true
		return append(out, Event{Kind: zmq.EVENT_DISCONNECTED, Value: fd, Endpoint: ev.Endpoint, ByDetach: true})
	}
	m.open[fd] = openConn{ep: ep, name: ev.Endpoint}
	return out
}

// deliver calls cfg.On with ev if it asked for ev's kind.
func (m *monitor) deliver(ev Event) {
	if m.cfg.On != nil && ev.Kind&m.cfg.Events != 0 {
		m.cfg.On(ev)
	}
}

// receive reads the next event, or returns DeadlineExceeded when a redial
// falls due first.
func (m *monitor) receive() ([][]byte, error) {
	var next time.Time
	for _, t := range m.due {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if next.IsZero() {
		return m.reader.RecvMessageOrInterrupt(context.Background())
	}
	ctx, cancel := context.WithDeadline(context.Background(), next)
	defer cancel()
	return m.reader.RecvMessageOrInterrupt(ctx)
}

// redialDue connects again every endpoint libzmq gave up on.
func (m *monitor) redialDue() {
	now := time.Now()
	for ep, t := range m.due {
		if t.After(now) {
			continue
		}
		delete(m.due, ep)
		m.tries[ep]++
		failed := m.failed[ep]
		delete(m.failed, ep)
		// Said before it is done, so that whoever sees the new
		// connection at work sees the drop counted too.
		if m.s.connects(ep) && m.onRedial != nil {
			m.onRedial(ep, failed)
		}
		m.s.redial(ep)
	}
}

// connects reports whether ep is one of the socket's connect endpoints,
// and the socket open.
func (s *Socket) connects(ep string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && slices.Contains(s.conns, ep)
}

// Listens reports whether libzmq's name for a connection in an event, ep,
// is one of the socket's listeners: libzmq names a peer that connected to
// a listener by the listener's address, and none of the socket's own
// connections is the one that event is about.
func (s *Socket) Listens(ep string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.bound, ep)
}

// connectNamed is the connect endpoint (or one Detach disconnected) that
// libzmq names name in an event, or name itself (see endpoint.Of). It may
// look a host name up: its caller holds no lock.
func (s *Socket) connectNamed(name string) string {
	s.mu.Lock()
	eps := slices.AppendSeq(slices.Clone(s.conns), maps.Keys(s.detached))
	s.mu.Unlock()
	return endpoint.Of(name, eps)
}

// redial connects again to the connect endpoint ep, unless it was detached
// (or the socket closed). It reports whether it did.
func (s *Socket) redial(ep string) bool {
	s.zc.mu.RLock() // a connect: see newLocked
	defer s.zc.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.zc.term || !slices.Contains(s.conns, ep) {
		return false
	}
	// The dead connection's entry goes first, or libzmq would keep both.
	_ = s.sock.Disconnect(ep)
	return s.sock.Connect(ep) == nil
}

// parseEvent reads a version 1 monitor message: [event (uint16) + value
// (uint32) in native byte order, endpoint].
func parseEvent(frames [][]byte) (Event, bool) {
	if len(frames) != 2 || len(frames[0]) != 6 {
		return Event{}, false
	}
	return Event{
		Kind:     zmq.Event(binary.NativeEndian.Uint16(frames[0])),
		Value:    int(int32(binary.NativeEndian.Uint32(frames[0][2:]))),
		Endpoint: string(frames[1]),
	}, true
}

// closedEventsTo returns the monitor's callback if it asked for
// EVENT_CLOSED, else nil: Close reports the listeners' closing itself.
func (s *Socket) closedEventsTo() func(Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mon == nil || s.mon.cfg.On == nil || s.mon.cfg.Events&zmq.EVENT_CLOSED == 0 {
		return nil
	}
	return s.mon.cfg.On
}

// stopMonitor stops the monitor, if any, and joins its goroutine; libzmq's
// monitor is stopped before its reader closes, as pebbe/zmq4 advises.
func (s *Socket) stopMonitor() {
	s.mu.Lock()
	m := s.mon
	s.mon = nil
	if m != nil {
		_ = s.sock.Monitor("", 0)
	}
	s.mu.Unlock()
	if m == nil {
		return
	}
	s.zc.release(1) // libzmq's monitor socket
	_ = m.reader.Close()
	<-m.done
}
