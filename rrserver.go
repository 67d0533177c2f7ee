package zmqkit

import (
	"context"

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
	sock    *zsock.Socket
	handler RequestHandler
}

// NewRRServer binds (or, with ">", connects) the endpoints and returns an
// RRServer that answers requests with h once Run is called. endpoints is a
// comma-separated list such as "tcp://*:5555,inproc://rpc";
// "tcp://127.0.0.1:*" binds an ephemeral port, which Endpoints reports. A
// server that connects (">") to a queue's back end (a ROUTER/DEALER
// broker) is one of its workers.
func NewRRServer(endpoints string, h RequestHandler, opts ...Option) (*RRServer, error) {
	if h == nil {
		return nil, invalidArg("NewRRServer: nil handler")
	}
	s := &RRServer{handler: h}
	var err error
	if s.sock, err = s.openSocket(s, kindRRServer, endpoints, true, opts, func() zsock.Config {
		return zsock.Config{Type: zmq.ROUTER, Wait: zsock.Blocking}
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Run receives requests and answers them until ctx ends (returning an error
// matching ctx's) or the server is closed (returning ErrClosed). It returns
// only after every handler call it started has returned.
//
// Stopping: when ctx ends (a graceful stop), no new request is taken, the
// handlers' ctx ends, and the replies of the handlers already running are
// still sent. Close is immediate: the replies of handlers that return after
// it are never sent, and are counted in Stats as Dropped.
func (s *RRServer) Run(ctx context.Context) error {
	return s.serveRequests(ctx, s.handler, s.receive, s.reply)
}

// receive takes the next request: [envelope..., "", body]. A message with
// no envelope delimiter cannot be answered: it is counted as Malformed,
// reported and skipped. A request with other than one body frame is
// answered with an error reply.
func (s *RRServer) receive(ctx context.Context) (request, error) {
	for {
		msg, err := s.sock.RecvMessage(ctx)
		if err != nil {
			return request{}, s.opError("receive", err)
		}
		s.stats.received.Add(1)
		delim := -1
		for i, f := range msg {
			if len(f) == 0 {
				delim = i
				break
			}
		}
		if delim < 1 { // the first frame is the peer's routing id
			s.stats.malformed.Add(1)
			s.report(s.opError("receive", malformed(msg[len(msg)-1], nil, "request of %d frames has no envelope delimiter", len(msg))))
			continue
		}
		// The envelope, up to and including the delimiter, goes back as it
		// came; the reply takes the request's place.
		r := request{envelope: msg[:delim+1]}
		if n := len(msg) - delim - 1; n != 1 {
			s.stats.malformed.Add(1)
			r.bad = malformed(nil, nil, "request has %d body frames, want 1", n)
			s.report(s.opError("receive", r.bad))
		} else {
			r.body = msg[delim+1]
		}
		return r, nil
	}
}

// reply sends body to the client r came from. A ROUTER send never waits:
// a reply to a client that has gone, or whose queue is full, is dropped
// by libzmq.
func (s *RRServer) reply(ctx context.Context, r request, body []byte) error {
	return s.sock.SendMessage(ctx, append(r.envelope, body)...)
}

// AddEndpoint binds (or, with ">", connects) one more endpoint.
func (s *RRServer) AddEndpoint(endpoint string) error { return s.addEndpoint(endpoint, true) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (s *RRServer) Endpoints() []string { return s.conn.Endpoints() }

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
