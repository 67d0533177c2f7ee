package zmqkit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// RRClient sends requests and waits for their replies (a ZeroMQ DEALER
// socket speaking the REQ/REP wire protocol). It connects by default.
//
// An RRClient is safe for concurrent use by multiple goroutines, and many
// requests may be in flight on one client at once (while any is, one of the
// waiting goroutines blocks in poll(2) and holds an OS thread: see the
// package documentation): each is sent as
// [request-id, "", request], a REP peer or an RRServer answers
// [request-id, "", reply], and the id matches every reply to its own
// request. A reply that comes after its request has given up (its ctx ended,
// or a retry was answered first) is discarded and counted in Stats.Dropped;
// it is never handed to another request. So, unlike a REQ socket, the client
// never gets stuck: a request that times out leaves it fully usable.
//
// It works against RRServer (which handles several requests at once) and
// against any plain REP peer (which answers one at a time, in order). With
// several endpoints, requests are spread round-robin across the servers
// that are connected.
//
// Requests are sent only while a server is up (its connection complete,
// the ZMTP handshake done): while none is, Request waits to send until its
// ctx ends, and a server that restarts on the same endpoint is found again
// by reconnection (every 100 ms by default, WithReconnectInterval) without
// recreating the client. With several servers (or a client that binds as
// well), one that goes down, or is not reached, is taken out of the
// round-robin as soon as the client sees it (its connection is closed and watched by a probe connection until
// the server answers again; the probe is a second DEALER, with its
// monitor, made the first time a server is taken out), so requests go to
// the others; so is one that AddEndpoint connects while others are up,
// until it is reached. A server put back, or not taken out because its
// connection was already made, may be given requests during its
// handshake: it gets them once the handshake is done, and they are lost
// with it if it never is (WithRetries covers that). A server that
// connected to the client (which binds) is not tracked: libzmq only queues
// to such a server while it is connected. The client does not use
// ZMQ_IMMEDIATE for this: with it libzmq drops, with a connection that
// ends, the replies the client received on it but had not yet read, so a
// server that replied and then closed would lose its last replies.
//
// The client tells its servers apart in libzmq's events by the endpoint
// each was given, or by the address its host name resolves to: libzmq
// names a connection by its resolved address once it has reconnected.
// With several servers on one port given by host name
// (tcp://a:5555,tcp://b:5555), the client looks the names up itself (with
// a 250 ms time-out; answers are kept five seconds), and a server
// whose name it cannot resolve to the address libzmq connected to is not
// followed after a reconnection.
//
// Requests in flight to a server that dies are lost; their callers see
// their ctx end, or a retry (WithRetries). So may be a request sent in the
// moment a server closes, before the client has seen its connection end:
// WithRetries covers that too. An inproc:// server is not reconnected to
// once it has closed: a restartable server needs tcp:// or ipc://.
type RRClient struct {
	base
	sock   *zsock.Socket
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan rrReply
	trying  map[uint64]context.CancelCauseFunc // tries in flight, with retries
	outbox  []outgoing                         // requests for the reader to send

	// The servers the client connects to, with the state of each (see
	// serverState), and the probe socket that watches those taken out of
	// the round-robin; guarded by pmu, which is never held while a socket
	// is called or made.
	pmu     sync.Mutex
	servers []*server
	probe   *zsock.Socket
	wake    func()               // sock's Interrupt, once sock is made
	listens func(ep string) bool // sock's Listens, likewise
	noProbe bool                 // the probe could not be made: servers stay in
	pclosed bool                 // Close ran: no probe may be made
	binds   bool                 // the client binds too: servers that connected to it are not tracked
	changed atomic.Bool          // a server went down or came back: the reader rebalances

	// reader is a one-slot semaphore: the waiting Request that holds it
	// is the only goroutine that sends or receives on the socket: it
	// sends every request (the others queue theirs in outbox and interrupt
	// its wait), receives every reply and hands each to its owner. So the
	// client needs no goroutine of its own. (AddEndpoint's connect may
	// process the socket's commands meanwhile; zsock then wakes the reader.)
	reader chan struct{}
}

// server is one endpoint the client connects to.
type server struct {
	ep       string
	net      bool // tcp or ipc (an inproc server is up from the connect on: no handshake)
	state    serverState
	restored bool // connected again after the probe found it back
	// its connections made on the socket and not yet lost, by descriptor
	// (a handshake may be under way)
	conns map[int]bool
}

