package zmqkit

import (
	"context"
	"errors"
	"fmt"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// ErrorReplyPrefix starts every error reply an RRServer sends: the reply is
// the one frame ErrorReplyPrefix + message. A plain REQ peer (pyzmq, the
// Python module's RRClient) reads it as an ordinary reply and can test the
// prefix; RRClient turns it into a *RemoteError. The NUL bytes keep it apart
// from text and JSON replies, so a handler should not return a reply that
// starts with it.
const ErrorReplyPrefix = "\x00zmqkit-error\x00"

// RequestHandler answers one request received by an RRServer. Its ctx ends
// when Run returns. The returned bytes are the reply (nil is an empty
// reply). A returned error or a panic is recovered, counted in Stats
// (HandlerErrors, HandlerPanics) and sent to the error callback, and the
// client gets the error reply ErrorReplyPrefix + the error's message (a
// panic's message is "panic: <value>"); the server goes on serving.
//
// With WithConcurrency(n) up to n calls run at once, so the handler must be
// safe for concurrent use when n > 1. req is owned by the handler.
type RequestHandler func(ctx context.Context, req []byte) ([]byte, error)

// RRServer answers requests (a ZeroMQ ROUTER socket speaking the REQ/REP
// wire protocol). It binds by default.
//
// Any REQ peer can call it (pyzmq's REQ, the Python module's RRClient, a
// pebbe REQ), and so can RRClient and anything else that sends
// [envelope..., "", request] frames: the server returns the envelope it
// received, up to and including the empty delimiter, with the reply, so
// every reply reaches the client (and request) that asked. Unlike a REP
// socket, which must answer one request before it may read the next, an
// RRServer made WithConcurrency(n) handles up to n requests at once, from
// one client or many. The default concurrency is 1 (requests are handled
// one at a time, in arrival order), as for every zmqkit handler: raise it
// for handlers that wait (on I/O, a database) and are safe for concurrent
// use.
//
// An RRServer is safe for concurrent use by multiple goroutines. While Run
// waits for requests, one of its goroutines blocks in poll(2) and holds an
// OS thread, so that a round trip costs what a hand-written REP loop's does
// (see the package documentation).
//
// Back-pressure: requests beyond those being handled queue in libzmq, up to
// the receive high-water mark (WithRecvHWM, 1000 per client); beyond it a
// client's further requests wait in that client. A reply to a client that
// has gone away, or whose send queue is full (WithSendHWM), is dropped by
// libzmq without blocking the server. Messages without an envelope delimiter
// are counted as Malformed, reported and ignored; a request of more than one
// frame gets an error reply.
type RRServer struct {
	base
	handler RequestHandler
}

// NewRRServer binds (or, with ">", connects) the endpoints and returns an
// RRServer that answers requests with h once Run is called. endpoints is a
// comma-separated list such as "tcp://*:5555,inproc://rpc";
// "tcp://127.0.0.1:*" binds an ephemeral port, which Endpoints reports.
// Options: WithContext, WithConcurrency (default 1), WithErrorHandler,
// WithLogger, WithRecvHWM, WithSendHWM, WithLinger, WithHeartbeat,
// WithMaxMessageSize.
func NewRRServer(endpoints string, h RequestHandler, opts ...Option) (*RRServer, error) {
	if h == nil {
		return nil, invalid("NewRRServer", "nil handler")
	}
	s := &RRServer{handler: h}
	if err := s.init(s, "rrserver", zsock.Config{Type: zmq.ROUTER, Wait: zsock.Blocking}, endpoints, true, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Run receives requests and answers them until ctx ends (returning ctx's
// error) or the server is closed (returning ErrClosed). It returns only
// after every handler call it started has returned.
//
// Stopping: when ctx ends (a graceful stop), no new request is taken, the
// handlers' ctx ends, and the replies of the handlers already running are
// still sent. Close is immediate: the replies of handlers that return after
// it are never sent, and are counted in Stats as Dropped.
func (s *RRServer) Run(ctx context.Context) error {
	return serve(&s.base, ctx, s.o.concurrency, s.receive, s.serveOne)
}

// receive takes the next request message, envelope included.
func (s *RRServer) receive(ctx context.Context) ([][]byte, error) {
	msg, err := s.sock.RecvMessage(ctx)
	if err != nil {
		return nil, s.wrap("receive", err)
	}
	s.stats.received.Add(1)
	return msg, nil
}

// serveOne answers one request and sends the reply, counting it as sent
// or dropped.
func (s *RRServer) serveOne(ctx context.Context, msg [][]byte) {
	reply := s.handle(ctx, msg)
	if reply == nil {
		return
	}
	rctx, cancel := s.replyContext(ctx)
	err := s.sock.SendMessage(rctx, reply...)
	cancel()
	if err != nil {
		s.stats.dropped.Add(1)
		if !errors.Is(err, ErrClosed) {
			s.report(s.wrap("reply", err))
		}
		return
	}
	s.stats.sent.Add(1)
}

// handle answers one [envelope..., "", request] message; it returns the
// whole reply message, or nil when there is nobody to answer.
func (s *RRServer) handle(ctx context.Context, msg [][]byte) [][]byte {
	delim := -1
	for i, f := range msg {
		if len(f) == 0 {
			delim = i
			break
		}
	}
	if delim < 1 { // the first frame is the peer's routing id
		s.stats.malformed.Add(1)
		s.report(malformed(msg[len(msg)-1], nil, "request of %d frames has no envelope delimiter", len(msg)))
		return nil
	}
	var out []byte
	if n := len(msg) - delim - 1; n != 1 {
		s.stats.malformed.Add(1)
		err := malformed(nil, nil, "request has %d body frames, want 1", n)
		s.report(err)
		out = errorReply(err.Reason)
	} else {
		out = s.answer(ctx, s.handler, msg[delim+1])
	}
	// The envelope, up to and including the delimiter, goes back as it
	// came; the reply takes the request's place.
	return append(msg[:delim+1], out)
}

// answer calls h through call (recovering, counting and reporting its
// failures); an error or panic becomes the error reply, so the peer that
// asked always gets an answer.
func (b *base) answer(ctx context.Context, h RequestHandler, req []byte) []byte {
	var reply []byte
	err := b.call(func() error {
		var err error
		reply, err = h(ctx, req)
		return err
	})
	if err == nil {
		return reply
	}
	text := err.Error()
	var he *HandlerError
	if errors.As(err, &he) && he.Err != nil {
		text = he.Err.Error()
	}
	return errorReply(text)
}

func errorReply(msg string) []byte {
	return append([]byte(ErrorReplyPrefix), msg...)
}

// RemoteError is the error RRClient.Request returns for an error reply: the
// server's handler failed or panicked (or the server could not read the
// request). Message is the server's text, as sent after ErrorReplyPrefix.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("zmqkit: remote handler failed: %s", e.Message)
}

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (s *RRServer) Endpoints() []string { return s.sock.Endpoints() }

// Stats returns the RRServer's counters: Received requests, Sent replies
// (error replies included), Malformed requests, HandlerErrors and
// HandlerPanics, and Dropped replies that could not be sent.
func (s *RRServer) Stats() Stats { return s.stats.snapshot() }

// Close closes the server at once: requests still queued are discarded, a
// running Run returns ErrClosed once its handler calls have returned, and
// their replies are dropped (counted in Stats.Dropped), never sent after
// Close. Replies already sent get the linger time (WithLinger) to leave.
// Close is idempotent.
func (s *RRServer) Close() error { return s.close(s) }
