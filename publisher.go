package zmqkit

import (
	"context"
	"strconv"
	"strings"
	"sync"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Publisher broadcasts "<msgid> <msgtype> <body>" frames to every connected
// Subscriber (a ZeroMQ PUB socket on the wire; an XPUB inside, which lets
// it see subscriptions). It binds by default.
//
// A Publisher is safe for concurrent use by multiple goroutines.
//
// Delivery is best effort, as in ZeroMQ and the Python module:
//   - Slow joiners: a subscriber receives only what is published after its
//     connection and subscription have reached the publisher, which takes
//     some milliseconds after both sides exist. Messages published before
//     then are lost. WaitForSubscribers waits for them when the start
//     matters.
//   - At the high-water mark (WithSendHWM, 1000 per subscriber by default),
//     a PUB socket drops messages for that subscriber silently; Publish
//     never blocks on a slow subscriber.
//   - With no subscriber connected, messages are discarded.
type Publisher struct {
	base
	sock  *zsock.Socket
	codec *Codec
	msgID int
	subs  subscriptions
}

// subscriptions are the subscriptions that reached a Publisher, counted by
// filter: its XPUB passes every subscribe and unsubscribe on
// (ZMQ_XPUB_VERBOSER), the reactor reads them (zsock's Incoming) and
// WaitForSubscribers waits on them.
type subscriptions struct {
	mu      sync.Mutex
	count   map[string]int
	changed chan struct{} // closed and replaced on every change
}

// note records one XPUB message: \x01 + filter subscribes, \x00 + filter
// unsubscribes.
func (s *subscriptions) note(msg [][]byte) {
	if len(msg) != 1 || len(msg[0]) == 0 || msg[0][0] > 1 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	topic := string(msg[0][1:])
	if msg[0][0] == 1 {
		s.count[topic]++
	} else if s.count[topic]--; s.count[topic] <= 0 {
		delete(s.count, topic)
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// matching counts the subscriptions whose filter matches frames that start
// with prefix (or, longer, start with it), and returns a channel closed at
// the next change.
func (s *subscriptions) matching(prefix string) (int, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for topic, c := range s.count {
		if strings.HasPrefix(prefix, topic) || strings.HasPrefix(topic, prefix) {
			n += c
		}
	}
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return n, s.changed
}

// NewPublisher binds (or, with ">", connects) the endpoints and returns a
// Publisher. endpoints is a comma-separated list such as
// "tcp://*:5555,inproc://events"; "tcp://127.0.0.1:*" binds an ephemeral
// port, which Endpoints reports.
func NewPublisher(endpoints string, opts ...Option) (*Publisher, error) {
	p := &Publisher{}
	var err error
	// An XPUB is a PUB on the wire that also passes the subscriptions it
	// receives on, for WaitForSubscribers.
	verbose := zsock.Option{Name: "ZMQ_XPUB_VERBOSER", Set: func(z *zmq.Socket) error { return z.SetXpubVerboser(1) }}
	cfg := zsock.Config{Type: zmq.XPUB, Options: []zsock.Option{verbose}, Incoming: p.subs.note}
	if p.sock, err = p.openSocket(p, kindPublisher, endpoints, true, opts, func() zsock.Config { return cfg }); err != nil {
		return nil, err
	}
	if p.codec, err = p.o.newCodec(); err != nil {
		_ = p.Close() // nothing was sent on it
		return nil, err
	}
	p.msgID = p.o.msgID
	return p, nil
}

// Publish sends v by the Python module's rule: a string or []byte is sent
// as text, a json.RawMessage as json as it is, a Message with its own msgid
// and type, and anything else as JSON, under the Publisher's msgid
// (WithMsgID, default 1000). So Publish(ctx, map[string]int{"data": 42})
// sends `1000 json {"data":42}`. Publish does not wait for subscribers; it
// returns an error matching ctx's if ctx has ended, ErrClosed once the
// Publisher is closed, and ErrInvalidMessage for a value it cannot encode.
func (p *Publisher) Publish(ctx context.Context, v any) error {
	return p.send(ctx, func(hdr []byte) ([]byte, []byte, error) { return p.codec.appendValue(hdr, p.msgID, v) })
}

// PublishMessage sends m with its own msgid and type. A text or json body
// is converted to the Publisher's character encoding; other bodies go as
// they are.
func (p *Publisher) PublishMessage(ctx context.Context, m Message) error {
	return p.send(ctx, func(hdr []byte) ([]byte, []byte, error) { return p.codec.encode(hdr, m.ID, m.Type, m.Body, false) })
}

// PublishBatch sends each of vs as Publish does, in order, with one cgo call
// for as many as libzmq takes at once (up to MaxBatch messages or 32 KiB),
// where Publish makes a call per message: a loop with many small messages to
// publish costs less per message. It returns how many were sent: all of
// them, or those before the error (a value that cannot be encoded stops the
// batch there, and is not sent).
func (p *Publisher) PublishBatch(ctx context.Context, vs []any) (int, error) {
	sent := 0
	for sent < len(vs) { // a chunk at a time: the encoded copy stays small (and pooled)
		chunk := vs[sent:min(len(vs), sent+MaxBatch)]
		n, err := p.publishChunk(ctx, chunk)
		sent += n
		p.stats.sent.Add(uint64(n))
		if err != nil {
			return sent, p.opError("publish", err)
		}
	}
	return sent, nil
}

// publishChunk encodes vs into one pooled buffer, stopping once it holds
// what one batch call sends (zsock.BatchBytes), and sends them; it returns
// how many went, and the error of the first value that could not be
// encoded or sent.
func (p *Publisher) publishChunk(ctx context.Context, vs []any) (int, error) {
	bp := p.codec.getBuf()
	defer p.codec.putBuf(bp)
	buf := (*bp)[:0]
	ends := make([]int, 0, len(vs))
	var encErr error
	for _, v := range vs {
		start := len(buf)
		hdr, wire, err := p.codec.appendValue(buf, p.msgID, v)
		if err != nil {
			buf, encErr = buf[:start], err
			break
		}
		buf = append(hdr, wire...)
		ends = append(ends, len(buf))
		if len(buf) >= zsock.BatchBytes {
			break // what one call sends; the rest is the next chunk's
		}
	}
	*bp = buf
	msgs := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		msgs[i] = buf[start:end]
		start = end
	}
	n, err := p.sock.SendBatch(ctx, msgs)
	if err == nil {
		err = encErr
	}
	return n, err
}

// send frames one message with encode, into a pooled buffer, and sends its
// header and body in one call.
func (p *Publisher) send(ctx context.Context, encode func(hdr []byte) (hdr2, wire []byte, err error)) error {
	bp := p.codec.getBuf()
	hdr, wire, err := encode((*bp)[:0])
	if err == nil {
		err = p.sock.SendConcat(ctx, hdr, wire)
	}
	*bp = hdr
	p.codec.putBuf(bp)
	if err != nil {
		return p.opError("publish", err)
	}
	p.stats.sent.Add(1)
	return nil
}

// PublishFrames sends frames as one message, as they are: no msgid, type
// or encoding, for subscribers that are not zmqkit's or the Python
// module's. The first frame is the one subscribers filter on (a topic, in
// the ZeroMQ Guide's pub-sub envelopes); a subscriber that wants one frame
// per message, as Subscriber.Receive does, gets one frame. At least one
// frame is needed.
func (p *Publisher) PublishFrames(ctx context.Context, frames ...[]byte) error {
	return p.sendFrames(ctx, "publish", frames, sockSend(p.sock))
}

// WaitForSubscribers waits until n subscriptions that match the
// Publisher's msgid (WithMsgID) have reached it, so that a message
// published next is delivered to n subscribers, or until ctx ends (an
// error matching ctx's) or the Publisher is closed (ErrClosed). It beats
// the slow joiner: a subscriber is counted once its connection is up and
// its subscription has been applied, which is what makes it receive.
//
// A subscription matches when its filter is a prefix of "<msgid> " (a
// Subscriber made without WithMsgIDs subscribes to "", WithMsgIDs(1000) to
// "1000 "; the Python module's Subscriber to "1000"), or starts with it.
// Subscribers of any implementation count: a pyzmq SUB, the Python module,
// a zmqkit Subscriber. One subscriber with two matching filters counts
// twice, and one that leaves stops counting. Publishing is not slowed by
// it: the subscriptions are read in the background.
func (p *Publisher) WaitForSubscribers(ctx context.Context, n int) error {
	if n < 0 {
		return p.opError("wait for subscribers", invalidArg("%d subscribers", n))
	}
	prefix := strconv.Itoa(p.msgID) + " "
	for {
		have, changed := p.subs.matching(prefix)
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return p.opError("wait for subscribers", ctx.Err())
		case <-p.done:
			return p.opError("wait for subscribers", ErrClosed)
		}
	}
}

// AddEndpoint binds (or, with ">", connects) one more endpoint.
func (p *Publisher) AddEndpoint(endpoint string) error { return p.addEndpoint(endpoint, true) }

// Codec returns the Publisher's codec, whose encoding and types it uses.
func (p *Publisher) Codec() *Codec { return p.codec }

// Endpoints returns the endpoints bound, with ephemeral ports resolved
// (tcp://127.0.0.1:41234), then those connected.
func (p *Publisher) Endpoints() []string { return p.conn.Endpoints() }

// Stats returns the Publisher's counters.
func (p *Publisher) Stats() Stats { return p.stats.snapshot() }

// Close closes the Publisher; messages still queued get the linger time
// (WithLinger) to leave. Close is idempotent.
func (p *Publisher) Close() error { return p.close(p) }
