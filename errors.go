package zmqkit

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/pairlink"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// Sentinel errors. Compare with errors.Is: zmqkit wraps them with the
// operation, the endpoint or the option concerned.
var (
	// ErrClosed is returned by calls on a closed object, or one whose
	// Context was closed, including calls that were blocked when it closed.
	ErrClosed = zsock.ErrClosed

	// ErrInvalidOption is wrapped by every error for a bad option value, or
	// an option given to a type it does not apply to; the message names
	// the option.
	ErrInvalidOption = errors.New("zmqkit: invalid option")

	// ErrInvalidArgument is wrapped by errors for a bad argument that is
	// not an option: a nil handler, no frames to send, a negative msgid or
	// a missing or malformed type in a Message (those also match
	// ErrInvalidMessage).
	ErrInvalidArgument = errors.New("zmqkit: invalid argument")

	// ErrInvalidEndpoint is wrapped by errors for malformed or unsupported
	// endpoints. Failures to bind or connect are *EndpointError instead.
	ErrInvalidEndpoint = endpoint.ErrInvalid

	// ErrInvalidMessage is wrapped by errors for a message that cannot be
	// encoded: text that is not valid UTF-8 or has no form in the codec's
	// character encoding, a json body that is not JSON, a value of the
	// wrong Go type for its message type, a bad type token.
	ErrInvalidMessage = errors.New("zmqkit: invalid message")

	// ErrMalformed is matched by every *MalformedError: a received message
	// that could not be decoded.
	ErrMalformed = errors.New("zmqkit: malformed frame")

	// ErrUnknownEncoding is returned for a character encoding name that is
	// not a WHATWG encoding label.
	ErrUnknownEncoding = errors.New("zmqkit: unknown character encoding")

	// ErrUnknownType is returned when a message type has no codec to
	// marshal or unmarshal its body.
	ErrUnknownType = errors.New("zmqkit: unknown message type")

	// ErrPairReset is returned by PairClient.Request when the connection was
	// re-established (the peer restarted) after the request was sent and
	// before its reply came: the reply is lost, and the request may or may
	// not have been handled. The client itself is fine; retry if the
	// request is idempotent.
	ErrPairReset = pairlink.ErrReset

	// ErrNoReply is returned by RRClient.Request when every try allowed by
	// WithRetries timed out while the request's own ctx was still live.
	ErrNoReply = errors.New("zmqkit: no reply")

	// ErrConnectionDropped is reported to the error callback (and counted
	// in Stats.ProtocolErrors) when libzmq dropped, for a protocol error, a
	// connection the object made itself (a connecting tcp or ipc
	// endpoint): a message larger than WithMaxMessageSize, or a peer that
	// does not speak ZMTP (another service on the port, say, before the
	// real one). libzmq never reconnects such a connection; zmqkit
	// connects again, backing off up to 10 s. A PairClient (or a
	// connecting PairServer) does so by replacing its socket (see
	// PairClient).
	ErrConnectionDropped = errors.New("zmqkit: connection dropped for a protocol error")
)

// OpError is the error of a failed operation on an object, in the manner of
// net.OpError:
//
//	zmqkit: subscriber receive: context canceled
//
// Err is the cause (ErrClosed, ctx's error, a *MalformedError, a libzmq
// errno, ...): errors.Is and errors.As see through an OpError.
type OpError struct {
	Kind     string // the object: "publisher", "subscriber", "rrclient", ...
	Op       string // the operation: "publish", "receive", "request", ...
	Endpoint string // the endpoint concerned, if the operation had one
	Err      error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("zmqkit: ")
	b.WriteString(e.Kind)
	b.WriteByte(' ')
	b.WriteString(e.Op)
	if e.Endpoint != "" {
		fmt.Fprintf(&b, " %q", e.Endpoint)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "zmqkit: "))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Is lets errors.Is match a syscall.Errno such as syscall.EHOSTUNREACH
// against libzmq's errno, which arrives as a zmq4.Errno.
func (e *OpError) Is(target error) bool { return isErrno(e.Err, target) }

