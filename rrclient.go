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
// are lost; their callers see their ctx end, or a retry (WithRetries). An
// inproc:// server is not reconnected to once it has closed: a restartable
// server needs tcp:// or ipc://.
type RRClient struct {
	base
	sock   *zsock.Socket
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan rrReply
	trying  map[uint64]context.CancelCauseFunc // tries in flight, with retries

	// reader is a one-slot semaphore: the waiting Request that holds it
	// receives from the socket for every request and hands each reply to
	// its owner, so the client needs no goroutine of its own.
	reader chan struct{}
}

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
			cfg.Monitor = &zsock.Monitor{Events: zmq.EVENT_DISCONNECTED, On: c.serverLost}
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
	ch := make(chan rrReply, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer c.forget(id, ch)

	tries := c.o.tries
	for try := 1; ; try++ {
		tctx, cancel := ctx, context.CancelFunc(nil)
		if c.o.tryTimeout > 0 {
			tctx, cancel = c.tryContext(ctx, id)
		}
		r, err := c.try(tctx, idb[:], req, ch)
		lost := cancel != nil && errors.Is(context.Cause(tctx), errServerLost)
		if cancel != nil {
			cancel()
		}
		switch {
		case err == nil:
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
// every one is sent again.
func (c *RRClient) serverLost(zsock.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lose := range c.trying {
		lose(errServerLost)
	}
}

// try sends the request once and waits for a reply to it.
func (c *RRClient) try(ctx context.Context, idb, req []byte, ch chan rrReply) (rrReply, error) {
	if err := c.sock.SendMessage(ctx, idb, nil, req); err != nil {
		return rrReply{}, err
	}
	c.stats.sent.Add(1)
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

// read receives replies for every waiting request until ch's own arrives
// (done) or ctx ends. Only the holder of c.reader calls it.
func (c *RRClient) read(ctx context.Context, ch chan rrReply) (rrReply, bool, error) {
	for {
		select {
		case r := <-ch: // delivered by the previous reader
			return r, true, nil
		default:
		}
		msg, err := c.sock.RecvMessage(ctx)
		if err != nil {
			return rrReply{}, false, err
		}
		c.stats.received.Add(1)
		c.dispatch(msg)
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
func (c *RRClient) forget(id uint64, ch chan rrReply) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
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
