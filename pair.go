package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"sync"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/pairlink"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// pairBase is what PairServer and PairClient share: a PAIR socket that is
// replaced when its peer goes away (see internal/pairlink), so base's
// socket-bound helper close is not used.
type pairBase struct {
	base
	link *pairlink.Link
}

func (p *pairBase) initPair(self closer, kind, endpoints string, defaultBind bool, opts []Option) error {
	eps, err := p.prepare(kind, endpoints, defaultBind, opts)
	if err != nil {
		return err
	}
	zctx := p.zctx
	link, err := pairlink.New(pairlink.Config{
		Endpoints: eps,
		NewSocket: func(typ zmq.Type, eps []endpoint.Endpoint, mon *zsock.Monitor) (*zsock.Socket, error) {
			return zctx.newSocket(zsock.Config{Type: typ, Options: p.o.socketOptions(), Endpoints: eps, Monitor: mon})
		},
		OnRestart: func(gen uint64) {
			p.o.logger.Info("zmqkit: pair peer left; socket reopened", "kind", kind, "generation", gen)
		},
		OnError: p.report,
	})
	if err != nil {
		return err
	}
	p.link, p.done = link, link.Done()
	if err := zctx.register(self); err != nil {
		_ = link.Close() // the Context closed meanwhile
		return err
	}
	p.o.logger.Debug("zmqkit: open", "kind", kind, "endpoints", link.Endpoints())
	return nil
}

func (p *pairBase) closePair(self closer) error {
	p.closeOnce.Do(func() {
		p.closeErr = p.link.Close()
		p.zctx.untrack(self)
		p.o.logger.Debug("zmqkit: closed", "kind", p.kind)
	})
	return p.closeErr
}

// send and receive work across socket replacements.
func (p *pairBase) send(ctx context.Context, msg []byte) error {
	if _, err := p.link.Send(ctx, msg, 0); err != nil {
		return p.wrap("send", err)
	}
	p.stats.sent.Add(1)
	return nil
}

func (p *pairBase) receive(ctx context.Context) ([]byte, error) {
	msg, _, err := p.link.Recv(ctx, 0)
	if msg, err = p.single(msg, err); err != nil {
		return nil, p.wrap("receive", err)
	}
	p.stats.received.Add(1)
	return msg, nil
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
	pairBase
	handler RequestHandler
}

