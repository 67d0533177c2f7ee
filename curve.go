package zmqkit

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/zmqkit/zmqkit/internal/cert"
)

// Key and certificate errors, matched with errors.Is.
var (
	// ErrInvalidKey is wrapped by errors for a CURVE key that is not 40
	// characters of Z85, or a key pair whose keys do not belong together.
	// No error ever quotes a secret key.
	ErrInvalidKey = cert.ErrInvalidKey
	// ErrBadCertificate is wrapped by errors for a certificate file that
	// cannot be read as one; the error names the file and the line.
	ErrBadCertificate = cert.ErrMalformed
	// ErrInsecureKeyFile is returned for a secret key file that group or
	// others may read: chmod 600 it, as ssh wants of a private key.
	ErrInsecureKeyFile = cert.ErrInsecureFile
	// ErrNoCertificates is returned by LoadPublicKeys for a directory that
	// holds no certificate: an empty allow-list would refuse everyone.
	ErrNoCertificates = cert.ErrNoCertificates
	// ErrNoCurve is returned when libzmq was built without CURVE.
	ErrNoCurve = cert.ErrNoCurve
)

// KeyPair is a CURVE key pair, each key as 40 characters of Z85 text.
// Give the public key to peers; keep the secret key secret.
type KeyPair struct{ Public, Secret string }

// NewKeyPair makes a new key pair with libzmq's random source.
func NewKeyPair() (KeyPair, error) {
	k, err := cert.NewKeyPair()
	return KeyPair(k), err
}

// KeyPairFromSecret returns the key pair whose secret key is secret.
func KeyPairFromSecret(secret string) (KeyPair, error) {
	k, err := cert.FromSecret(secret)
	return KeyPair(k), err
}

// String names the key pair by its public key: a secret key never reaches
// a log by way of fmt.
func (k KeyPair) String() string { return "KeyPair{Public: " + k.Public + "}" }

// Save writes the key pair as certificate files that pyzmq's zmq.auth and
// CZMQ's zcert read: <name>.key (the public key, mode 0644) and
// <name>.key_secret (both keys, mode 0600), in dir, replacing existing
// ones.
func (k KeyPair) Save(dir, name string) error { return cert.KeyPair(k).Save(dir, name) }

// LoadKeyPair reads a <name>.key_secret certificate, as Save, pyzmq's
// create_certificates or CZMQ's zcert_save write it. A file that group or
// others may read is refused (ErrInsecureKeyFile).
func LoadKeyPair(secretFile string) (KeyPair, error) {
	k, err := cert.LoadKeyPair(secretFile)
	return KeyPair(k), err
}

// LoadPublicKey reads the public key of a <name>.key (or .key_secret)
// certificate.
func LoadPublicKey(file string) (string, error) { return cert.LoadPublicKey(file) }

// LoadPublicKeys reads the public key of every <name>.key certificate in
// dir, as pyzmq's load_certificates does: an allow-list for AllowKeys. One
// bad file fails the whole call, and so does a directory with none.
func LoadPublicKeys(dir string) ([]string, error) { return cert.LoadPublicKeys(dir) }

// ClientPolicy says which clients a CURVE server admits: those whose
// public key is listed (AllowKeys), or any client with a valid key pair
// (AllowAnyClient), and, on top of either, from which IP addresses. It is
// safe for concurrent use, and may be changed while servers use it: a
// change applies to connections made after it.
type ClientPolicy struct {
	mu       sync.RWMutex
	any      bool
	keys     map[[32]byte]bool
	allowIPs []netip.Prefix
	denyIPs  []netip.Prefix
	badKey   error // the first invalid key of the last SetKeys
	badIP    error // the first invalid address given
}

// AllowKeys returns a policy that admits only clients whose public key is
// one of publicKeys (Z85, as LoadPublicKeys returns them). An invalid key
// makes WithCurveServer fail; see ClientPolicy.Check.
func AllowKeys(publicKeys ...string) *ClientPolicy {
	p := &ClientPolicy{}
	p.SetKeys(publicKeys...)
	return p
}

// AllowAnyClient returns a policy that admits any client with a valid key
// pair: the connection is encrypted and the server authenticated to the
// client, but clients are not (the Stonehouse pattern). IP lists still
// apply.
func AllowAnyClient() *ClientPolicy { return &ClientPolicy{any: true} }

// SetKeys replaces the allowed public keys; connections made after it are
// checked against the new list, those already made stay. An invalid key
// admits nobody (the policy fails closed) and is reported by Check.
func (p *ClientPolicy) SetKeys(publicKeys ...string) {
	keys := make(map[[32]byte]bool, len(publicKeys))
	var bad error
	for i, k := range publicKeys {
		b, err := cert.DecodeKey(k)
		if err == nil {
			err = cert.CheckPublicKey(k)
		}
		if err != nil {
			if bad == nil {
				bad = &wrapped{msg: fmt.Sprintf("zmqkit: allowed key %d: %s", i+1, strings.TrimPrefix(err.Error(), "zmqkit: ")), errs: []error{err}}
			}
			continue
		}
		keys[b] = true
	}
	p.mu.Lock()
	p.keys, p.any, p.badKey = keys, false, bad
	p.mu.Unlock()
}

// AllowIPs admits only clients connecting from one of addrs: IP addresses
// ("127.0.0.1", "::1") or prefixes ("10.0.0.0/8"). It returns p.
func (p *ClientPolicy) AllowIPs(addrs ...string) *ClientPolicy {
	p.setIPs(&p.allowIPs, "allowed", addrs)
	return p
}