// connected reports whether sv has a connection made (a server being
// reached does not).
func (sv *server) connected() bool { return len(sv.conns) > 0 }

// serverState is where a server stands.
type serverState int

const (
	pending serverState = iota // connected on the socket, no handshake yet
	up                         // handshake done, not lost since
	down                       // on the socket, lost or not reached (libzmq retries)
	retired                    // disconnected from the socket; the probe connects to it
	back                       // the probe's handshake succeeded: to connect again
)

// outgoing is a request waiting in the outbox.
type outgoing struct {
	id  uint64
	idb [8]byte
	req []byte
}

var replyChans = sync.Pool{New: func() any { return make(chan rrReply, 1) }}

type rrReply struct {
	body []byte
	err  error
}

// NewRRClient connects (or, with "@", binds) the endpoints and returns an
// RRClient; it does not wait for a server.
func NewRRClient(endpoints string, opts ...Option) (*RRClient, error) {
	c := &RRClient{pending: map[uint64]chan rrReply{}, trying: map[uint64]context.CancelCauseFunc{}, reader: make(chan struct{}, 1)}
	if eps, err := endpoint.Parse(endpoints, false); err == nil { // else openSocket reports it
		for _, ep := range eps {
			c.track(ep)
		}
	}
	mk := func() zsock.Config {
		return zsock.Config{Type: zmq.DEALER, Wait: zsock.Blocking, Monitor: &zsock.Monitor{
			Events: zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED,
			On:     c.serverEvent,
		}}
	}
	var err error
	if c.sock, err = c.openSocket(c, kindRRClient, endpoints, false, opts, mk); err != nil {
		return nil, err
	}
	c.pmu.Lock()
	c.wake, c.listens = c.sock.Interrupt, c.sock.Listens
	c.pmu.Unlock()
	// A client that binds sends at once: have the reader take out first
	// the servers it connects to that are not reached yet.
	c.changed.Store(true)
	return c, nil
}

// track records an endpoint before it is bound or connected (a handshake
// may be reported before Attach returns); the function returned forgets it
// again.
func (c *RRClient) track(ep endpoint.Endpoint) (forget func()) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if ep.Bind {
		was := c.binds
		c.binds = true
		return func() {
			c.pmu.Lock()
			defer c.pmu.Unlock()
			c.binds = was
		}
	}
	if slices.ContainsFunc(c.servers, func(s *server) bool { return s.ep == ep.Addr }) {
		return func() {} // libzmq makes one connection to an endpoint
	}
	net := strings.HasPrefix(ep.Addr, "tcp://") || strings.HasPrefix(ep.Addr, "ipc://")
	sv := &server{ep: ep.Addr, net: net}
	if !net {
		sv.state = up
	}
	c.servers = append(c.servers, sv)
	return func() {
		c.pmu.Lock()
		defer c.pmu.Unlock()
		c.servers = slices.DeleteFunc(c.servers, func(s *server) bool { return s == sv })
	}
}

// Request sends req and returns its reply. It returns when the reply comes;
// when ctx ends, with an error matching ctx.Err(); when the client is
// closed, with ErrClosed; after the last try allowed by WithRetries, with an
// error matching ErrNoReply; or, for an error reply from an RRServer, with a
// *RemoteError carrying the server's message. req may be reused once
// Request returns.
func (c *RRClient) Request(ctx context.Context, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, c.opError("request", err)
	}
	id := c.nextID.Add(1)
	var idb [8]byte
	binary.BigEndian.PutUint64(idb[:], id)
	ch := replyChans.Get().(chan rrReply)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	answered := false
	defer func() { c.forget(id, ch, answered) }()

	tries := c.o.tries
	for try := 1; ; try++ {
		tctx, cancel := ctx, context.CancelFunc(nil)
		if c.o.tryTimeout > 0 {
			tctx, cancel = c.tryContext(ctx, id)
		}
		r, err := c.try(tctx, id, idb, req, ch)
		lost := cancel != nil && errors.Is(context.Cause(tctx), errServerLost)
		if cancel != nil {
			cancel()
		}
		switch {
		case err == nil:
			answered = true
			return r.body, r.err
		case ctx.Err() != nil:
			return nil, c.opError("request", ctx.Err())
		case !lost && !errors.Is(err, context.DeadlineExceeded):
			return nil, c.opError("request", err)
		case try >= tries:
			return nil, c.opError("request", fmt.Errorf("%w after %d tries of %v", ErrNoReply, tries, c.o.tryTimeout))
		}
		c.o.logger.Debug("zmqkit: rrclient retry", "try", try+1, "of", tries, "server lost", lost)
	}
}

