package zmqkit

import (
	"context"
	"encoding/json"
	"unicode/utf8"
	"unsafe"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Publisher broadcasts "<msgid> <msgtype> <body>" frames to every connected
// Subscriber (a ZeroMQ PUB socket). It binds by default.
//
// A Publisher is safe for concurrent use by multiple goroutines.
//
// Delivery is best effort, as in ZeroMQ and the Python module:
//   - Slow joiners: a subscriber receives only what is published after its
//     connection and subscription have reached the publisher, which takes
//     some milliseconds after both sides exist. Messages published before
//     then are lost. Synchronise first (have subscribers announce themselves,
//     or publish until a first message is seen) when the start matters.
//   - At the high-water mark (WithSendHWM, 1000 per subscriber by default),
//     a PUB socket drops messages for that subscriber silently; Publish
//     never blocks on a slow subscriber.
//   - With no subscriber connected, messages are discarded.
type Publisher struct {
	base
	codec *Codec
	msgID int
}

// NewPublisher binds (or, with ">", connects) the endpoints and returns a
// Publisher. endpoints is a comma-separated list such as
// "tcp://*:5555,inproc://events"; "tcp://127.0.0.1:*" binds an ephemeral
// port, which Endpoints reports. Options: WithContext, WithMsgID,
// WithEncoding, WithBodyCodec, WithSendHWM, WithLinger, WithLogger,
// WithHeartbeat, WithReconnectInterval.
func NewPublisher(endpoints string, opts ...Option) (*Publisher, error) {
	p := &Publisher{}
	if err := p.init(p, "publisher", zsock.Config{Type: zmq.PUB}, endpoints, true, opts); err != nil {
		return nil, err
	}
	codec, err := p.o.newCodec()
	if err != nil {
		_ = p.Close() // nothing was sent on it
		return nil, err
	}
	p.codec, p.msgID = codec, p.o.msgID
	return p, nil
}

// Publish sends v under the Publisher's msgid (WithMsgID, default 1000) by
// the Python module's rule: a string or []byte is sent as text, anything
// else as JSON, so Publish(ctx, map[string]int{"data": 42}) sends
// `1000 json {"data":42}`. A Message is sent as it is. Publish does not wait
// for subscribers; it returns ctx's error if ctx has ended, ErrClosed once
// the Publisher is closed.
func (p *Publisher) Publish(ctx context.Context, v any) error {
	return p.send(ctx, p.msgID, v)
}

// PublishMessage sends m with its own msgid and type.
func (p *Publisher) PublishMessage(ctx context.Context, m Message) error {
	return p.send(ctx, m.ID, m)
}

func (p *Publisher) send(ctx context.Context, id int, v any) error {
	if id >= 0 && p.codec.enc == nil {
		// UTF-8 text and json: libzmq's message is built in one C call.
		typ, body, ok := fastBody(v)
		if ok && utf8.Valid(body) && (typ == TypeText || json.Valid(body)) {
			if err := p.sock.SendFrame(ctx, id, typ, body); err != nil {
				return p.wrap("publish", err)
			}
			p.stats.sent.Add(1)
			return nil
		}
	}
	bp := p.codec.getBuf()
	frame, err := p.codec.appendValue(*bp, id, v)
	if err == nil {
		err = p.sock.SendBytes(ctx, frame, false)
	}
	*bp = frame
	p.codec.putBuf(bp)
	if err != nil {
		return p.wrap("publish", err)
	}
	p.stats.sent.Add(1)
	return nil
}

// fastBody returns the type and UTF-8 body of the values that need no
// marshalling: strings, []byte and text or json Messages.
func fastBody(v any) (typ string, body []byte, ok bool) {
	switch x := v.(type) {
	case string:
		return TypeText, unsafe.Slice(unsafe.StringData(x), len(x)), true
	case []byte:
		return TypeText, x, true
	case Message:
		if x.Type == TypeText || x.Type == TypeJSON {
			return x.Type, x.Body, true
		}
	}
	return "", nil, false
}

// Codec returns the Publisher's codec, whose encoding and types it uses.
func (p *Publisher) Codec() *Codec { return p.codec }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (p *Publisher) Endpoints() []string { return p.sock.Endpoints() }

// Stats returns the Publisher's counters.
func (p *Publisher) Stats() Stats { return p.stats.snapshot() }

// Close closes the Publisher; messages still queued get the linger time
// (WithLinger) to leave. Close is idempotent.
func (p *Publisher) Close() error { return p.close(p) }
