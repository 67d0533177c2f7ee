package zmqkit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"

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
// Requests are only queued to servers whose connection is complete
// (ZMQ_IMMEDIATE): while no server is reachable, Request waits to send until
// its ctx ends, and a server that restarts on the same endpoint is found
// again by reconnection (every 100 ms by default, WithReconnectInterval)
// without recreating the client. Requests in flight to a server that dies
// are lost; their callers see their ctx end, or a retry (WithRetries). So
// is a request sent in the moment a server closes, before libzmq has seen
// its connection end (the request goes into that connection's queue, and
// libzmq drops the queue with it): WithRetries covers that too. And so,
// sometimes, is a reply a server sends just before it closes the
// connection (a server stopping gracefully, a one-shot worker): with
// ZMQ_IMMEDIATE, libzmq drops the replies the client has received but not
// yet read when a connection ends, and the reply and the end of the
// connection usually reach the client together. Such a request's caller
// sees its ctx end or, with WithRetries, a retry that a server still up
// answers (so the request runs twice). An
// inproc:// server is not reconnected to once it has closed: a restartable
// server needs tcp:// or ipc://.
type RRClient struct {
	base
	sock   *zsock.Socket
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan rrReply
	trying  map[uint64]context.CancelCauseFunc // tries in flight, with retries
	outbox  []outgoing                         // requests for the reader to send

	// made holds the endpoints the client connected to (as libzmq
	// reported them), dropped those whose connection was lost and that
	// libzmq has not yet announced it retries: serverLost's, used only on
	// the monitor's goroutine.
	made, dropped map[string]bool

	// reader is a one-slot semaphore: the waiting Request that holds it
	// is the only goroutine that uses the socket: it sends every request
	// (the others queue theirs in outbox and interrupt its wait), receives
	// every reply and hands each to its owner. So the client needs no
	// goroutine of its own, and no operation of another goroutine can take
	// the readiness signal the reader waits for.
	reader chan struct{}
}

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
	immediate := zsock.Option{Name: "ZMQ_IMMEDIATE", Set: func(z *zmq.Socket) error { return z.SetImmediate(true) }}
	mk := func() zsock.Config {
		cfg := zsock.Config{Type: zmq.DEALER, Wait: zsock.Blocking, Options: []zsock.Option{immediate}}
		if c.o.tries > 1 {
			// A server seen to disconnect ends the tries at once, not at
			// their time-out (a server that froze seems alive without
			// heartbeats: WithHeartbeat finds it).
			c.made, c.dropped = map[string]bool{}, map[string]bool{}
			cfg.Monitor = &zsock.Monitor{Events: zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED, On: c.serverLost}
		}
		return cfg
	}
	var err error
	if c.sock, err = c.openSocket(c, kindRRClient, endpoints, false, opts, mk); err != nil {
		return nil, err
	}
	return c, nil
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

// serverLost ends every try in flight with errServerLost (from the
// monitor's goroutine): we cannot tell which server had which request, so
// every one is sent again. libzmq reports a lost connection before it
// retires the connection's queue from the socket's choices, and a request
// resent in between would go into that queue and wait out its try. For a
// server the client connects to, the tries end on the CONNECT_RETRIED that
// libzmq reports once the queue is retired (reconnection is always on), or,
// after a protocol error, which libzmq does not retry, on the CONNECTED of
// zmqkit's redial; for one that connected to the client, which is not
// retried, on the DISCONNECTED itself.
func (c *RRClient) serverLost(ev zsock.Event) {
	switch ev.Kind {
	case zmq.EVENT_CONNECTED:
		c.made[ev.Endpoint] = true
		if !c.dropped[ev.Endpoint] {
			return
		}
		// libzmq did not retry (a protocol error): zmqkit's redial
		// disconnected the endpoint, which retired its queue, and made it
		// again.
		delete(c.dropped, ev.Endpoint)
	case zmq.EVENT_DISCONNECTED:
		if c.made[ev.Endpoint] {
			c.dropped[ev.Endpoint] = true
			return
		}
	case zmq.EVENT_CONNECT_RETRIED:
		if !c.dropped[ev.Endpoint] {
			return // a server not there yet: nothing was sent to it
		}
		delete(c.dropped, ev.Endpoint)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lose := range c.trying {
		lose(errServerLost)
	}
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
		blocked, err := c.send()
		if err != nil {
			return rrReply{}, false, err
		}
		if blocked {
			// Requests wait for room (no server yet, or its queue full):
			// wait for that too, or for a reply, or a request queued.
			msg, ok, err := c.sock.TryRecvMessage()
			switch {
			case err != nil:
				return rrReply{}, false, err
			case ok:
				c.stats.received.Add(1)
				c.dispatch(msg)
			default:
				if err := c.sock.Wait(ctx, true, true); err != nil {
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
			c.stats.received.Add(1)
			c.dispatch(msg)
		}
	}
}

// send sends the queued requests, as many as the socket takes now; blocked
// reports that some must wait for room. c.mu is held throughout, so a try
// that ends takes its request back before it can be sent (its caller may
// reuse req).
func (c *RRClient) send() (blocked bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
			return false, err
		}
		if !ok {
			return true, nil
		}
		sent++
		c.stats.sent.Add(1)
	}
	return false, nil
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

// dispatch hands one reply message to the request it answers.
func (c *RRClient) dispatch(msg [][]byte) {
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
func (c *RRClient) AddEndpoint(endpoint string) error { return c.addEndpoint(endpoint, false) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved, then
// those connected.
func (c *RRClient) Endpoints() []string { return c.conn.Endpoints() }

// Stats returns the RRClient's counters: Sent requests (each retry
// included), Received replies, Malformed replies, and Dropped late replies.
func (c *RRClient) Stats() Stats { return c.stats.snapshot() }

// Close closes the client; requests waiting for a reply return ErrClosed.
// Close is idempotent.
func (c *RRClient) Close() error { return c.close(c) }