// errServerLost ends a try early: a server the client was connected to
// disconnected, and the request may have been in it.
var errServerLost = errors.New("zmqkit: a server disconnected")

// tryContext is one try's ctx with retries on: it ends after the per-try
// time-out, or at once, with errServerLost as its cause, when a server
// disconnects. The returned function releases it.
func (c *RRClient) tryContext(ctx context.Context, id uint64) (context.Context, context.CancelFunc) {
	lostCtx, lose := context.WithCancelCause(ctx)
	tctx, cancel := context.WithTimeout(lostCtx, c.o.tryTimeout)
	c.mu.Lock()
	c.trying[id] = lose
	c.mu.Unlock()
	return tctx, func() {
		c.mu.Lock()
		delete(c.trying, id)
		c.mu.Unlock()
		cancel()
		lose(nil)
	}
}

// serverEvent follows the servers' connections on the client's socket
// (from its monitor's goroutine). A handshake puts a server in the
// round-robin. A server lost, or not reached, is left for the reader to
// take out (see rebalance); a server lost ends every try in flight with
// errServerLost, with retries on: we cannot tell which server had which
// request, so every one is sent again, to the servers still up. A server
// that had connected to the client (which binds) is not tracked, but its
// loss ends the tries too.
func (c *RRClient) serverEvent(ev zsock.Event) {
	c.pmu.Lock()
	listens := c.listens
	c.pmu.Unlock()
	if listens != nil && listens(ev.Endpoint) {
		// A server that connected to the client: not tracked, but its
		// loss ends the tries too.
		if ev.Kind == zmq.EVENT_DISCONNECTED {
			c.loseTries()
		}
		return
	}
	name := c.serverName(ev.Endpoint)
	c.pmu.Lock()
	var sv *server
	lost := false
	switch ev.Kind {
	case zmq.EVENT_CONNECTED:
		if sv = c.serverNamed(name, pending, down); sv != nil {
			if sv.conns == nil {
				sv.conns = map[int]bool{}
			}
			sv.conns[ev.Value] = true
		}
	case zmq.EVENT_HANDSHAKE_SUCCEEDED:
		if sv = c.serverNamed(name, pending, down); sv != nil {
			sv.state = up
			c.changed.Store(true) // others down may go out now
		}
	case zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECT_RETRIED:
		if ev.Kind == zmq.EVENT_DISCONNECTED {
			for _, s := range c.servers {
				delete(s.conns, ev.Value)
			}
			if ev.ByDetach {
				// Closed as its server was taken out: it says nothing
				// of that server, which may be back by now.
				c.pmu.Unlock()
				return
			}
		}
		if sv = c.serverNamed(name, up, pending, down); sv != nil {
			lost = sv.state == up
			sv.state = down
			c.changed.Store(true)
		}
	}
	wake, binds := c.wake, c.binds
	c.pmu.Unlock()
	if sv != nil && ev.Kind != zmq.EVENT_CONNECTED && wake != nil {
		wake() // requests may wait for a server, or the reader must rebalance
	}
	if ev.Kind == zmq.EVENT_DISCONNECTED && (lost || sv == nil && binds) {
		c.loseTries()
	}
}

// loseTries ends every try in flight with errServerLost.
func (c *RRClient) loseTries() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lose := range c.trying {
		lose(errServerLost)
	}
}

// probeEvent follows the probe's connections: a handshake means a server
// taken out is back.
func (c *RRClient) probeEvent(ev zsock.Event) {
	name := c.serverName(ev.Endpoint)
	c.pmu.Lock()
	sv := c.serverNamed(name, retired)
	if sv != nil {
		sv.state = back
		c.changed.Store(true)
	}
	wake := c.wake
	c.pmu.Unlock()
	if sv != nil && wake != nil {
		wake()
	}
}

// serverName is the endpoint of the tcp or ipc server that libzmq names
// name in an event, or name itself (see endpoint.Of). It may look a host
// name up: callers hold no lock.
func (c *RRClient) serverName(name string) string {
	c.pmu.Lock()
	eps := make([]string, 0, len(c.servers))
	for _, sv := range c.servers {
		if sv.net {
			eps = append(eps, sv.ep)
		}
	}
	c.pmu.Unlock()
	return endpoint.Of(name, eps)
}

