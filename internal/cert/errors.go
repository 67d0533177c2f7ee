package cert

import (
	"errors"
	"fmt"
)

// Sentinel errors. Compare with errors.Is; the errors this package returns
// wrap them, most of them inside an *Error that names the file and line.
var (
	// ErrInvalidKey reports a key that is not 40 characters of valid Z85
	// (or is a null key, or does not match its pair).
	ErrInvalidKey = errors.New("zmqkit: invalid CURVE key")
	// ErrMalformed reports a certificate that cannot be parsed or whose
	// content is wrong: bad syntax, a missing, duplicated or invalid key, a
	// secret key that does not belong to the public key, an oversized file,
	// a path that is not a regular file.
	ErrMalformed = errors.New("zmqkit: malformed certificate")
	// ErrInsecureFile reports a secret certificate that group or others
	// may access.
	ErrInsecureFile = errors.New("zmqkit: insecure certificate file")
	// ErrNoCertificates reports a directory without any *.key certificate.
	ErrNoCertificates = errors.New("zmqkit: no certificates")
	// ErrNoCurve reports a libzmq built without CURVE support (zmq_has
	// ("curve") is false; libzmq needs libsodium or tweetnacl for it).
	ErrNoCurve = errors.New("zmqkit: libzmq was built without CURVE support")
)

// Error describes what is wrong with one certificate file or key. Its
// message has the form "zmqkit: FILE:LINE: MSG", "zmqkit: FILE: MSG" or
// "zmqkit: MSG". It never contains secret key material.
type Error struct {
	// File is the path given to a Load function, the name given to Parse,
	// or empty for a bare key.
	File string
	// Line is the 1-based line the problem is on, or 0 when it is not on
	// one line (a missing key, a file that is too large or too open).
	Line int
	// Msg says what is wrong.
	Msg string
	// Err is the kind of problem: ErrMalformed, ErrInvalidKey,
	// ErrInsecureFile, ErrNoCurve or ErrNoCertificates; fs.ErrInvalid for
	// a bad name given to Save; or the error of a failed file system call
	// (an *fs.PathError or *os.LinkError) or libzmq call.
	Err error

	// invalidKey makes a malformed file whose problem is a key match
	// ErrInvalidKey as well.
	invalidKey bool
}

// Error returns the message.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("zmqkit: %s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("zmqkit: %s: %s", e.File, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("zmqkit: line %d: %s", e.Line, e.Msg)
	}
	return "zmqkit: " + e.Msg
}

// Unwrap returns Err, and ErrInvalidKey too when the problem is a key in a
// malformed file.
func (e *Error) Unwrap() []error {
	if e.invalidKey && e.Err != ErrInvalidKey {
		return []error{e.Err, ErrInvalidKey}
	}
	return []error{e.Err}
}