// NewPairServer binds (or, with ">", connects) the endpoints and returns a
// PairServer that answers messages with h once Run is called. h is called as
// RRServer calls it: a returned error or a panic is recovered, counted and
// reported, and the peer gets the error reply ErrorReplyPrefix + the error's
// message, so a client waiting in Request is never left hanging. Options:
// WithContext, WithConcurrency, WithSendHWM, WithRecvHWM, WithLinger,
// WithErrorHandler, WithLogger, WithHeartbeat, WithReconnectInterval.
func NewPairServer(endpoints string, h RequestHandler, opts ...Option) (*PairServer, error) {
	if h == nil {
		return nil, invalid("NewPairServer", "nil handler")
	}
	s := &PairServer{handler: h}
	if err := s.initPair(s, "pair server", endpoints, true, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Run receives messages and answers each with the handler's reply until ctx
// ends (returning ctx's error) or the PairServer is closed (returning
// ErrClosed). With the default concurrency of 1, messages are handled one at
// a time and replies go out in order, which PairClient.Request relies on;
// with WithConcurrency(n), n calls run at once and replies may overtake one
// another. Run returns only after every handler call has returned.
//
// Stopping: when ctx ends (a graceful stop), no new message is taken, the
// handlers' ctx ends, and the replies of the handlers already running are
// still sent, each waiting up to the linger time (WithLinger) for room.
// Close is immediate: the replies of handlers that return after it are
// never sent, and are counted in Stats as Dropped.
func (s *PairServer) Run(ctx context.Context) error {
	return serve(&s.base, ctx, s.o.concurrency, s.receiveRequest, s.serveOne)
}

// pairRequest is a message received by a PairServer with the connection
// (generation) it came on, or the malformed error it is instead.
type pairRequest struct {
	msg []byte
	gen uint64
	bad *MalformedError
}

func (s *PairServer) receiveRequest(ctx context.Context) (pairRequest, error) {
	msg, gen, err := s.link.Recv(ctx, 0)
	msg, err = s.single(msg, err)
	var bad *MalformedError
	switch {
	case errors.As(err, &bad):
		s.report(err)
		return pairRequest{gen: gen, bad: bad}, nil
	case err != nil:
		return pairRequest{}, s.wrap("receive", err)
	}
	s.stats.received.Add(1)
	return pairRequest{msg: msg, gen: gen}, nil
}

// serveOne answers one message and sends the reply, only to the peer that
// asked (after a restart it is gone), counting it as sent or dropped.
func (s *PairServer) serveOne(ctx context.Context, r pairRequest) {
	var reply []byte
	if r.bad != nil {
		// Answered all the same, so a peer waiting for a reply is not
		// left hanging.
		reply = errorReply(r.bad.Reason)
	} else {
		reply = s.answer(ctx, s.handler, r.msg)
	}
	rctx, cancel := s.replyContext(ctx)
	_, err := s.link.Send(rctx, reply, r.gen)
	cancel()
	if err != nil {
		s.stats.dropped.Add(1)
		if !errors.Is(err, ErrPairReset) && !errors.Is(err, ErrClosed) {
			s.report(s.wrap("reply", err))
		}
		return
	}
	s.stats.sent.Add(1)
}

// Send sends msg to the peer unprompted, waiting while no peer is connected
// or its queue is full, until ctx ends or the PairServer is closed.
func (s *PairServer) Send(ctx context.Context, msg []byte) error { return s.send(ctx, msg) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (s *PairServer) Endpoints() []string { return s.link.Endpoints() }

// Stats returns the PairServer's counters.
func (s *PairServer) Stats() Stats { return s.stats.snapshot() }

// Close closes the PairServer at once: blocked calls return ErrClosed, and
// the replies of handlers still running are dropped (counted in
// Stats.Dropped), never sent after Close. Replies already sent get the
// linger time (WithLinger) to leave. Close is idempotent.
func (s *PairServer) Close() error { return s.closePair(s) }

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
// Back-pressure: Send waits while the send queue is full (WithSendHWM, 1000
// by default); incoming messages wait up to WithRecvHWM, then the peer's
// sends block.
type PairClient struct {
	pairBase
	reqMu   sync.Mutex // serialises Request; guards owed and owedGen
	owed    int        // replies to abandoned Requests still to come
	owedGen uint64     // the connection those replies would come on
}

// NewPairClient connects (or, with "@", binds) the endpoints and returns a
// PairClient. It does not wait for the peer. Options: WithContext,
// WithSendHWM, WithRecvHWM, WithLinger, WithErrorHandler, WithLogger,
// WithHeartbeat, WithReconnectInterval.
func NewPairClient(endpoints string, opts ...Option) (*PairClient, error) {
	c := &PairClient{}
	if err := c.initPair(c, "pair client", endpoints, false, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// Request sends msg and returns the next message the peer sends, as the
// Python module's PairClient.request does. It waits until that reply comes,
// ctx ends (returning ctx's error) or the PairClient is closed (ErrClosed).
// An error reply from a PairServer (or RRServer) handler is returned as a
// *RemoteError. If ctx ends after msg was sent, its reply, when it comes, is
// discarded by the next Request (counted as Dropped), so replies never shift
// by one. If the peer restarted in between, Request returns ErrPairReset.
func (c *PairClient) Request(ctx context.Context, msg []byte) ([]byte, error) {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	gen, err := c.link.Send(ctx, msg, 0)
	if err != nil {
		return nil, c.wrap("request", err)
	}
	c.stats.sent.Add(1)
	if gen != c.owedGen { // a new connection owes nothing
		c.owed, c.owedGen = 0, gen
	}
	for {
		reply, _, err := c.link.Recv(ctx, gen)
		if reply, err = c.single(reply, err); errors.Is(err, ErrMalformed) {
			if c.owed > 0 { // the refused message was a late reply
				c.owed--
				c.stats.dropped.Add(1)
				continue
			}
			return nil, err
		}
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				c.owed++
			}
			return nil, c.wrap("request", err)
		}
		c.stats.received.Add(1)
		if c.owed > 0 {
			c.owed--
			c.stats.dropped.Add(1)
			continue
		}
		if bytes.HasPrefix(reply, []byte(ErrorReplyPrefix)) {
			return nil, &RemoteError{Message: string(reply[len(ErrorReplyPrefix):])}
		}
		return reply, nil
	}
}

// Send sends msg to the peer. It returns once libzmq has queued it, waiting
// while the send queue is full, until ctx ends or the PairClient is closed.
func (c *PairClient) Send(ctx context.Context, msg []byte) error { return c.send(ctx, msg) }

// Receive returns the next message from the peer, waiting until one comes,
// ctx ends (returning ctx's error) or the PairClient is closed (ErrClosed).
func (c *PairClient) Receive(ctx context.Context) ([]byte, error) { return c.receive(ctx) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved,
// then those connected.
func (c *PairClient) Endpoints() []string { return c.link.Endpoints() }

// Stats returns the PairClient's counters.
func (c *PairClient) Stats() Stats { return c.stats.snapshot() }

// Close closes the PairClient; messages still queued get the linger time
// (WithLinger) to leave. Blocked calls return ErrClosed. Close is
// idempotent.
func (c *PairClient) Close() error { return c.closePair(c) }
