package zmqkit

import (
	"context"
	"strconv"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// MessageHandler handles one message received by Subscriber.Run. Its ctx
// ends when Run returns. A returned error or a panic is recovered, counted
// in Stats and sent to the error callback; it never stops Run.
type MessageHandler func(ctx context.Context, m Message) error

// Subscriber receives "<msgid> <msgtype> <body>" frames from one or more
// Publishers (a ZeroMQ SUB socket). It connects by default.
//
// A Subscriber is safe for concurrent use by multiple goroutines.
//
// It receives only the msgids given by WithMsgIDs, matched exactly ("1000 "
// is the filter, so 1000 does not match 10001), or every message without
// that option. Messages queue in libzmq up to the receive high-water mark
// (WithRecvHWM, 1000 per publisher); beyond it the publisher drops them, so
// a handler that falls behind loses messages rather than slowing the
// publisher.
type Subscriber struct {
	base
	codec *Codec
}

// NewSubscriber connects (or, with "@", binds) the endpoints and subscribes.
// Options: WithContext, WithMsgIDs, WithEncoding, WithBodyCodec,
// WithRecvHWM, WithConcurrency (for Run), WithErrorHandler, WithLogger,
// WithHeartbeat, WithReconnectInterval.
func NewSubscriber(endpoints string, opts ...Option) (*Subscriber, error) {
	s := &Subscriber{}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	// Subscribe before connecting, so no message slips through unfiltered.
	sub := zsock.Option{Name: "ZMQ_SUBSCRIBE", Set: func(z *zmq.Socket) error {
		for _, f := range filters(o.msgIDs) {
			if err := z.SetSubscribe(f); err != nil {
				return err
			}
		}
		return nil
	}}
	if err := s.init(s, "subscriber", zsock.Config{Type: zmq.SUB, Options: []zsock.Option{sub}}, endpoints, false, opts); err != nil {
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

// Subscribe adds exact msgid filters to a running Subscriber. A Subscriber
// made without WithMsgIDs already receives everything.
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
			return invalid(op, "msgid %d is negative", id)
		}
	}
	return s.wrap(op, s.sock.Do(func(z *zmq.Socket) error {
		for _, id := range ids {
			if err := set(z, strconv.Itoa(id)+" "); err != nil {
				return err
			}
		}
		return nil
	}))
}

// AddEndpoint connects (or, with "@", binds) one more endpoint, as the
// Python module's addPort does.
func (s *Subscriber) AddEndpoint(ep string) error {
	e, err := endpoint.ParseOne(ep, false)
	if err != nil {
		return err
	}
	return s.sock.Attach(e)
}

// Receive returns the next message, waiting until one arrives, ctx ends
// (returning ctx's error) or the Subscriber is closed (ErrClosed). A frame
// that does not decode, or a message of several frames, is returned as a
// *MalformedError, and the next call receives the next message normally.
func (s *Subscriber) Receive(ctx context.Context) (Message, error) {
	frame, err := s.single(s.sock.RecvBytes(ctx))
	if err != nil {
		return Message{}, s.wrap("receive", err)
	}
	s.stats.received.Add(1)
	m, err := s.codec.Decode(frame)
	if err != nil {
		s.stats.malformed.Add(1)
		return Message{}, err
	}
	return m, nil
}

// Run receives messages and calls h for each until ctx ends (returning
// ctx's error) or the Subscriber is closed (returning ErrClosed). With
// WithConcurrency(n), n calls run at once and order is not kept; with the
// default of 1, messages are handled one at a time in order. Malformed
// frames are counted and sent to the error callback, and Run goes on. Run
// returns only after every handler call has returned.
func (s *Subscriber) Run(ctx context.Context, h MessageHandler) error {
	if h == nil {
		return invalid("Run", "nil handler")
	}
	return serve(&s.base, ctx, s.o.concurrency, skipMalformed(&s.base, s.Receive), func(ctx context.Context, m Message) {
		_ = s.call(func() error { return h(ctx, m) }) // reported by call
	})
}

// Codec returns the Subscriber's codec, whose encoding and types it uses.
func (s *Subscriber) Codec() *Codec { return s.codec }

// Endpoints returns the endpoints bound, with ephemeral ports resolved,
// then those connected.
func (s *Subscriber) Endpoints() []string { return s.sock.Endpoints() }

// Stats returns the Subscriber's counters.
func (s *Subscriber) Stats() Stats { return s.stats.snapshot() }

// Close closes the Subscriber. Blocked calls return ErrClosed. Close is
// idempotent.
func (s *Subscriber) Close() error { return s.close(s) }
