package endpoint

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Named returns the one of eps that libzmq names name in a socket
// monitor's event, and whether there is one.
//
// libzmq names a tcp connection by the endpoint it was given
// (tcp://db.example:5555) until the connection is made again, and from
// then on by the address its host resolved to (tcp://10.0.0.7:5555), for
// it resolves the host at every connect. So name stands for the endpoint
// it equals; else for the only tcp endpoint on its port; else, with
// several on that port, for the only one whose host is, or resolves to,
// name's address. Host names are looked up with a short time-out (250 ms)
// and the answers kept for a few seconds: Named may block for the
// time-out, and must not be called with locks held that others wait for.
func Named(name string, eps []string) (string, bool) {
	var port []string
	for _, ep := range eps {
		if ep == name {
			return ep, true
		}
		if SamePort(ep, name) {
			port = append(port, ep)
		}
	}
	switch len(port) {
	case 0:
		return "", false
	case 1:
		return port[0], true
	}
	addr, ok := tcpAddr(name)
	if !ok {
		return "", false
	}
	found := ""
	for _, ep := range port {
		if !hosts.resolvesTo(tcpHost(ep), addr.Addr()) {
			continue
		}
		if found != "" {
			return "", false // two names for one address
		}
		found = ep
	}
	return found, found != ""
}

// Of is the one of eps that libzmq names name in an event (see Named), or
// name itself when none is.
func Of(name string, eps []string) string {
	if ep, ok := Named(name, eps); ok {
		return ep
	}
	return name
}

// SamePort reports whether a and b are tcp endpoints on the same port, as
// libzmq may name one connection before and after resolving its host.
func SamePort(a, b string) bool {
	i, j := strings.LastIndexByte(a, ':'), strings.LastIndexByte(b, ':')
	return strings.HasPrefix(a, "tcp://") && strings.HasPrefix(b, "tcp://") && i > 5 && j > 5 && a[i:] == b[j:]
}

// tcpHost is the host an endpoint connects to: tcp://src;host:port gives
// host, brackets taken off an IPv6 address.
func tcpHost(ep string) string {
	addr := strings.TrimPrefix(ep, "tcp://")
	if i := strings.LastIndexByte(addr, ';'); i >= 0 {
		addr = addr[i+1:]
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

// tcpAddr parses the address libzmq names a resolved connection by.
func tcpAddr(name string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(name, "tcp://"))
	return ap, err == nil && strings.HasPrefix(name, "tcp://")
}

// Lookup resolves a host name as libzmq's getaddrinfo would; a variable for
// tests, which need host names that the system does not know.
var Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

const (
	// A lookup may take this long: it holds an event loop (a socket's
	// monitor, a pair link's tracker), which reads what queued meanwhile
	// before acting on a time-out, but holds up libzmq's events while it
	// waits.
	lookupTimeout = 250 * time.Millisecond
	lookupKeep    = 5 * time.Second // an answer (or failure) is kept this long
)

// hostCache keeps the answers of Lookup for a while: events come in bursts
// (a server restarting gives several), and a name that does not resolve
// should not cost a time-out each.
type hostCache struct {
	mu    sync.Mutex
	addrs map[string]cached
}

type cached struct {
	addrs []netip.Addr
	at    time.Time
}

var hosts = &hostCache{addrs: map[string]cached{}}

// resolvesTo reports whether host is addr, or resolves to it.
func (c *hostCache) resolvesTo(host string, addr netip.Addr) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap() == addr.Unmap()
	}
	for _, a := range c.lookup(host) {
		if a.Unmap() == addr.Unmap() {
			return true
		}
	}
	return false
}

func (c *hostCache) lookup(host string) []netip.Addr {
	if host == "" {
		return nil
	}
	c.mu.Lock()
	e, ok := c.addrs[host]
	c.mu.Unlock()
	if ok && time.Since(e.at) < lookupKeep {
		return e.addrs
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, _ := Lookup(ctx, host) // a failure resolves to nothing
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.addrs { // keep the cache small
		if time.Since(e.at) >= lookupKeep {
			delete(c.addrs, h)
		}
	}
	c.addrs[host] = cached{addrs: addrs, at: time.Now()}
	return addrs
}