// serverNamed finds the server connected as ep, if it is in one of the
// states given (the first, if the endpoint is connected twice). Callers
// hold pmu.
func (c *RRClient) serverNamed(ep string, states ...serverState) *server {
	for _, sv := range c.servers {
		if sv.net && sv.ep == ep && slices.Contains(states, sv.state) {
			return sv
		}
	}
	return nil
}

// rebalance, from the reader, takes the servers that are down out of the
// round-robin while another is up, and puts back those the probe found
// back. A server being connected for the first time is taken out only
// while it has no connection yet (not reached), so that servers started
// together do not take each other out. It returns the errors of the
// client's socket (a client closing, say); it reports those of moving a
// server and leaves the server as it was.
func (c *RRClient) rebalance() error {
	c.pmu.Lock()
	var out, in []*server
	for _, sv := range c.servers {
		switch {
		case sv.state == back:
			in = append(in, sv)
		case c.retirable(sv):
			out = append(out, sv)
		}
	}
	c.pmu.Unlock()
	for _, sv := range out {
		if err := c.retire(sv); err != nil {
			return err
		}
	}
	for _, sv := range in {
		if err := c.restore(sv); err != nil {
			return err
		}
	}
	return nil
}

// retirable reports whether sv should be taken out now. Callers hold pmu.
func (c *RRClient) retirable(sv *server) bool {
	if c.noProbe || !sv.net || sv.state != down && (sv.state != pending || sv.restored || sv.connected()) {
		return false
	}
	return c.anyUpLocked()
}

// anyUpLocked reports whether requests have somewhere to go: a server
// the client connected to is up, or the client binds (libzmq then queues
// only to the servers connected to it). Callers hold pmu.
func (c *RRClient) anyUpLocked() bool {
	return c.binds || slices.ContainsFunc(c.servers, func(sv *server) bool { return sv.state == up })
}

// drain reads and hands out every reply already received.
func (c *RRClient) drain() error {
	for {
		msg, ok, err := c.sock.TryRecvMessage()
		if err != nil || !ok {
			return err
		}
		c.dispatch(msg)
	}
}

// retire takes sv out, if it still should go: its replies read, off the
// socket, onto the probe.
func (c *RRClient) retire(sv *server) error {
	probe, err := c.probeSocket()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return err
		}
		// No probe (the socket limit, say): servers stay in from now
		// on, as with plain libzmq, and requests may wait in the queue of
		// one that is down. Said once.
		c.report(c.opError("watch server", err))
		c.pmu.Lock()
		c.noProbe = true
		c.pmu.Unlock()
		return nil
	}
	if err := c.drain(); err != nil {
		return err
	}
	c.pmu.Lock()
	if !c.retirable(sv) { // it came up meanwhile
		c.pmu.Unlock()
		return nil
	}
	sv.state = retired
	c.pmu.Unlock()
	if err := c.sock.Detach(sv.ep); err != nil {
		return c.rebalanceFailed(sv, down, err)
	}
	// The connections Detach closed (one made, its handshake not done: a
	// server restarting, say) are reported by zsock's monitor.
	c.pmu.Lock()
	sv.conns = nil
	c.pmu.Unlock()
	c.o.logger.Debug("zmqkit: rrclient server out", "endpoint", sv.ep)
	if err := probe.Attach(endpoint.Endpoint{Addr: sv.ep}); err != nil {
		_ = c.rebalanceFailed(sv, down, err)
		return c.restore(sv) // back on the socket, if not watched
	}
	return nil
}

// restore puts a server the probe found back into the round-robin.
func (c *RRClient) restore(sv *server) error {
	c.pmu.Lock()
	probe := c.probe
	sv.state, sv.restored = pending, true
	c.pmu.Unlock()
	if probe != nil {
		_ = probe.Detach(sv.ep) // not attached, if retire's Attach failed
	}
	c.o.logger.Debug("zmqkit: rrclient server back", "endpoint", sv.ep)
	if err := c.sock.Attach(endpoint.Endpoint{Addr: sv.ep}); err != nil {
		// Lost to the client: say so once, and forget it.
		c.drop(sv)
		return c.rebalanceFailed(sv, retired, err)
	}
	return nil
}

// rebalanceFailed reports a rebalance that failed over sv, which is left
// in state st; it returns err only when the client is closing.
func (c *RRClient) rebalanceFailed(sv *server, st serverState, err error) error {
	if errors.Is(err, zsock.ErrClosed) || errors.Is(err, ErrClosed) {
		return err
	}
	c.pmu.Lock()
	sv.state = st
	c.pmu.Unlock()
	c.report(c.opError("rebalance servers", fmt.Errorf("%s: %w", sv.ep, err)))
	return nil
}