// EndpointError reports a bind or connect that libzmq refused, for example
//
//	zmqkit: bind "tcp://127.0.0.1:5555": address already in use
//
// Err keeps the libzmq errno: errors.Is(err, syscall.EADDRINUSE) holds.
type EndpointError struct {
	Op       string // "bind" or "connect"
	Endpoint string
	Err      error
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("zmqkit: %s %q: %v", e.Op, e.Endpoint, e.Err)
}

// Unwrap returns the cause.
func (e *EndpointError) Unwrap() error { return e.Err }

// Is lets errors.Is match a syscall.Errno such as syscall.EADDRINUSE:
// libzmq's errno arrives as a zmq4.Errno, which is a different type.
func (e *EndpointError) Is(target error) bool { return isErrno(e.Err, target) }

func isErrno(err, target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && err != nil && zmq.AsErrno(err) == zmq.Errno(errno)
}

// endpointError turns zsock's bind or connect error into an *EndpointError.
func endpointError(err error) error {
	var ee *endpoint.Error
	if errors.As(err, &ee) {
		return &EndpointError{Op: ee.Op, Endpoint: ee.Endpoint, Err: ee.Err}
	}
	return err
}

// MalformedError describes a received message that cannot be decoded: a
// frame that is not "<msgid> <msgtype> <body>" as the Python module reads
// it, or a message of several frames where one was expected. It matches
// ErrMalformed.
type MalformedError struct {
	// Reason says what is wrong, e.g. `bad msgid "10a0"`.
	Reason string
	// Frame is the start of the offending frame, at most
	// MalformedExcerptLen bytes, so a huge frame never floods a log.
	Frame []byte
	// Len is the length of the whole frame.
	Len int
	// Err is the underlying cause, if any (a JSON or decoding error).
	Err error
}

// MalformedExcerptLen bounds MalformedError.Frame.
const MalformedExcerptLen = 64

func (e *MalformedError) Error() string {
	more := ""
	if e.Len > len(e.Frame) {
		more = fmt.Sprintf("... (%d bytes)", e.Len)
	}
	return fmt.Sprintf("zmqkit: malformed frame: %s: %q%s", e.Reason, e.Frame, more)
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the underlying cause.
func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(frame []byte, err error, format string, args ...any) *MalformedError {
	n := min(len(frame), MalformedExcerptLen)
	return &MalformedError{
		Reason: fmt.Sprintf(format, args...),
		Frame:  append([]byte(nil), frame[:n]...),
		Len:    len(frame),
		Err:    err,
	}
}

// HandlerError reports a handler that returned an error or panicked. It
// reaches the error callback; Panic is set when the handler panicked.
type HandlerError struct {
	Err   error // the handler's error, or one describing the panic
	Panic any   // the recovered value, nil unless the handler panicked
	Stack []byte
}

func (e *HandlerError) Error() string {
	if e.Panic != nil {
		return fmt.Sprintf("zmqkit: handler panicked: %v", e.Panic)
	}
	return "zmqkit: handler failed: " + strings.TrimPrefix(e.Err.Error(), "zmqkit: ")
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// invalidArg returns an error wrapping ErrInvalidArgument.
func invalidArg(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// invalidHeader returns the error for a message whose msgid or type
// cannot go on the wire: it wraps ErrInvalidMessage and, as the caller's
// bad argument, matches ErrInvalidArgument too.
func invalidHeader(format string, args ...any) error {
	return headerError{invalidMessage(format, args...)}
}

type headerError struct{ error }

func (e headerError) Unwrap() error        { return e.error }
func (e headerError) Is(target error) bool { return target == ErrInvalidArgument }

// invalidMessage returns an error wrapping ErrInvalidMessage.
func invalidMessage(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
}

// RemoteError is the error RRClient.Request and PairClient.Request return
// for an error reply: the server's handler failed or panicked (or the
// server could not read the request). Message is the server's text, as
// sent after ErrorReplyPrefix.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("zmqkit: remote handler failed: %s", e.Message)
}
