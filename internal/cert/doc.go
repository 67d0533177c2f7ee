// Package cert makes CURVE key pairs and reads and writes them as
// certificate files that pyzmq (zmq.auth) and CZMQ (zcert) read and write
// too. It is the key-and-file layer of zmqkit's CURVE security; the root
// package wraps it.
//
// # Keys
//
// A CURVE key is 32 bytes, handled as its Z85 text (ZeroMQ RFC 32): 40
// characters of the alphabet
//
//	0-9 a-z A-Z . - : + = ^ ! / * ? & < > ( ) [ ] { } @ % $ #
//
// in groups of five that each encode a big-endian 32-bit number.
// CheckPublicKey and CheckSecretKey accept exactly such keys, except the
// null key (all zero bytes), which CZMQ writes when libzmq has no CURVE
// support. NewKeyPair and FromSecret use libzmq (zmq_curve_keypair,
// zmq_curve_public) and fail with ErrNoCurve if it was built without CURVE.
// No error of this package quotes a secret key, or any character of it.
//
// # Certificate files
//
// A key pair is stored as two files, as pyzmq's create_certificates and
// CZMQ's zcert_save write them: <name>.key holds the public key and may be
// shared; <name>.key_secret holds both keys and must stay private. Both are
// ZPL (ZeroMQ RFC 4) text:
//
//	#   ****  Generated on 2026-12-01 16:12:00 by zmqkit  ****
//	#   ZeroMQ CURVE **Secret** Certificate
//	#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
//
//	metadata
//	    name = "alice"
//	curve
//	    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//	    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
//
// The public certificate has the same layout with pyzmq's public banner and
// no secret-key. ZPL is one property per line, "name" or "name = value",
// with '#' comments; a child is indented 4 spaces more than its parent.
// The two top-level sections that matter are metadata, whose children are
// free "name = value" pairs about the key's owner, and curve, whose
// children public-key and secret-key hold the keys. zmqkit writes the
// banner and layout pyzmq writes, with 4-space indentation, every value in
// double quotes (single quotes for a value holding a double one), and the
// metadata in both files, as CZMQ does (pyzmq puts it in the secret one
// only).
//
// # Reading
//
// Parse accepts what pyzmq and CZMQ write and ZPL as people write it:
// blank lines, comments (whole-line, or after a name or value), any
// consistent indentation of spaces or tabs, values in double, single or no
// quotes, CRLF or CR line ends, no final line end, a byte order mark.
// pyzmq's loader is laxer: it takes any line starting with "public-key" or
// "secret-key", wherever it is. Parse takes the keys only from the curve
// section and refuses a key, or a name starting like one, anywhere else,
// and refuses two of either key, so that neither pyzmq nor CZMQ can take
// another valid key from a file it accepts. (pyzmq does not strip a comment
// after a key: `public-key = "…"  # note` gives it a broken key, which
// libzmq then refuses.) An unquoted value ends at a '#' that starts it
// or follows white space (a ZPL comment); any other '#' is part of the
// value, as '#' is a Z85 digit (one that never starts a key). A secret certificate's secret key must belong to
// its public key.
//
// Problems are reported as *Error values that name the file and the line,
// for example
//
//	zmqkit: /etc/app/server.key_secret:9: secret-key is 39 characters, want 40
//
// and wrap a sentinel (ErrMalformed, ErrInvalidKey, ErrInsecureFile,
// ErrNoCertificates, ErrNoCurve) for errors.Is.
//
// # Files and permissions
//
// Save writes <name>.key with mode 0644 and <name>.key_secret with mode
// 0600, each through a temporary file that is synced and renamed, and
// replaces an existing pair. Load and LoadKeyPair refuse a certificate that
// holds a secret key and that group or others may access (mode & 0o077),
// as ssh does for private keys, following symbolic links to the file they
// check. Files over MaxFileSize are refused. LoadPublicKeys reads the *.key
// certificates of a directory, as pyzmq's load_certificates does, and
// fails if any of them is bad or if there is none.
package cert
