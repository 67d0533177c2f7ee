package zmqkit

import (
	"errors"
	"fmt"

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

	// ErrInvalidOption is wrapped by every error for a bad option value; the
	// message names the option.
	ErrInvalidOption = errors.New("zmqkit: invalid option")

	// ErrInvalidEndpoint is wrapped by errors for malformed or unsupported
	// endpoints. Failures to bind or connect are *EndpointError instead.
	ErrInvalidEndpoint = endpoint.ErrInvalid

	// ErrMalformed is matched by every *MalformedError.
	ErrMalformed = errors.New("zmqkit: malformed frame")

	// ErrUnknownEncoding is returned for a character encoding name that is
	// not a WHATWG encoding label.
	ErrUnknownEncoding = errors.New("zmqkit: unknown character encoding")

	// ErrUnknownType is returned when a message type has no codec.
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
	// in Stats.ProtocolErrors) when libzmq dropped a connection for a
	// protocol error: a message larger than WithMaxMessageSize, or a peer
	// that does not speak ZMTP. libzmq does not reconnect such a
	// connection by itself; zmqkit connects again.
	ErrConnectionDropped = errors.New("zmqkit: connection dropped for a protocol error")
)

// EndpointError reports a bind or connect that libzmq refused, for example
//
//	zmqkit: bind "tcp://127.0.0.1:5555": address already in use
//
// Err keeps the libzmq errno: errors.Is(err, syscall.EADDRINUSE) holds.
type EndpointError = endpoint.Error

// MalformedError describes a frame that is not a valid
// "<msgid> <msgtype> <body>" frame. It matches ErrMalformed.
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
	n := len(frame)
	if n > MalformedExcerptLen {
		n = MalformedExcerptLen
	}
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
	return "zmqkit: handler failed: " + e.Err.Error()
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }
