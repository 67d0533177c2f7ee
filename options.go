package zmqkit

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Defaults, in one place. Each option's doc repeats the default it overrides.
const (
	// DefaultLinger bounds how long a closed socket keeps trying to deliver
	// queued messages, and so how long Context.Close can take.
	DefaultLinger = 200 * time.Millisecond
	// DefaultConcurrency is how many handler calls run at once.
	DefaultConcurrency = 1
	// DefaultHWM is libzmq's high-water mark, in messages, per peer.
	DefaultHWM = 1000
)

// Option configures an object at construction. Each option applies to the
// types its documentation lists; given to another type, or with a bad
// value, it makes the constructor fail with an error that wraps
// ErrInvalidOption and names the option. The zero Option does nothing.
type Option struct {
	name string
	set  func(*options) error
}

// kind is an object's type, as options and errors name it.
type kind uint16

const (
	kindPublisher kind = 1 << iota
	kindSubscriber
	kindRRServer
	kindRRClient
	kindPusher
	kindPuller
	kindPairServer
	kindPairClient
	kindProxy

	// allKinds are the eight types; a Proxy is not one of them.
	allKinds = kindPublisher | kindSubscriber | kindRRServer | kindRRClient | kindPusher | kindPuller | kindPairServer | kindPairClient
)

// kindNames are the exported type names, in kind bit order.
var kindNames = [...]string{"Publisher", "Subscriber", "RRServer", "RRClient", "PPPusher", "PPPuller", "PairServer", "PairClient", "Proxy"}

// String returns the type's name as errors and logs use it: "publisher".
func (k kind) String() string { return strings.ToLower(k.typeName()) }

// typeName returns the exported type name of a single kind.
func (k kind) typeName() string {
	for i, n := range kindNames {
		if k == 1<<i {
			return n
		}
	}
	return fmt.Sprintf("kind(%#x)", uint16(k))
}