// drop forgets a server.
func (c *RRClient) drop(sv *server) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.servers = slices.DeleteFunc(c.servers, func(s *server) bool { return s == sv })
}

// probeSocket returns the probe, made on first use: a DEALER with the
// client's socket options and ZMQ_IMMEDIATE, which carries no message and
// only tells, by its handshakes, when a server is back.
func (c *RRClient) probeSocket() (*zsock.Socket, error) {
	c.pmu.Lock()
	p, closed := c.probe, c.pclosed
	c.pmu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case p != nil:
		return p, nil
	}
	// Only the reader makes it, so there is no other to race with, but
	// Close may run meanwhile.
	cfg := zsock.Config{Type: zmq.DEALER, Wait: zsock.Netpoller, Redial: true,
		Options: append(c.o.socketOptions(), zsock.Option{Name: "ZMQ_IMMEDIATE", Set: func(z *zmq.Socket) error { return z.SetImmediate(true) }}),
		// Its CURVE handshake failures are reported as the socket's are.
		Monitor: joinMonitors(&zsock.Monitor{Events: zmq.EVENT_HANDSHAKE_SUCCEEDED, On: c.probeEvent}, c.securityMonitor())}
	p, err := c.zctx.newSocket(cfg)
	if err != nil {
		return nil, err
	}
	c.pmu.Lock()
	closed = c.pclosed
	if !closed {
		c.probe = p
	}
	c.pmu.Unlock()
	if closed {
		_ = p.Close()
		return nil, ErrClosed
	}
	return p, nil
}

// try sends the request once and waits for a reply to it: it queues the
// request for the reader and, while no reader is there, is the reader.
func (c *RRClient) try(ctx context.Context, id uint64, idb [8]byte, req []byte, ch chan rrReply) (rrReply, error) {
	c.mu.Lock()
	c.outbox = append(c.outbox, outgoing{id: id, idb: idb, req: req})
	c.mu.Unlock()
	c.sock.Interrupt() // the reader sends it
	defer c.unqueue(id)
	for {
		select {
		case r := <-ch:
			return r, nil
		default:
		}
		select {
		case r := <-ch:
			return r, nil
		case c.reader <- struct{}{}:
			r, done, err := c.read(ctx, ch)
			<-c.reader
			if done || err != nil {
				return r, err
			}
		case <-ctx.Done():
			return rrReply{}, ctx.Err()
		case <-c.done:
			return rrReply{}, ErrClosed
		}
	}
}

// read is the reader: it sends the queued requests and receives replies
// for every waiting request, until ch's own reply arrives (done) or ctx
// ends. Only the holder of c.reader calls it.
func (c *RRClient) read(ctx context.Context, ch chan rrReply) (rrReply, bool, error) {
	for {
		select {
		case r := <-ch: // delivered by the previous reader
			return r, true, nil
		default:
		}
		if c.changed.Swap(false) {
			if err := c.rebalance(); err != nil {
				return rrReply{}, false, err
			}
			continue // rebalance may have delivered ch's reply
		}
		blocked, err := c.send()
		if err != nil {
			return rrReply{}, false, err
		}
		if blocked != sendable {
			// Requests wait for a server, or for room: wait for that
			// too, or for a reply, or a request queued.
			msg, ok, err := c.sock.TryRecvMessage()
			switch {
			case err != nil:
				return rrReply{}, false, err
			case ok:
				c.dispatch(msg)
			default:
				// With no server up, the queues of those pending have
				// room: only the monitor's interrupt says one is up.
				if err := c.sock.Wait(ctx, true, blocked == noRoom); err != nil {
					return rrReply{}, false, err
				}
			}
			continue
		}
		// Wait for a reply, or a request queued.
		msg, err := c.sock.RecvMessageOrInterrupt(ctx)
		switch {
		case errors.Is(err, zsock.ErrInterrupted):
		case err != nil:
			return rrReply{}, false, err
		default:
			c.dispatch(msg)
		}
	}
}

// blockage is why send left requests queued.
type blockage int

const (
	sendable blockage = iota // it did not: every request went out
	noServer                 // no server is up
	noRoom                   // every queue is full
)