// DenyIPs refuses clients connecting from one of addrs (as AllowIPs takes
// them), whatever their key. It returns p.
func (p *ClientPolicy) DenyIPs(addrs ...string) *ClientPolicy {
	p.setIPs(&p.denyIPs, "denied", addrs)
	return p
}

func (p *ClientPolicy) setIPs(list *[]netip.Prefix, what string, addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		pfx, err := parsePrefix(a)
		if err != nil {
			if p.badIP == nil {
				p.badIP = fmt.Errorf("zmqkit: %s address %q: %w", what, a, err)
			}
			// An address that does not parse must still fail closed: an
			// allow-list admits nobody through it; a deny-list denies all.
			pfx = netip.Prefix{}
		}
		*list = append(*list, pfx)
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Check reports the first invalid key or address the policy was given,
// which admit nobody. WithCurveServer calls it.
func (p *ClientPolicy) Check() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.badKey != nil {
		return p.badKey
	}
	return p.badIP
}

// admit decides one ZAP request: the client's address as libzmq gives it
// and its 32-byte public key. It returns why not, or "".
func (p *ClientPolicy) admit(address string, key []byte) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.allowIPs) > 0 || len(p.denyIPs) > 0 {
		a, err := netip.ParseAddr(address)
		if err != nil {
			return fmt.Sprintf("peer address %q is not an IP address", address)
		}
		a = a.Unmap()
		for _, pfx := range p.denyIPs {
			if !pfx.IsValid() || pfx.Contains(a) {
				return "address denied"
			}
		}
		if len(p.allowIPs) > 0 && !containsAddr(p.allowIPs, a) {
			return "address not allowed"
		}
	}
	if p.any {
		return ""
	}
	var k [32]byte
	if len(key) != len(k) {
		return "no CURVE key"
	}
	copy(k[:], key)
	if !p.keys[k] {
		return "key not allowed"
	}
	return ""
}

func containsAddr(l []netip.Prefix, a netip.Addr) bool {
	for _, pfx := range l {
		if pfx.IsValid() && pfx.Contains(a) {
			return true
		}
	}
	return false
}

// curveConfig is what WithCurveServer or WithCurveClient set.
type curveConfig struct {
	server    bool
	keys      KeyPair
	policy    *ClientPolicy // server
	serverKey string        // client
}

// WithCurveServer makes the object a CURVE server: connections to and from
// it are encrypted with keys (its key pair), and a client is admitted only
// if policy says so, which zmqkit's ZAP handler checks for every new
// connection. A nil policy is an error: there is no way to make a CURVE
// server that checks nothing by forgetting an option; AllowAnyClient says
// so explicitly. A denied client is counted in Stats.AuthFailures and
// reported to the error callback as an *AuthError.
//
// On a Proxy both sides are the CURVE server, with the same keys and
// policy: the peers on either side are its clients.
//
// Applies to every type and Proxy.
func WithCurveServer(keys KeyPair, policy *ClientPolicy) Option {
	return option("WithCurveServer", func(o *options) error {
		if o.curve != nil {
			return invalid("WithCurveServer", "the object is already a CURVE %s", o.curve.side())
		}
		if policy == nil {
			return invalid("WithCurveServer", "nil *ClientPolicy (use AllowKeys, or AllowAnyClient to admit any client)")
		}
		if err := policy.Check(); err != nil {
			return invalidBy("WithCurveServer", err)
		}
		if err := cert.KeyPair(keys).Check(); err != nil {
			return invalidBy("WithCurveServer", err)
		}
		o.curve = &curveConfig{server: true, keys: keys, policy: policy}
		return nil
	})
}

// WithCurveClient makes the object a CURVE client of a server whose public
// key is serverPublicKey, with keys as its own key pair. A client the
// server refuses, or that has the wrong server key, gets no connection: its
// blocking calls end by their ctx, each failed handshake is counted in
// Stats.AuthFailures and reported to the error callback as an *AuthError,
// and zmqkit tries again, backing off up to 10 s (libzmq alone would not),
// so a client whose key is allowed later gets in.
//
// On a Proxy both sides are CURVE clients of that one server key: use it
// where the proxy connects (">") to the same secured server, or servers
// sharing its key, on either side.
//
// Applies to every type and Proxy.
func WithCurveClient(keys KeyPair, serverPublicKey string) Option {
	return option("WithCurveClient", func(o *options) error {
		if o.curve != nil {
			return invalid("WithCurveClient", "the object is already a CURVE %s", o.curve.side())
		}
		if err := cert.KeyPair(keys).Check(); err != nil {
			return invalidBy("WithCurveClient", err)
		}
		if err := cert.CheckPublicKey(serverPublicKey); err != nil {
			return invalidBy("WithCurveClient: server key", err)
		}
		o.curve = &curveConfig{keys: keys, serverKey: serverPublicKey}
		return nil
	})
}

func (c *curveConfig) side() string {
	if c.server {
		return "server"
	}
	return "client"
}

// AuthError reports a CURVE connection refused: on a server, a client its
// policy denied (PeerAddress and PublicKey say who) or whose handshake
// failed (a plain client, a wrong server key); on a client, a server that
// refused it or a handshake that failed.
type AuthError struct {
	Endpoint    string // the object's endpoint(s)
	PeerAddress string // the client's IP address, where known
	PublicKey   string // the client's public key (Z85), where known
	Reason      string
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("zmqkit: CURVE: ")
	b.WriteString(e.Reason)
	if e.Endpoint != "" {
		fmt.Fprintf(&b, " on %s", e.Endpoint)
	}
	if e.PeerAddress != "" {
		fmt.Fprintf(&b, " from %s", e.PeerAddress)
	}
	if e.PublicKey != "" {
		fmt.Fprintf(&b, " (key %s)", e.PublicKey)
	}
	return b.String()
}
