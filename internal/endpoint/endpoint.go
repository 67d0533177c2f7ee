// Package endpoint parses zmqkit's CZMQ-style endpoint lists.
package endpoint

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrInvalid is the sentinel every parse error wraps. The root package
// re-exports it as zmqkit.ErrInvalidEndpoint.
var ErrInvalid = errors.New("zmqkit: invalid endpoint")

// Endpoint is one parsed endpoint.
type Endpoint struct {
	Bind bool   // bind (@) rather than connect (>)
	Addr string // transport://address, without the prefix
}

// Error is a failure to bind or connect one endpoint, as zsock reports
// it; the root package turns it into its EndpointError.
type Error struct {
	Op       string // "bind" or "connect"
	Endpoint string
	Err      error // libzmq's errno
}

func (e *Error) Error() string { return e.Op + " " + e.Endpoint + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Parse splits a comma-separated list of endpoints, each optionally prefixed
// with @ (bind) or > (connect); an unprefixed one takes defaultBind.
func Parse(list string, defaultBind bool) ([]Endpoint, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("%w: empty endpoint list", ErrInvalid)
	}
	var out []Endpoint
	for _, raw := range strings.Split(list, ",") {
		ep, err := ParseOne(raw, defaultBind)
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, nil
}

// ParseOne parses a single endpoint.
func ParseOne(raw string, defaultBind bool) (Endpoint, error) {
	s := strings.TrimSpace(raw)
	ep := Endpoint{Bind: defaultBind}
	switch {
	case strings.HasPrefix(s, "@"):
		ep.Bind, s = true, s[1:]
	case strings.HasPrefix(s, ">"):
		ep.Bind, s = false, s[1:]
	}
	ep.Addr = s
	bad := func(why string) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("%w %q: %s", ErrInvalid, strings.TrimSpace(raw), why)
	}
	if s == "" {
		return bad("empty endpoint")
	}
	transport, addr, ok := strings.Cut(s, "://")
	if !ok {
		return bad("want transport://address (tcp://, ipc:// or inproc://)")
	}
	if addr == "" {
		return bad("missing address after " + transport + "://")
	}
	switch transport {
	case "tcp":
		return ep, checkTCP(addr, ep.Bind, bad)
	case "ipc", "inproc":
		if strings.ContainsAny(addr, " \t\r\n") {
			return bad("address contains white space")
		}
		if transport == "inproc" && addr == "*" && !ep.Bind {
			return bad("cannot connect to a wildcard")
		}
		return ep, nil
	default:
		return bad(fmt.Sprintf("unsupported transport %q (want tcp, ipc or inproc)", transport))
	}
}

func checkTCP(addr string, bind bool, bad func(string) (Endpoint, error)) error {
	if strings.ContainsAny(addr, " \t\r\n") {
		_, err := bad("address contains white space")
		return err
	}
	// A connect may name a source first: tcp://src;dst.
	if i := strings.LastIndexByte(addr, ';'); i >= 0 && !bind {
		if i == 0 {
			_, err := bad("empty source address before ';'")
			return err
		}
		addr = addr[i+1:]
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		_, err = bad("want host:port")
		return err
	}
	if host == "" {
		_, err = bad("missing host (use * to bind every interface)")
		return err
	}
	if port == "*" || port == "0" {
		if !bind {
			_, err = bad("cannot connect to an ephemeral port")
		}
		return err
	}
	n, perr := strconv.Atoi(port)
	if perr != nil || n < 1 || n > 65535 {
		_, err = bad(fmt.Sprintf("port %q is not a number from 1 to 65535 or *", port))
		return err
	}
	if host == "*" && !bind {
		_, err = bad("cannot connect to *")
		return err
	}
	return nil
}