// list names the types in k: "Publisher, Subscriber", or "every type"
// (and Proxy).
func (k kind) list() string {
	if k&allKinds == allKinds {
		if k&kindProxy != 0 {
			return "every type and Proxy"
		}
		return "every type"
	}
	var names []string
	for i, n := range kindNames {
		if k&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// optionKinds is the one table of which option applies to which type: the
// constructors refuse the others, and a test checks every option's
// "Applies to" line against it.
var optionKinds = map[string]kind{
	"WithZMQContext":        allKinds | kindProxy,
	"WithLogger":            allKinds | kindProxy,
	"WithLinger":            allKinds | kindProxy,
	"WithReconnectInterval": allKinds | kindProxy,
	"WithHeartbeat":         allKinds | kindProxy,
	"WithMsgID":             kindPublisher,
	"WithMsgIDs":            kindSubscriber,
	"WithEncoding":          kindPublisher | kindSubscriber,
	"WithBodyCodec":         kindPublisher | kindSubscriber,
	"WithSendHWM":           kindPublisher | kindRRServer | kindRRClient | kindPusher | kindPairServer | kindPairClient | kindProxy,
	"WithRecvHWM":           kindSubscriber | kindRRServer | kindRRClient | kindPuller | kindPairServer | kindPairClient | kindProxy,
	"WithMaxMessageSize":    kindSubscriber | kindRRServer | kindRRClient | kindPuller | kindPairServer | kindPairClient | kindProxy,
	"WithConcurrency":       kindSubscriber | kindRRServer | kindPuller | kindPairServer | kindPairClient,
	"WithErrorHandler":      allKinds | kindProxy,
	"WithRetries":           kindRRClient,
	"WithCurveServer":       allKinds | kindProxy,
	"WithCurveClient":       allKinds | kindProxy,
	"WithEvents":            allKinds | kindProxy,
	"WithCapture":           kindProxy,
}

func option(name string, set func(*options) error) Option {
	if _, ok := optionKinds[name]; !ok {
		panic("zmqkit: option " + name + " missing from optionKinds")
	}
	return Option{name: name, set: set}
}

// options holds every setting with its default; see defaultOptions.
type options struct {
	zctx        *Context
	msgID       int
	msgIDs      []int // Subscriber filters; empty means every message
	encoding    string
	bodies      map[string]BodyCodec
	logger      *slog.Logger
	onError     func(error)
	sndHWM      int
	rcvHWM      int
	linger      time.Duration
	concurrency int

	reconnectIvl    time.Duration // 0: libzmq's default (100 ms)
	reconnectIvlMax time.Duration
	heartbeatIvl    time.Duration // 0: no heartbeats
	heartbeatTTL    time.Duration
	heartbeatTmo    time.Duration
	maxMsgSize      int64 // -1: no limit

	// Request/reply (rrclient.go).
	tries      int           // 1: no retries
	tryTimeout time.Duration // per-try time-out when tries > 1

	// Security (curve.go): nil for a plain object. zapDomain is the
	// object's ZAP domain, set when a CURVE server opens.
	curve     *curveConfig
	zapDomain string

	onEvent func(Event) // events.go

	capture func(toBack bool, frames [][]byte) // proxy.go
}

func defaultOptions() options {
	return options{
		msgID:       DefaultMsgID,
		encoding:    "utf-8",
		logger:      slog.New(slog.DiscardHandler),
		sndHWM:      DefaultHWM,
		rcvHWM:      DefaultHWM,
		linger:      DefaultLinger,
		concurrency: DefaultConcurrency,
		maxMsgSize:  -1,
		tries:       1,
	}
}

// applyOptions applies opts, in order, over the defaults for an object of
// kind k, refusing options that do not apply to k.
func applyOptions(k kind, opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt.set == nil {
			continue
		}
		if applies := optionKinds[opt.name]; applies&k == 0 {
			return o, invalid(opt.name, "does not apply to %s (it applies to %s)", k.typeName(), applies.list())
		}
		if err := opt.set(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

func invalid(name string, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}

// invalidBy returns an error wrapping ErrInvalidOption and err, the reason
// option name refused its value, with one "zmqkit:" prefix in its text.
func invalidBy(name string, err error) error {
	return &wrapped{msg: fmt.Sprintf("%v %s: %s", ErrInvalidOption, name, strings.TrimPrefix(err.Error(), "zmqkit: ")),
		errs: []error{ErrInvalidOption, err}}
}

// wrapped is an error with its own text that matches several.
type wrapped struct {
	msg  string
	errs []error
}

func (e *wrapped) Error() string   { return e.msg }
func (e *wrapped) Unwrap() []error { return e.errs }

// libzmq holds counts and milliseconds in a C int.
const (
	maxCInt         = math.MaxInt32
	maxCIntDuration = time.Duration(maxCInt) * time.Millisecond
)

// checkCount refuses a count that libzmq's C int cannot hold.
func checkCount(name string, n int) error {
	switch {
	case n < 0:
		return invalid(name, "%d is negative", n)
	case n > maxCInt:
		return invalid(name, "%d is above libzmq's limit of %d", n, maxCInt)
	}
	return nil
}

// checkMillis refuses a duration that, rounded up to whole milliseconds,
// libzmq's C int cannot hold.
func checkMillis(name, what string, d time.Duration) error {
	switch {
	case d < 0:
		return invalid(name, "%s %v is negative", what, d)
	case d > maxCIntDuration:
		return invalid(name, "%s %v is above libzmq's limit of %dms", what, d, maxCInt)
	}
	return nil
}

// WithZMQContext puts the object on zctx instead of the process-wide
// default Context (see DefaultContext). inproc:// endpoints connect only
// objects on the same Context.
//
// Applies to every type and Proxy.
func WithZMQContext(zctx *Context) Option {
	return option("WithZMQContext", func(o *options) error {
		if zctx == nil {
			return invalid("WithZMQContext", "nil *Context")
		}
		o.zctx = zctx
		return nil
	})
}

// WithMsgID sets the msgid Publisher.Publish uses. Default 1000, as in the
// Python module.
//
// Applies to: Publisher.
func WithMsgID(id int) Option {
	return option("WithMsgID", func(o *options) error {
		if id < 0 {
			return invalid("WithMsgID", "msgid %d is negative", id)
		}
		o.msgID = id
		return nil
	})
}

// WithMsgIDs makes a Subscriber receive only messages whose msgid is one of
// ids, matched exactly (1000 does not match 10001). Default: every message.
//
// Applies to: Subscriber.
func WithMsgIDs(ids ...int) Option {
	return option("WithMsgIDs", func(o *options) error {
		if len(ids) == 0 {
			return invalid("WithMsgIDs", "no msgid given (omit the option to receive every message)")
		}
		for _, id := range ids {
			if id < 0 {
				return invalid("WithMsgIDs", "msgid %d is negative", id)
			}
		}
		o.msgIDs = append(o.msgIDs[:0:0], ids...)
		return nil
	})
}

// WithEncoding sets the character encoding of text and json bodies on the
// wire, by WHATWG label: "utf-8" (the default), "gbk", "gb18030", "big5",
// "shift_jis", "windows-1252", "latin1" and the rest. Messages in Go are
// always UTF-8.
//
// Applies to: Publisher, Subscriber.
func WithEncoding(name string) Option {
	return option("WithEncoding", func(o *options) error {
		if _, _, err := lookupEncoding(name); err != nil {
			return invalidBy("WithEncoding", err)
		}
		o.encoding = name
		return nil
	})
}

// WithBodyCodec registers a codec for one more message type, such as
// "msgpack". text and json are built in and cannot be replaced.
//
// Applies to: Publisher, Subscriber.
func WithBodyCodec(typ string, bc BodyCodec) Option {
	return option("WithBodyCodec", func(o *options) error {
		if err := checkType(typ); err != nil {
			return invalidBy("WithBodyCodec", err)
		}
		if typ == TypeText || typ == TypeJSON {
			return invalid("WithBodyCodec", "message type %q is built in and cannot be replaced", typ)
		}
		if bc == nil {
			return invalid("WithBodyCodec", "nil BodyCodec for %q", typ)
		}
		if o.bodies == nil {
			o.bodies = map[string]BodyCodec{}
		}
		o.bodies[typ] = bc
		return nil
	})
}

// WithLogger sets where the object logs (opening, closing, failures at the
// Warn level). Default: nowhere.
//
// Applies to every type and Proxy.
func WithLogger(l *slog.Logger) Option {
	return option("WithLogger", func(o *options) error {
		if l == nil {
			return invalid("WithLogger", "nil *slog.Logger")
		}
		o.logger = l
		return nil
	})
}

// WithErrorHandler sets a callback for failures that have no caller to
// return to: malformed messages and handler errors and panics met by Run, a
// server's replies that could not be sent, a connection dropped and made
// again (ErrConnectionDropped), a pair link that could not be reopened, a
// CURVE client refused (*AuthError), a WithEvents callback that panicked.
// It is called from the object's goroutines, possibly concurrently, and
// must not block for long; a panic in it is recovered and logged. Default:
// none (the failures are still counted in Stats and logged at the Warn
// level).
//
// Applies to every type and Proxy.
func WithErrorHandler(f func(error)) Option {
	return option("WithErrorHandler", func(o *options) error {
		if f == nil {
			return invalid("WithErrorHandler", "nil func")
		}
		o.onError = f
		return nil
	})
}

// WithSendHWM sets ZMQ_SNDHWM, the messages queued per peer before a PUB
// drops or a PUSH, DEALER or PAIR blocks. 0 means no limit. Default 1000.
//
// Applies to: Publisher, RRServer, RRClient, PPPusher, PairServer, PairClient, Proxy.
func WithSendHWM(n int) Option {
	return option("WithSendHWM", func(o *options) error {
		if err := checkCount("WithSendHWM", n); err != nil {
			return err
		}
		o.sndHWM = n
		return nil
	})
}

// WithRecvHWM sets ZMQ_RCVHWM, the messages queued per peer on the receive
// side. 0 means no limit. Default 1000.
//
// Applies to: Subscriber, RRServer, RRClient, PPPuller, PairServer, PairClient, Proxy.
func WithRecvHWM(n int) Option {
	return option("WithRecvHWM", func(o *options) error {
		if err := checkCount("WithRecvHWM", n); err != nil {
			return err
		}
		o.rcvHWM = n
		return nil
	})
}

// WithLinger bounds how long queued messages are still sent after Close,
// rounded up to a whole millisecond; 0 drops them at once. Default 200 ms.
// They are sent in the background: Close returns at once, and
// Context.Close waits for them (up to the linger time).
// An unbounded linger is not offered: it is what makes libzmq hang.
//
// Applies to every type and Proxy.
func WithLinger(d time.Duration) Option {
	return option("WithLinger", func(o *options) error {
		if err := checkMillis("WithLinger", "linger", d); err != nil {
			return err
		}
		o.linger = d
		return nil
	})
}

// WithConcurrency sets how many handler calls Run makes at once, from 1 to
// MaxConcurrency. With 1, the default, messages are handled one at a time
// in order, on Run's goroutine. With more, order is not kept: the
// goroutine that receives a message handles it, and if the call is still
// running after about 50µs another goroutine takes over receiving; so
// quick handlers cost no hand-over between goroutines, and goroutines are
// started only as slow calls need them.
//
// Applies to: Subscriber, RRServer, PPPuller, PairServer, PairClient.
func WithConcurrency(n int) Option {
	return option("WithConcurrency", func(o *options) error {
		if n < 1 || n > MaxConcurrency {
			return invalid("WithConcurrency", "%d is not between 1 and %d", n, MaxConcurrency)
		}
		o.concurrency = n
		return nil
	})
}

// WithReconnectInterval sets how soon a connecting socket retries a lost or
// refused connection (ZMQ_RECONNECT_IVL), and the ceiling of its exponential
// back-off (ZMQ_RECONNECT_IVL_MAX; 0 for none). Default: libzmq's 100 ms,
// no back-off.
//
// Applies to every type and Proxy.
func WithReconnectInterval(ivl, max time.Duration) Option {
	return option("WithReconnectInterval", func(o *options) error {
		if ivl <= 0 {
			return invalid("WithReconnectInterval", "interval %v must be positive", ivl)
		}
		if err := checkMillis("WithReconnectInterval", "interval", ivl); err != nil {
			return err
		}
		if err := checkMillis("WithReconnectInterval", "maximum", max); err != nil {
			return err
		}
		if max != 0 && max < ivl {
			return invalid("WithReconnectInterval", "maximum %v is below the interval %v", max, ivl)
		}
		o.reconnectIvl, o.reconnectIvlMax = ivl, max
		return nil
	})
}

// WithHeartbeat makes the socket send ZMTP heartbeats every ivl and drop a
// connection whose peer has not answered within timeout (ZMQ_HEARTBEAT_IVL,
// ZMQ_HEARTBEAT_TIMEOUT; ZMQ_HEARTBEAT_TTL is set to timeout). Default: no
// heartbeats, so a peer that vanishes without closing TCP goes unnoticed.
//
// Applies to every type and Proxy.
func WithHeartbeat(ivl, timeout time.Duration) Option {
	return option("WithHeartbeat", func(o *options) error {
		if ivl <= 0 || timeout <= 0 {
			return invalid("WithHeartbeat", "interval %v and timeout %v must be positive", ivl, timeout)
		}
		if err := checkMillis("WithHeartbeat", "interval", ivl); err != nil {
			return err
		}
		if timeout > 6553500*time.Millisecond {
			return invalid("WithHeartbeat", "timeout %v is above libzmq's limit of 6553.5s", timeout)
		}
		o.heartbeatIvl, o.heartbeatTmo, o.heartbeatTTL = ivl, timeout, timeout
		return nil
	})
}

// WithMaxMessageSize makes the socket drop the connection of any peer that
// sends a message larger than n bytes (ZMQ_MAXMSGSIZE). The message is
// lost, and so are those that followed it on that connection. libzmq would
// not reconnect a dropped connection that the object made itself (a
// connecting endpoint); zmqkit connects again, counts it in
// Stats.ProtocolErrors and reports ErrConnectionDropped to the error
// callback. Default: no limit.
//
// Applies to: Subscriber, RRServer, RRClient, PPPuller, PairServer, PairClient, Proxy.
func WithMaxMessageSize(n int64) Option {
	return option("WithMaxMessageSize", func(o *options) error {
		if n <= 0 {
			return invalid("WithMaxMessageSize", "%d must be positive", n)
		}
		o.maxMsgSize = n
		return nil
	})
}

// WithRetries makes RRClient.Request wait at most perTry for a reply and,
// if none came, send the request again, up to tries sends in all (the Lazy
// Pirate pattern); when the last try times out Request returns an error
// matching ErrNoReply. The request's ctx still bounds the whole call. Use it
// only for idempotent requests: a server may receive, and answer, a
// request more than once. Each resend goes to the next connected server when
// there are several. With retries on, a server seen to disconnect (closed,
// crashed, or, with WithHeartbeat, frozen) ends every try in flight at once
// and its request is sent again, without waiting for the per-try time-out;
// as the client cannot tell which server had which request, requests being
// handled by a server still up may be handled twice (the first reply wins;
// a second is dropped and counted). Default: off (one try, bounded only by
// ctx).
//
// Applies to: RRClient.
func WithRetries(tries int, perTry time.Duration) Option {
	return option("WithRetries", func(o *options) error {
		if tries < 1 {
			return invalid("WithRetries", "tries %d is less than 1", tries)
		}
		if perTry <= 0 {
			return invalid("WithRetries", "per-try time-out %v must be positive", perTry)
		}
		o.tries, o.tryTimeout = tries, perTry
		return nil
	})
}

// ms rounds d up to whole milliseconds: libzmq truncates, and a truncated
// 500µs would be 0, which means something else entirely.
func ms(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return ((d + time.Millisecond - 1) / time.Millisecond) * time.Millisecond
}

// socketOptions turns o into the socket options applied before the first
// bind or connect.
func (o *options) socketOptions() []zsock.Option {
	opts := []zsock.Option{
		{Name: "ZMQ_LINGER", Set: func(s *zmq.Socket) error { return s.SetLinger(ms(o.linger)) }},
		{Name: "ZMQ_SNDHWM", Set: func(s *zmq.Socket) error { return s.SetSndhwm(o.sndHWM) }},
		{Name: "ZMQ_RCVHWM", Set: func(s *zmq.Socket) error { return s.SetRcvhwm(o.rcvHWM) }},
	}
	if o.reconnectIvl > 0 {
		opts = append(opts, zsock.Option{Name: "ZMQ_RECONNECT_IVL", Set: func(s *zmq.Socket) error {
			if err := s.SetReconnectIvl(ms(o.reconnectIvl)); err != nil {
				return err
			}
			return s.SetReconnectIvlMax(ms(o.reconnectIvlMax))
		}})
	}
	if o.heartbeatIvl > 0 {
		opts = append(opts, zsock.Option{Name: "ZMQ_HEARTBEAT_IVL", Set: func(s *zmq.Socket) error {
			if err := s.SetHeartbeatIvl(ms(o.heartbeatIvl)); err != nil {
				return err
			}
			if err := s.SetHeartbeatTimeout(ms(o.heartbeatTmo)); err != nil {
				return err
			}
			return s.SetHeartbeatTtl(ms(o.heartbeatTTL))
		}})
	}
	if o.curve == nil {
		// Refuses ZMTP/1.0 and 2.0 peers: libzmq does when ZAP is on,
		// which a domain turns on for a plain socket too.
		opts = append(opts, zsock.Option{Name: "ZMQ_ZAP_DOMAIN", Set: func(s *zmq.Socket) error {
			return s.SetZapDomain(plainDomain)
		}})
	}
	if c := o.curve; c != nil {
		opts = append(opts, zsock.Option{Name: "CURVE keys", Set: func(s *zmq.Socket) error {
			if c.server {
				if err := s.SetZapDomain(o.zapDomain); err != nil {
					return err
				}
				if err := s.SetCurveServer(1); err != nil {
					return err
				}
				return s.SetCurveSecretkey(c.keys.Secret)
			}
			if err := s.SetCurveServerkey(c.serverKey); err != nil {
				return err
			}
			if err := s.SetCurvePublickey(c.keys.Public); err != nil {
				return err
			}
			return s.SetCurveSecretkey(c.keys.Secret)
		}})
	}
	if o.maxMsgSize > 0 {
		opts = append(opts, zsock.Option{Name: "ZMQ_MAXMSGSIZE", Set: func(s *zmq.Socket) error {
			return s.SetMaxmsgsize(o.maxMsgSize)
		}})
	}
	return opts
}

// newCodec builds the object's codec from the encoding and body codecs.
func (o *options) newCodec() (*Codec, error) {
	c, err := NewCodec(o.encoding)
	if err != nil {
		return nil, err
	}
	for typ, bc := range o.bodies {
		if err := c.Register(typ, bc); err != nil {
			return nil, err
		}
	}
	return c, nil
}