// send sends the queued requests, as many as the socket takes now, and
// says why the others wait. c.mu is held throughout, so a try that ends
// takes its request back before it can be sent (its caller may reuse req).
func (c *RRClient) send() (blockage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.outbox) == 0 {
		return sendable, nil
	}
	if !c.serverUp() {
		return noServer, nil
	}
	sent := 0
	defer func() {
		if sent > 0 {
			c.outbox = append(c.outbox[:0], c.outbox[sent:]...)
		}
	}()
	for i := range c.outbox {
		o := &c.outbox[i]
		ok, err := c.sock.TrySendMessage(o.idb[:], nil, o.req)
		if err != nil {
			return sendable, err
		}
		if !ok {
			return noRoom, nil
		}
		sent++
		c.stats.sent.Add(1)
	}
	return sendable, nil
}

// serverUp reports whether a request may be sent: no rebalance is owed,
// and a server the client connected to is up, or the client binds (libzmq
// then queues only to the servers connected to it).
func (c *RRClient) serverUp() bool {
	if c.changed.Load() {
		return false // a server may have to go out first (the reader is interrupted)
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.anyUpLocked()
}

// unqueue takes a request back from the outbox if it was not sent.
func (c *RRClient) unqueue(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.outbox {
		if c.outbox[i].id == id {
			c.outbox = append(c.outbox[:i], c.outbox[i+1:]...)
			return
		}
	}
}

// dispatch counts one message received and hands it, a reply, to the
// request it answers.
func (c *RRClient) dispatch(msg [][]byte) {
	c.stats.received.Add(1)
	if len(msg) < 3 || len(msg[0]) != 8 || len(msg[1]) != 0 {
		c.stats.malformed.Add(1)
		c.report(c.opError("receive", malformed(msg[len(msg)-1], nil, "reply of %d frames is not [request-id, \"\", reply]", len(msg))))
		return
	}
	id := binary.BigEndian.Uint64(msg[0])
	c.mu.Lock()
	ch, ok := c.pending[id]
	if ok {
		delete(c.pending, id) // a duplicate reply to a retried request is late
	}
	c.mu.Unlock()
	if !ok {
		c.stats.dropped.Add(1)
		return
	}
	var r rrReply
	switch body := msg[2]; {
	case len(msg) != 3:
		c.stats.malformed.Add(1)
		r.err = malformed(body, nil, "reply has %d body frames, want 1", len(msg)-2)
	case bytes.HasPrefix(body, []byte(ErrorReplyPrefix)):
		r.err = &RemoteError{Message: string(body[len(ErrorReplyPrefix):])}
	default:
		r.body = body
	}
	ch <- r // buffered, and only ever sent once
}

// forget removes a finished request; a reply that reached it too late is
// counted as dropped.
func (c *RRClient) forget(id uint64, ch chan rrReply, answered bool) {
	c.mu.Lock()
	_, waiting := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if answered || waiting {
		// Its one reply was taken, or no reply can come now: ch is empty
		// for good, and another request may use it.
		replyChans.Put(ch)
		return
	}
	// dispatch took the request: its reply is late, dropped, and may still
	// be on its way to ch, which is therefore not reused.
	select {
	case <-ch:
		c.stats.dropped.Add(1)
	default:
	}
}

// AddEndpoint connects (or, with "@", binds) one more endpoint: one more
// server to spread requests over.
func (c *RRClient) AddEndpoint(ep string) error {
	e, err := endpoint.ParseOne(ep, false)
	if err != nil {
		return c.addEndpoint(ep, false) // which reports it
	}
	forget := c.track(e)
	if err := c.addEndpoint(ep, false); err != nil {
		forget()
		return err
	}
	if !e.Bind {
		// With servers up, the reader takes the new one out until it is
		// reached, rather than queue requests to it meanwhile.
		c.changed.Store(true)
		c.sock.Interrupt()
	}
	return nil
}

// Endpoints returns the endpoints bound, with ephemeral ports resolved, then
// those connected.
func (c *RRClient) Endpoints() []string { return c.conn.Endpoints() }

// Stats returns the RRClient's counters: Sent requests (each retry
// included), Received replies, Malformed replies, and Dropped late replies.
func (c *RRClient) Stats() Stats { return c.stats.snapshot() }

// Close closes the client; requests waiting for a reply return ErrClosed.
// Close is idempotent.
func (c *RRClient) Close() error {
	err := c.close(c)
	c.pmu.Lock()
	probe := c.probe
	c.pclosed = true
	c.pmu.Unlock()
	if probe != nil {
		_ = probe.Close() // carries nothing
	}
	return err
}
