package zmqkit

import (
	"context"
	"strconv"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// MessageHandler handles one message received by Subscriber.Run. Its ctx
// ends when Run stops. With WithConcurrency(n) up to n calls run at once,
// so it must be safe for concurrent use when n > 1. A returned error or a
// panic is recovered, counted in Stats (HandlerErrors, HandlerPanics) and
// sent to the error callback; it never stops Run.
type MessageHandler func(ctx context.Context, m Message) error

// Subscriber receives "<msgid> <msgtype> <body>" frames from one or more
// Publishers (a ZeroMQ SUB socket). It connects by default.
//
// A Subscriber is safe for concurrent use by multiple goroutines.
//
// It receives only the msgids given by WithMsgIDs or Subscribe, matched
// exactly ("1000 " is the filter, so 1000 does not match 10001), or every
// message without either; SubscribePrefix adds a plain prefix filter, for
// publishers that are not zmqkit's. Messages queue in libzmq up to the
// receive high-water mark (WithRecvHWM, 1000 per publisher); beyond it the
// publisher drops them, so a handler that falls behind loses messages
// rather than slowing the publisher.
type Subscriber struct {
	base
	sock  *zsock.Socket
	codec *Codec
}

// NewSubscriber connects (or, with "@", binds) the endpoints and subscribes
// before it connects, so no message slips through unfiltered.
func NewSubscriber(endpoints string, opts ...Option) (*Subscriber, error) {
	s := &Subscriber{}
	sub := zsock.Option{Name: "ZMQ_SUBSCRIBE", Set: func(z *zmq.Socket) error {
		for _, f := range filters(s.o.msgIDs) {
			if err := z.SetSubscribe(f); err != nil {
				return err
			}
		}
		return nil
	}}
	var err error
	if s.sock, err = s.openSocket(s, kindSubscriber, endpoints, false, opts, func() zsock.Config {
		return zsock.Config{Type: zmq.SUB, Wait: zsock.Adaptive, Options: []zsock.Option{sub}}
	}); err != nil {
		return nil, err
	}
	if s.codec, err = s.o.newCodec(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func filters(ids []int) []string {
	if len(ids) == 0 {
		return []string{""}
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.Itoa(id) + " "
	}
	return out
}

// Subscribe adds exact msgid filters. A Subscriber made without WithMsgIDs
// receives everything already: Subscribe adds to that, it does not narrow
// it.
func (s *Subscriber) Subscribe(ids ...int) error {
	return s.setFilters("subscribe", ids, (*zmq.Socket).SetSubscribe)
}

// Unsubscribe removes msgid filters added by WithMsgIDs or Subscribe.
func (s *Subscriber) Unsubscribe(ids ...int) error {
	return s.setFilters("unsubscribe", ids, (*zmq.Socket).SetUnsubscribe)
}

func (s *Subscriber) setFilters(op string, ids []int, set func(*zmq.Socket, string) error) error {
	for _, id := range ids {
		if id < 0 {
			return s.opError(op, invalidArg("msgid %d is negative", id))
		}
	}
	return s.opError(op, s.sock.Do(func(z *zmq.Socket) error {
		for _, id := range ids {
			if err := set(z, strconv.Itoa(id)+" "); err != nil {
				return err
			}
		}
		return nil
	}))
}

// SubscribePrefix adds a plain libzmq subscription: every message whose
// first frame starts with prefix ("" for all), as a ZeroMQ SUB socket
// filters. Use it for publishers that are not zmqkit's, such as the ZeroMQ
// Guide's weather server ("10001 ") or a publisher of [topic, body]
// envelopes (the topic), with Receive or ReceiveFrames.
func (s *Subscriber) SubscribePrefix(prefix []byte) error {
	return s.opError("subscribe", s.sock.Do(func(z *zmq.Socket) error { return z.SetSubscribe(string(prefix)) }))
}

// UnsubscribePrefix removes a subscription added by SubscribePrefix.
func (s *Subscriber) UnsubscribePrefix(prefix []byte) error {
	return s.opError("unsubscribe", s.sock.Do(func(z *zmq.Socket) error { return z.SetUnsubscribe(string(prefix)) }))
}

// AddEndpoint connects (or, with "@", binds) one more endpoint, as the
// Python module's addPort does.
func (s *Subscriber) AddEndpoint(endpoint string) error { return s.addEndpoint(endpoint, false) }

// Receive returns the next message, waiting until one arrives, ctx ends
// (an error matching ctx's) or the Subscriber is closed (ErrClosed). A
// frame that does not decode, or a message of several frames, is returned
// as a *MalformedError, and the next call receives the next message
// normally.
func (s *Subscriber) Receive(ctx context.Context) (Message, error) {
	frame, err := s.single(s.sock.RecvBytes(ctx))
	if err != nil {
		return Message{}, s.opError("receive", err)
	}
	s.stats.received.Add(1)
	m, err := s.codec.Decode(frame)
	if err != nil {
		s.stats.malformed.Add(1)
		return Message{}, s.opError("receive", err)
	}
	return m, nil
}

// ReceiveBatch returns the messages that have arrived, decoded, up to
// limit (at most MaxBatch), waiting for the first as Receive does. One cgo
// call takes them all from libzmq, where Receive makes a call per message,
// so a loop over a busy stream costs less per message; order is kept, and a
// batch holds only what had already arrived, so it adds no wait. Malformed
// messages are counted, sent to the error callback and skipped, as Run
// does. The bodies of a batch may share one allocation: keeping one keeps
// the batch's memory (up to 32 KiB).
func (s *Subscriber) ReceiveBatch(ctx context.Context, limit int) ([]Message, error) {
	for {
		frames, err := s.receiveBatch(ctx, s.sock, limit)
		if err != nil {
			return nil, s.opError("receive", err)
		}
		out := make([]Message, 0, len(frames))
		for _, f := range frames {
			m, err := s.codec.Decode(f)
			if err != nil {
				s.stats.malformed.Add(1)
				s.report(s.opError("receive", err))
				continue
			}
			out = append(out, m)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

// ReceiveFrames returns the next message as it came, every frame of it,
// undecoded: for publishers that send raw or multi-frame messages (the
// Guide's [topic, body] envelopes). It waits as Receive does.
func (s *Subscriber) ReceiveFrames(ctx context.Context) ([][]byte, error) {
	return s.receiveFrames(ctx, s.sock.RecvMessage)
}

// Run receives messages and calls h for each until ctx ends (returning an
// error matching ctx's) or the Subscriber is closed (returning ErrClosed).
// With WithConcurrency(n), n calls run at once and order is not kept; with
// the default of 1, messages are handled one at a time in order. Malformed
// messages are counted and sent to the error callback, and Run goes on. Run
// returns only after every handler call has returned.
func (s *Subscriber) Run(ctx context.Context, h MessageHandler) error {
	return runHandler(&s.base, ctx, s.Receive, h)
}

// Codec returns the Subscriber's codec, whose encoding and types it uses.
func (s *Subscriber) Codec() *Codec { return s.codec }

// Endpoints returns the endpoints bound, with ephemeral ports resolved,
// then those connected.
func (s *Subscriber) Endpoints() []string { return s.conn.Endpoints() }

// Stats returns the Subscriber's counters.
func (s *Subscriber) Stats() Stats { return s.stats.snapshot() }

// Close closes the Subscriber. Blocked calls return ErrClosed. Close is
// idempotent.
func (s *Subscriber) Close() error { return s.close(s) }
