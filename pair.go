package zmqkit

import (
	"bytes"
	"context"
	"errors"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/pairlink"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// openLink is open for the pair types: their connection is a pair link,
// which replaces its PAIR socket when the peer restarts (see
// internal/pairlink). It returns the link.
func (b *base) openLink(self closer, k kind, endpoints string, defaultBind bool, opts []Option) (*pairlink.Link, error) {
	var link *pairlink.Link
	err := b.open(self, k, endpoints, defaultBind, opts, func(eps []endpoint.Endpoint) (conn, error) {
		zctx := b.zctx
		var err error
		link, err = pairlink.New(pairlink.Config{
			Endpoints: eps,
			// No zsock Redial: the link makes again the connections
			// libzmq gives up on, by replacing the socket, so that every
			// new connection to the peer is a new generation.
			NewSocket: func(typ zmq.Type, eps []endpoint.Endpoint, mon *zsock.Monitor) (*zsock.Socket, error) {
				return zctx.newSocket(zsock.Config{Type: typ, Options: b.o.socketOptions(), Endpoints: eps, Monitor: b.monitor(mon)})
			},
			OnRestart: func(gen uint64, why string) {
				b.o.logger.Info("zmqkit: pair socket replaced", "kind", k, "generation", gen, "why", why)
			},
			OnError:   func(err error) { b.report(b.opError("reopen", err)) },
			OnDropped: func(ep string) { b.redialed(ep, false) },
			// Every socket has a ZAP domain (plainDomain) or CURVE.
			RefusesOldPeers: true,
		})
		if err != nil {
			return nil, err
		}
		return link, nil
	})
	return link, err
}

// joinMonitors returns one monitor that calls each of a and b (either may
// be nil) for the events it asked for.
func joinMonitors(a, b *zsock.Monitor) *zsock.Monitor {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return &zsock.Monitor{Events: a.Events | b.Events, On: func(ev zsock.Event) {
		if ev.Kind&a.Events != 0 {
			a.On(ev)
		}
		if ev.Kind&b.Events != 0 {
			b.On(ev)
		}
	}}
}

// receiveOne receives one single-frame message on link, with the
// connection it came on; a message of several frames is refused whole, as
// a counted *MalformedError.
func (b *base) receiveOne(ctx context.Context, link *pairlink.Link, gen uint64) ([]byte, uint64, error) {
	frames, n, err := link.Recv(ctx, gen)
	if err != nil {
		return nil, n, err
	}
	if len(frames) != 1 {
		b.stats.received.Add(1)
		b.stats.malformed.Add(1)
		return nil, n, malformed(frames[0], nil, "message of %d frames, want 1", len(frames))
	}
	b.stats.received.Add(1)
	return frames[0], n, nil
}

// linkSend adapts a pair link's Send, on whichever connection is in
// service, to sendFrames.
func linkSend(l *pairlink.Link) func(context.Context, [][]byte) error {
	return func(ctx context.Context, frames [][]byte) error {
		_, err := l.Send(ctx, frames, 0)
		return err
	}
}

// linkRecv adapts a pair link's Recv, on whichever connection is in
// service, to receiveFrames.
func linkRecv(l *pairlink.Link) func(context.Context) ([][]byte, error) {
	return func(ctx context.Context) ([][]byte, error) {
		frames, _, err := l.Recv(ctx, 0)
		return frames, err
	}
}

// PairServer answers each message from its one peer with a handler's reply
// (a ZeroMQ PAIR socket). It binds by default.
//
// A PairServer is safe for concurrent use by multiple goroutines.
//
// A PAIR socket talks to one peer at a time: a second client that connects
// while one is being served waits, unserved, until the first leaves. Over
// tcp and ipc a PairServer survives its client's restart: when the client
// it serves disconnects, the server closes its socket and binds a fresh one
// on the same address (an ephemeral port is kept), which libzmq's PAIR does
// not do by itself. In that moment the following are lost: messages still
// in flight on the network, and replies to the departed client (counted in
// Stats as Dropped; they are never sent to the next client). Messages it had
// received but not yet handled are still handled. A new client that got
// through in the instant before the server noticed the old one leave has its
// connection reset once (a zmqkit PairClient reconnects by itself; its
// Request in flight returns ErrPairReset).
//
// Back-pressure: messages wait in libzmq up to the receive high-water mark
// (WithRecvHWM, 1000 by default), then the client's sends block. A reply
// waits while the client's queue is full (WithSendHWM).
type PairServer struct {
	base
	link    *pairlink.Link
	handler RequestHandler
}

// NewPairServer binds (or, with ">", connects) the endpoints and returns a
// PairServer that answers messages with h once Run is called. h is called as
// RRServer calls it: a returned error or a panic is recovered, counted and
// reported, and the peer gets the error reply ErrorReplyPrefix + the error's
// message, so a client waiting in Request is never left hanging.
func NewPairServer(endpoints string, h RequestHandler, opts ...Option) (*PairServer, error) {
	if h == nil {
		return nil, invalidArg("NewPairServer: nil handler")
	}
	s := &PairServer{handler: h}
	var err error
	if s.link, err = s.openLink(s, kindPairServer, endpoints, true, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Run receives messages and answers each with the handler's reply until ctx
// ends (returning an error matching ctx's) or the PairServer is closed
// (returning ErrClosed). With the default concurrency of 1, messages are
// handled one at a time and replies go out in order, which
// PairClient.Request relies on; with WithConcurrency(n), n calls run at
// once and replies may overtake one another. Run returns only after every
// handler call has returned.
//
// Stopping: when ctx ends (a graceful stop), no new message is taken, the
// handlers' ctx ends, and the replies of the handlers already running are
// still sent, each waiting up to the linger time (WithLinger) for room.
// Close is immediate: the replies of handlers that return after it are
// never sent, and are counted in Stats as Dropped.
func (s *PairServer) Run(ctx context.Context) error {
	return s.serveRequests(ctx, s.handler, s.receive, s.reply)
}

// receive takes the next message, with the connection it came on. A
// message of several frames is answered with an error reply, so a peer
// waiting for a reply is not left hanging.
func (s *PairServer) receive(ctx context.Context) (request, error) {
	msg, gen, err := s.receiveOne(ctx, s.link, 0)
	var bad *MalformedError
	switch {
	case errors.As(err, &bad):
		s.report(s.opError("receive", err))
		return request{gen: gen, bad: bad}, nil
	case err != nil:
		return request{}, s.opError("receive", err)
	}
	return request{body: msg, gen: gen}, nil
}

// reply sends body to the peer that asked, only: after a restart it is
// gone (ErrPairReset, counted as dropped).
func (s *PairServer) reply(ctx context.Context, r request, body []byte) error {
	_, err := s.link.Send(ctx, [][]byte{body}, r.gen)
	return err
}

// Send sends msg to the peer unprompted, waiting while no peer is connected
// or its queue is full, until ctx ends or the PairServer is closed.
func (s *PairServer) Send(ctx context.Context, msg []byte) error {
	return s.sendFrames(ctx, "send", [][]byte{msg}, linkSend(s.link))
}

// SendFrames sends frames as one multi-frame message, as Send does.
func (s *PairServer) SendFrames(ctx context.Context, frames ...[]byte) error {
	return s.sendFrames(ctx, "send", frames, linkSend(s.link))
}

// AddEndpoint binds (or, with ">", connects) one more endpoint, kept when
// the socket is replaced.
func (s *PairServer) AddEndpoint(endpoint string) error { return s.addEndpoint(endpoint, true) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (s *PairServer) Endpoints() []string { return s.conn.Endpoints() }

// Stats returns the PairServer's counters.
func (s *PairServer) Stats() Stats { return s.stats.snapshot() }

// Close closes the PairServer at once: blocked calls return ErrClosed, and
// the replies of handlers still running are dropped (counted in
// Stats.Dropped), never sent after Close. Replies already sent get the
// linger time (WithLinger) to leave. Close is idempotent.
func (s *PairServer) Close() error { return s.close(s) }

// PairClient talks to one peer, usually a PairServer (a ZeroMQ PAIR
// socket). It connects by default. Request sends a message and returns the
// next message that comes back; Send and Receive give full duplex, and one
// goroutine may Send while another Receives.
//
// A PairClient is safe for concurrent use by multiple goroutines.
// Concurrent Requests are served one after another. Request assumes that the
// peer answers every message once and in order (a PairServer with the
// default concurrency does); do not Receive while Requests are in flight, or
// replies will go to whichever call asks first.
//
// Over tcp and ipc a PairClient survives its server's restart: when the
// server disconnects, the client closes its socket and connects a fresh one,
// which libzmq's PAIR does not do reliably by itself (its own reconnect drops
// whatever was queued while disconnected). Lost in that moment: messages in
// flight on the network, and messages Send had queued but libzmq had not yet
// written out when the server went away. Messages received but not yet read
// are kept and returned first. Messages sent while the server is down
// queue, up to the send high-water mark, and go out when it is back. A
// Request whose reply was lost returns ErrPairReset.
//
// The client also replaces its socket when libzmq drops the connection for
// a protocol error and would not make it again: a message over
// WithMaxMessageSize (reported as ErrConnectionDropped and counted in
// Stats.ProtocolErrors), or a server that does not speak ZMTP.
//
// The new connection is served by a PairServer, which always reads. A
// plain libzmq PAIR server that only sends never serves it: libzmq frees
// its one peer slot only when that socket reads past what the departed
// connection left, and a peer it refused meanwhile stays refused for as
// long as its connection lasts.
//
// Back-pressure: Send waits while the send queue is full (WithSendHWM, 1000
// by default); incoming messages wait up to WithRecvHWM, then the peer's
// sends block.
type PairClient struct {
	base
	link *pairlink.Link
	// reqSem is a one-slot semaphore that serialises Request, unlike a
	// mutex waited for in a select, so that a Request queued behind
	// another still ends with its ctx or Close. Its holder owns owed and
	// owedGen.
	reqSem  chan struct{}
	owed    int    // replies to abandoned Requests still to come
	owedGen uint64 // the connection those replies would come on
}

// NewPairClient connects (or, with "@", binds) the endpoints and returns a
// PairClient. It does not wait for the peer.
func NewPairClient(endpoints string, opts ...Option) (*PairClient, error) {
	c := &PairClient{reqSem: make(chan struct{}, 1)}
	var err error
	if c.link, err = c.openLink(c, kindPairClient, endpoints, false, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// Request sends msg and returns the next message the peer sends, as the
// Python module's PairClient.request does. It waits until that reply comes,
// ctx ends (an error matching ctx's) or the PairClient is closed
// (ErrClosed). An error reply from a PairServer (or RRServer) handler is
// returned as a *RemoteError. If ctx ends after msg was sent, its reply,
// when it comes, is discarded by the next Request (counted as Dropped), so
// replies never shift by one. If the peer restarted in between, Request
// returns ErrPairReset.
func (c *PairClient) Request(ctx context.Context, msg []byte) ([]byte, error) {
	select {
	case c.reqSem <- struct{}{}:
	case <-ctx.Done():
		return nil, c.opError("request", ctx.Err())
	case <-c.done:
		return nil, c.opError("request", ErrClosed)
	}
	defer func() { <-c.reqSem }()
	for first := true; ; first = false {
		gen, err := c.link.Send(ctx, [][]byte{msg}, 0)
		if err != nil {
			return nil, c.opError("request", err)
		}
		if first { // a copy sent again after ErrUnsent replaces one nobody got
			c.stats.sent.Add(1)
		}
		if gen != c.owedGen { // a new connection owes nothing
			c.owed, c.owedGen = 0, gen
		}
		reply, err := c.awaitReply(ctx, gen)
		if !errors.Is(err, pairlink.ErrUnsent) {
			return reply, err
		}
		// The socket msg went out on was replaced before any peer got
		// through (a handshake that failed): nobody has msg, so it goes
		// again, on the new socket.
	}
}

// awaitReply returns the reply to the request just sent on generation gen,
// skipping the late replies to abandoned Requests it owes. The caller holds
// reqSem.
func (c *PairClient) awaitReply(ctx context.Context, gen uint64) ([]byte, error) {
	for {
		reply, _, err := c.receiveOne(ctx, c.link, gen)
		if errors.Is(err, ErrMalformed) {
			if c.owed > 0 { // the refused message was a late reply
				c.owed--
				c.stats.dropped.Add(1)
				continue
			}
			return nil, c.opError("request", err)
		}
		if errors.Is(err, pairlink.ErrUnsent) {
			return nil, err
		}
		if err != nil {
			// The request went out and its reply was not taken: whatever
			// ended the wait (ctx, mostly), that reply is still to come,
			// unless the connection goes (a new generation owes nothing).
			c.owed++
			return nil, c.opError("request", err)
		}
		if c.owed > 0 {
			c.owed--
			c.stats.dropped.Add(1)
			continue
		}
		if bytes.HasPrefix(reply, []byte(ErrorReplyPrefix)) {
			return nil, c.opError("request", &RemoteError{Message: string(reply[len(ErrorReplyPrefix):])})
		}
		return reply, nil
	}
}

// Send sends msg to the peer. It returns once libzmq has queued it, waiting
// while the send queue is full, until ctx ends or the PairClient is closed.
func (c *PairClient) Send(ctx context.Context, msg []byte) error {
	return c.sendFrames(ctx, "send", [][]byte{msg}, linkSend(c.link))
}

// SendFrames sends frames as one multi-frame message, as Send does.
func (c *PairClient) SendFrames(ctx context.Context, frames ...[]byte) error {
	return c.sendFrames(ctx, "send", frames, linkSend(c.link))
}

// Receive returns the next message from the peer, waiting until one comes,
// ctx ends (an error matching ctx's) or the PairClient is closed
// (ErrClosed). A message of several frames is refused whole, as a
// *MalformedError.
func (c *PairClient) Receive(ctx context.Context) ([]byte, error) {
	msg, _, err := c.receiveOne(ctx, c.link, 0)
	if err != nil {
		return nil, c.opError("receive", err)
	}
	return msg, nil
}

// ReceiveFrames returns the next message from the peer, every frame of
// it. It waits as Receive does.
func (c *PairClient) ReceiveFrames(ctx context.Context) ([][]byte, error) {
	return c.receiveFrames(ctx, linkRecv(c.link))
}

// Run receives messages from the peer and calls h for each until ctx ends
// (returning an error matching ctx's) or the PairClient is closed
// (returning ErrClosed), as PPPuller.Run does. Do not Request while Run
// runs: Run would take the replies.
func (c *PairClient) Run(ctx context.Context, h Handler) error {
	return runHandler(&c.base, ctx, c.Receive, h)
}

// AddEndpoint connects (or, with "@", binds) one more endpoint, kept when
// the socket is replaced.
func (c *PairClient) AddEndpoint(endpoint string) error { return c.addEndpoint(endpoint, false) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved,
// then those connected.
func (c *PairClient) Endpoints() []string { return c.conn.Endpoints() }

// Stats returns the PairClient's counters.
func (c *PairClient) Stats() Stats { return c.stats.snapshot() }

// Close closes the PairClient; messages still queued get the linger time
// (WithLinger) to leave. Blocked calls return ErrClosed. Close is
// idempotent.
func (c *PairClient) Close() error { return c.close(c) }
