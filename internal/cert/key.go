package cert

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pebbe/zmq4"
)

// KeyLen is the length of a Z85-encoded CURVE key: 40 characters for 32
// bytes.
const KeyLen = 40

// z85Alphabet is the digit set of ZeroMQ's Z85 encoding (RFC 32/Z85), in
// value order.
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// z85Value maps a byte to its digit value plus one; 0 marks a byte outside
// the alphabet.
var z85Value = func() (t [256]byte) {
	for i := 0; i < len(z85Alphabet); i++ {
		t[z85Alphabet[i]] = byte(i + 1)
	}
	return t
}()

// KeyPair is a CURVE key pair, both keys Z85-encoded (KeyLen characters).
type KeyPair struct {
	Public string
	Secret string
}

// NewKeyPair makes a key pair with libzmq's zmq_curve_keypair. It returns
// ErrNoCurve if libzmq has no CURVE support.
func NewKeyPair() (KeyPair, error) {
	if !zmq4.HasCurve() {
		return KeyPair{}, ErrNoCurve
	}
	pub, sec, err := zmq4.NewCurveKeypair()
	if err != nil {
		return KeyPair{}, fmt.Errorf("zmqkit: zmq_curve_keypair: %w", err)
	}
	k := KeyPair{Public: pub, Secret: sec}
	if err := k.Check(); err != nil {
		return KeyPair{}, err
	}
	return k, nil
}

// FromSecret returns the key pair of a Z85 secret key, deriving the public
// key with libzmq's zmq_curve_public. It returns an error wrapping
// ErrInvalidKey if secret is not a valid key, and ErrNoCurve if libzmq has
// no CURVE support.
func FromSecret(secret string) (KeyPair, error) {
	if err := CheckSecretKey(secret); err != nil {
		return KeyPair{}, err
	}
	pub, err := derivePublic(secret)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Public: pub, Secret: secret}, nil
}

// Check reports whether k holds two valid keys that belong together: an
// error wrapping ErrInvalidKey says which is wrong (never quoting the
// secret key). It needs CURVE support in libzmq (ErrNoCurve otherwise).
func (k KeyPair) Check() error {
	if err := CheckPublicKey(k.Public); err != nil {
		return err
	}
	if err := CheckSecretKey(k.Secret); err != nil {
		return err
	}
	pub, err := derivePublic(k.Secret)
	if err != nil {
		return err
	}
	if pub != k.Public {
		return &Error{Msg: "the secret key does not belong to the public key", Err: ErrInvalidKey}
	}
	return nil
}

// derivePublic returns the public key of a valid secret key.
func derivePublic(secret string) (string, error) {
	if !zmq4.HasCurve() {
		return "", ErrNoCurve
	}
	pub, err := zmq4.AuthCurvePublic(secret)
	if err != nil {
		// The error is libzmq's errno; it carries no key material.
		return "", fmt.Errorf("zmqkit: zmq_curve_public: %w", err)
	}
	return pub, nil
}

// CheckPublicKey returns nil if key is a usable Z85 CURVE public key: 40
// characters of the Z85 alphabet that decode to 32 bytes, not all zero.
// Otherwise it returns an *Error wrapping ErrInvalidKey that says what is
// wrong (which character at which position).
func CheckPublicKey(key string) error {
	if p := keyProblem(key, false); p != "" {
		return &Error{Msg: "public key " + p, Err: ErrInvalidKey}
	}
	return nil
}

// CheckSecretKey is CheckPublicKey for a secret key. Its errors give
// positions but never the key's characters.
func CheckSecretKey(key string) error {
	if p := keyProblem(key, true); p != "" {
		return &Error{Msg: "secret key " + p, Err: ErrInvalidKey}
	}
	return nil
}

// keyProblem says what is wrong with a Z85 key, as a phrase that follows
// the key's name ("is 39 characters, want 40"), or returns "" if nothing
// is. For a secret key the phrase never quotes any of its characters.
func keyProblem(key string, secret bool) string {
	if p := encodingProblem(key, secret); p != "" {
		return p
	}
	if b, _ := decode(key); b == [32]byte{} {
		return "is a null key (all 32 bytes zero, as CZMQ writes without CURVE support)"
	}
	return ""
}

// encodingProblem is keyProblem without the null-key rule.
func encodingProblem(key string, secret bool) string {
	if key == "" {
		return "is empty"
	}
	if strings.TrimSpace(key) != key {
		return "has white space around it"
	}
	if n := utf8.RuneCountInString(key); n != KeyLen || len(key) != KeyLen {
		if n == 1 {
			return fmt.Sprintf("is 1 character, want %d", KeyLen)
		}
		return fmt.Sprintf("is %d characters, want %d", n, KeyLen)
	}
	for i := 0; i < len(key); i++ { // 40 bytes and 40 runes: all ASCII
		if z85Value[key[i]] == 0 {
			if secret {
				return fmt.Sprintf("has a character at position %d that is not in the Z85 alphabet", i+1)
			}
			return fmt.Sprintf("has %q at position %d, which is not in the Z85 alphabet", key[i], i+1)
		}
	}
	if _, group := decode(key); group >= 0 {
		return fmt.Sprintf("does not decode: characters %d-%d encode a number above 2^32-1", 5*group+1, 5*group+5)
	}
	return ""
}

// decode decodes 40 characters of the Z85 alphabet. It returns the index
// of the first 5-character group whose value overflows 32 bits, or -1.
func decode(key string) (b [32]byte, badGroup int) {
	for g := 0; g < 8; g++ {
		var v uint64
		for _, c := range []byte(key[5*g : 5*g+5]) {
			v = v*85 + uint64(z85Value[c]-1)
		}
		if v > 0xFFFFFFFF {
			return [32]byte{}, g
		}
		b[4*g], b[4*g+1], b[4*g+2], b[4*g+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	return b, -1
}

// DecodeKey returns the 32 bytes a Z85 key encodes. Its errors (wrapping
// ErrInvalidKey) never quote the key, so it is safe for secret keys. Unlike
// CheckPublicKey it accepts the null key.
func DecodeKey(key string) ([32]byte, error) {
	if p := encodingProblem(key, true); p != "" {
		return [32]byte{}, &Error{Msg: "key " + p, Err: ErrInvalidKey}
	}
	b, _ := decode(key)
	return b, nil
}

// EncodeKey returns the Z85 text (KeyLen characters) of a 32-byte key, as
// libzmq's zmq_z85_encode does. A ZAP request carries the client's CURVE
// key in binary; EncodeKey gives the form certificates use.
func EncodeKey(b [32]byte) string {
	var out [KeyLen]byte
	for g := 0; g < 8; g++ {
		v := uint32(b[4*g])<<24 | uint32(b[4*g+1])<<16 | uint32(b[4*g+2])<<8 | uint32(b[4*g+3])
		for i := 4; i >= 0; i-- {
			out[5*g+i] = z85Alphabet[v%85]
			v /= 85
		}
	}
	return string(out[:])
}
