package zmqkit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqkit/zmqkit/internal/cert"
	"github.com/zmqkit/zmqkit/internal/endpoint"
	"github.com/zmqkit/zmqkit/internal/zsock"
)

// zapEndpoint is where libzmq looks for a ZAP handler (RFC 27), in the
// socket's own libzmq context.
const zapEndpoint = "inproc://zeromq.zap.01"

// zapHandler is a Context's ZAP handler: it answers libzmq's requests to
// authenticate each new connection to a CURVE server of the Context, by
// the ClientPolicy of the server's ZAP domain (one per secured object).
// It fails closed: an unknown domain, a mechanism other than CURVE, a
// malformed request, a request while it stops, all are denied.
//
// libzmq admits any client when no handler is bound in the context, so the
// handler is started before the Context's first secured socket is made and
// stopped only after its last is closed (Context.Close).
type zapHandler struct {
	sock     *zsock.Socket
	done     chan struct{}
	stopping atomic.Bool

	mu      sync.RWMutex
	domains map[string]*zapDomain
	seq     uint64
}

// plainDomain is the ZAP domain of every object without CURVE. A socket
// with a ZAP domain refuses the peers that speak ZMTP/1.0 or 2.0 (libzmq 2
// and 3), which it would otherwise take for any client whose first byte is
// not 0xff (an HTTP request, a TLS hello, random bytes): it would decode
// their bytes as messages and deliver them. With no handler in the Context,
// libzmq admits the plain clients by itself; with one, it asks it, and the
// handler admits them.
const plainDomain = "zmqkit-plain"

// zapDomain is one secured object's policy, and how it reports denials.
type zapDomain struct {
	policy *ClientPolicy
	deny   func(address, publicKey, reason string)
}

func startZAP(zc *zsock.Context) (*zapHandler, error) {
	linger0 := zsock.Option{Name: "ZMQ_LINGER", Set: func(z *zmq.Socket) error { return z.SetLinger(0) }}
	sock, err := zsock.New(zc, zsock.Config{Type: zmq.ROUTER, Options: []zsock.Option{linger0},
		Endpoints: []endpoint.Endpoint{{Bind: true, Addr: zapEndpoint}}})
	if err != nil {
		return nil, fmt.Errorf("zmqkit: start the ZAP handler: %w", err)
	}
	h := &zapHandler{sock: sock, done: make(chan struct{}), domains: map[string]*zapDomain{}}
	go h.serve()
	return h, nil
}

// register adds a domain for a secured object and returns its name.
func (h *zapHandler) register(d *zapDomain) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	name := fmt.Sprintf("zmqkit-%d", h.seq)
	h.domains[name] = d
	return name
}

// unregister removes a domain: later requests for it are denied.
func (h *zapHandler) unregister(name string) {
	h.mu.Lock()
	delete(h.domains, name)
	h.mu.Unlock()
}

func (h *zapHandler) serve() {
	defer close(h.done)
	ctx := context.Background()
	for {
		msg, err := h.sock.RecvMessage(ctx)
		if err != nil {
			return // closed
		}
		if reply := h.answer(msg); reply != nil {
			// A ROUTER send never waits; it fails only once closed.
			if err := h.sock.SendMessage(ctx, reply...); err != nil {
				return
			}
		}
	}
}

// answer decides one request, [routing id, "", "1.0", request id, domain,
// address, identity, mechanism, credentials...], and returns the reply
// with its envelope, or nil when there is no envelope to reply by.
func (h *zapHandler) answer(msg [][]byte) [][]byte {
	if len(msg) < 2 || len(msg[1]) != 0 {
		return nil // no envelope: nobody to answer
	}
	env, req := msg[:2], msg[2:]
	reply := func(status, text, userID string) [][]byte {
		id := []byte(nil)
		if len(req) > 1 {
			id = req[1]
		}
		return append(env, []byte("1.0"), id, []byte(status), []byte(text), []byte(userID), nil)
	}
	if len(req) < 6 || string(req[0]) != "1.0" {
		return reply("400", "malformed ZAP request", "")
	}
	address, mechanism, creds := string(req[3]), string(req[5]), req[6:]
	if string(req[2]) == plainDomain {
		if mechanism != "NULL" {
			return reply("400", "plain domain: NULL required", "")
		}
		return reply("200", "OK", "")
	}
	h.mu.RLock()
	d := h.domains[string(req[2])]
	h.mu.RUnlock()
	switch {
	case h.stopping.Load():
		return reply("400", "ZAP handler stopping", "")
	case d == nil:
		return reply("400", "unknown ZAP domain", "")
	case mechanism != "CURVE" || len(creds) != 1 || len(creds[0]) != 32:
		d.deny(address, "", "not a CURVE client ("+mechanism+")")
		return reply("400", "CURVE required", "")
	}
	var key [32]byte
	copy(key[:], creds[0])
	z85 := cert.EncodeKey(key)
	if why := d.policy.admit(address, creds[0]); why != "" {
		d.deny(address, z85, why)
		return reply("400", why, "")
	}
	return reply("200", "OK", z85)
}

// stop denies whatever request is still read, then closes the handler's
// socket and joins its goroutine.
func (h *zapHandler) stop() {
	h.stopping.Store(true)
	_ = h.sock.Close()
	<-h.done
}
