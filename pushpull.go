package zmqkit

import (
	"context"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// PPPusher sends messages down a pipeline (a ZeroMQ PUSH socket), each to
// one of the connected PPPullers in turn. It binds by default.
//
// A PPPusher is safe for concurrent use by multiple goroutines.
//
// Back-pressure: a PUSH socket never drops. Push waits while no puller is
// connected, or while every connected puller's queue is at the high-water
// mark (WithSendHWM on the pusher plus WithRecvHWM on the puller, 1000
// messages each by default), until a puller can take the message or Push's
// ctx ends. (A pusher that connects, ">", keeps a queue for each endpoint
// from the start, as libzmq does: its first messages wait there, up to the
// mark, for a puller that is not up yet.) Messages are dealt round-robin across the pullers connected at
// the time, so a puller that connects late or runs slowly is handed its share
// all the same and the messages queued for it wait for it. Messages a puller
// had queued when it went away are lost; messages still queued in the
// pusher when it is closed get the linger time (WithLinger) to leave.
type PPPusher struct {
	base
	sock *zsock.Socket
}

// NewPPPusher binds (or, with ">", connects) the endpoints and returns a
// PPPusher. endpoints is a comma-separated list such as
// "tcp://*:5557,inproc://tasks"; "tcp://127.0.0.1:*" binds an ephemeral port,
// which Endpoints reports. To fan in, make several pushers connect (">") to
// one puller that binds ("@").
func NewPPPusher(endpoints string, opts ...Option) (*PPPusher, error) {
	p := &PPPusher{}
	var err error
	if p.sock, err = p.openSocket(p, kindPusher, endpoints, true, opts, func() zsock.Config { return zsock.Config{Type: zmq.PUSH} }); err != nil {
		return nil, err
	}
	return p, nil
}

// Push sends msg to one puller. It returns once libzmq has queued msg, which
// may be before any puller has read it. Push blocks while no puller is
// connected or the high-water mark is reached, until ctx ends (an error
// matching ctx's) or the PPPusher is closed (ErrClosed); in either case msg
// was not sent. msg may be reused as soon as Push returns.
func (p *PPPusher) Push(ctx context.Context, msg []byte) error {
	if err := p.sock.SendBytes(ctx, msg, false); err != nil {
		return p.opError("push", err)
	}
	p.stats.sent.Add(1)
	return nil
}

// PushNoCopy sends msg as Push does, but without copying it: libzmq reads
// msg in place, from its own threads, until the returned Tracker is done.
// Until then msg must not change, or the puller may receive the change,
// torn; after, msg may be reused. On error the Tracker is nil and libzmq
// holds no reference to msg.
//
// Push copies msg into memory of libzmq's before it returns. For large
// messages (64 KiB and more) that copy, and the page faults of fresh
// memory to copy into, are much of the cost of a send; PushNoCopy saves
// both. For small ones Push is cheaper: each PushNoCopy also pins msg and
// has libzmq call back into Go when it lets msg go. A sender that
// reuses its buffers keeps a few, and waits on a buffer's Tracker before it
// fills the buffer again.
func (p *PPPusher) PushNoCopy(ctx context.Context, msg []byte) (*Tracker, error) {
	t := &Tracker{done: make(chan struct{})}
	if err := p.sock.SendNoCopy(ctx, msg, false, func() { close(t.done) }); err != nil {
		return nil, p.opError("push", err)
	}
	p.stats.sent.Add(1)
	return t, nil
}

// Tracker tells when libzmq no longer reads a message sent without a copy
// (PPPusher.PushNoCopy), as pyzmq's MessageTracker does.
type Tracker struct {
	done chan struct{}
}

// Done is closed once libzmq no longer reads the message: it was written
// to the connection (tcp, ipc) or taken by the puller (inproc), or it was
// dropped: the pusher closed with it queued and its linger ran out, or,
// over inproc, the puller closed without reading it.
func (t *Tracker) Done() <-chan struct{} { return t.done }

// Wait waits until Done is closed, and returns nil, or until ctx ends, and
// returns ctx's error.
func (t *Tracker) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PushBatch sends msgs in order, each as Push sends one, with one cgo call
// for as many as libzmq takes at once (up to MaxBatch messages or 32 KiB),
// where Push makes a call per message: a loop with many small messages to
// send costs less per message. It blocks as Push does, and returns how many
// messages were sent: all of them, or those before the error. The messages
// may be reused as soon as PushBatch returns.
func (p *PPPusher) PushBatch(ctx context.Context, msgs [][]byte) (int, error) {
	n, err := p.sock.SendBatch(ctx, msgs)
	p.stats.sent.Add(uint64(n))
	if err != nil {
		return n, p.opError("push", err)
	}
	return n, nil
}

// PushFrames sends frames as one multi-frame message, to one puller, as
// Push does. At least one frame is needed.
func (p *PPPusher) PushFrames(ctx context.Context, frames ...[]byte) error {
	return p.sendFrames(ctx, "push", frames, sockSend(p.sock))
}

// AddEndpoint binds (or, with ">", connects) one more endpoint.
func (p *PPPusher) AddEndpoint(endpoint string) error { return p.addEndpoint(endpoint, true) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (p *PPPusher) Endpoints() []string { return p.conn.Endpoints() }

// Stats returns the PPPusher's counters.
func (p *PPPusher) Stats() Stats { return p.stats.snapshot() }

// Close closes the PPPusher; messages still queued get the linger time
// (WithLinger) to leave. Blocked calls return ErrClosed. Close is
// idempotent.
func (p *PPPusher) Close() error { return p.close(p) }

// Handler handles one message received by PPPuller.Run or PairClient.Run.
// Its ctx ends when Run stops. msg is owned by the handler. A returned
// error or a panic is recovered, counted in Stats (HandlerErrors,
// HandlerPanics) and sent to the error callback; the message is not
// retried and Run goes on.
//
// With WithConcurrency(n) up to n calls run at once, so the handler must be
// safe for concurrent use when n > 1; with the default of 1, messages are
// handled one at a time in the order they arrived.
type Handler func(ctx context.Context, msg []byte) error

// PPPuller receives messages from one or more PPPushers (a ZeroMQ PULL
// socket). It connects by default; bind it ("@") to fan in from many
// pushers, which it then reads fairly.
//
// A PPPuller is safe for concurrent use by multiple goroutines.
//
// Back-pressure: messages wait in libzmq, up to the receive high-water mark
// (WithRecvHWM, 1000 per pusher by default), until Receive or Run takes
// them; beyond it the pusher's Push blocks. Nothing is dropped while both
// sides live, but messages queued in a puller that is closed are lost, and
// a handler that falls behind slows its pushers rather than losing
// messages.
type PPPuller struct {
	base
	sock *zsock.Socket
}

// NewPPPuller connects (or, with "@", binds) the endpoints and returns a
// PPPuller; take messages with Receive, or with a handler by Run.
func NewPPPuller(endpoints string, opts ...Option) (*PPPuller, error) {
	p := &PPPuller{}
	var err error
	if p.sock, err = p.openSocket(p, kindPuller, endpoints, false, opts, func() zsock.Config { return zsock.Config{Type: zmq.PULL, Wait: zsock.Adaptive} }); err != nil {
		return nil, err
	}
	return p, nil
}

// Receive returns the next message, waiting until one arrives, ctx ends (an
// error matching ctx's) or the PPPuller is closed (ErrClosed). A message of
// several frames (from a foreign pusher) is discarded and returned as a
// *MalformedError; the next call gets the next message. The message is
// owned by the caller. Receive may be used alongside Run; each message goes
// to one of them.
func (p *PPPuller) Receive(ctx context.Context) ([]byte, error) {
	msg, err := p.single(p.sock.RecvBytes(ctx))
	if err != nil {
		return nil, p.opError("receive", err)
	}
	p.stats.received.Add(1)
	return msg, nil
}

// AppendReceive appends the next message to buf and returns the extended
// slice, waiting as Receive does; on error buf is returned unchanged. A
// message that fits buf's spare capacity is received with no allocation,
// so a loop that reuses one buffer, buf = p.AppendReceive(ctx, buf[:0]),
// saves the allocation, zeroing and garbage collection of a new message
// each time: what large messages cost most.
func (p *PPPuller) AppendReceive(ctx context.Context, buf []byte) ([]byte, error) {
	out, err := p.single(p.sock.RecvBytesAppend(ctx, buf))
	if err != nil {
		return buf, p.opError("receive", err)
	}
	p.stats.received.Add(1)
	return out, nil
}

// ReceiveBatch returns the messages that have arrived, up to limit (at most
// MaxBatch), waiting for the first as Receive does. One cgo call takes
// them all from libzmq, where Receive makes a call per message, so a loop
// over a busy stream costs less per message; order is kept, and a batch
// holds only what had already arrived, so it adds no wait. A message of
// several frames is counted, sent to the error callback and skipped, as
// Run does. The messages of a batch share one allocation (each one's
// capacity ends where it does): keeping one keeps the batch's memory.
func (p *PPPuller) ReceiveBatch(ctx context.Context, limit int) ([][]byte, error) {
	msgs, err := p.receiveBatch(ctx, p.sock, limit)
	if err != nil {
		return nil, p.opError("receive", err)
	}
	return msgs, nil
}

// ReceiveFrames returns the next message, every frame of it, as
// PPPusher.PushFrames or a foreign pusher sent it. It waits as Receive
// does.
func (p *PPPuller) ReceiveFrames(ctx context.Context) ([][]byte, error) {
	return p.receiveFrames(ctx, p.sock.RecvMessage)
}

// Run receives messages and calls h for each until ctx ends (returning an
// error matching ctx's) or the PPPuller is closed (returning ErrClosed).
// With WithConcurrency(n), n calls run at once and order is not kept; with
// the default of 1, messages are handled one at a time in order. Handler
// errors and panics, and multi-frame messages, are counted and reported,
// and Run goes on. Run returns only after every handler call has returned.
func (p *PPPuller) Run(ctx context.Context, h Handler) error {
	return runHandler(&p.base, ctx, p.Receive, h)
}

// AddEndpoint connects (or, with "@", binds) one more endpoint.
func (p *PPPuller) AddEndpoint(endpoint string) error { return p.addEndpoint(endpoint, false) }

// Endpoints returns the endpoints bound, with ephemeral ports resolved,
// then those connected.
func (p *PPPuller) Endpoints() []string { return p.conn.Endpoints() }

// Stats returns the PPPuller's counters.
func (p *PPPuller) Stats() Stats { return p.stats.snapshot() }

// Close closes the PPPuller; messages it had received but not handed out
// are lost. Blocked calls return ErrClosed. Close is idempotent.
func (p *PPPuller) Close() error { return p.close(p) }
