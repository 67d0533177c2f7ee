package endpoint_test

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

// fakeLookup makes endpoint.Lookup answer from hosts (a host not in it does
// not resolve) for the test, and counts the lookups.
func fakeLookup(t *testing.T, hosts map[string][]string) *atomic.Int32 {
	var n atomic.Int32
	old := endpoint.Lookup
	endpoint.ResetHostCache() // answers a run before this one kept
	t.Cleanup(func() { endpoint.Lookup = old; endpoint.ResetHostCache() })
	endpoint.Lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		n.Add(1)
		addrs, ok := hosts[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
	return &n
}

func TestNamed(t *testing.T) {
	lookups := fakeLookup(t, map[string][]string{
		"alpha.named.test": {"10.0.0.1", "fd00::1"},
		"beta.named.test":  {"10.0.0.2"},
		"twin.named.test":  {"10.0.0.2"},
	})
	eps := []string{
		"tcp://alpha.named.test:5555",
		"tcp://beta.named.test:5555",
		"tcp://10.0.0.3:5555",
		"tcp://solo.named.test:6666",
		"ipc:///tmp/x",
	}
	for _, tc := range []struct {
		name, want string
	}{
		{"tcp://alpha.named.test:5555", "tcp://alpha.named.test:5555"}, // as given
		{"ipc:///tmp/x", "ipc:///tmp/x"},
		{"tcp://10.0.0.9:6666", "tcp://solo.named.test:6666"}, // the only one on its port: no lookup
		{"tcp://10.0.0.1:5555", "tcp://alpha.named.test:5555"},
		{"tcp://[fd00::1]:5555", "tcp://alpha.named.test:5555"},
		{"tcp://10.0.0.2:5555", "tcp://beta.named.test:5555"},
		{"tcp://10.0.0.3:5555", "tcp://10.0.0.3:5555"},
		{"tcp://10.0.0.4:5555", ""}, // nobody's address
		{"tcp://10.0.0.1:7777", ""}, // nobody's port
		{"ipc:///tmp/y", ""},
	} {
		got, ok := endpoint.Named(tc.name, eps)
		assert.Equal(t, tc.want, got, tc.name)
		assert.Equal(t, tc.want != "", ok, tc.name)
	}
	assert.Equal(t, int32(2), lookups.Load(), "each name looked up once, then kept")
	assert.Equal(t, "tcp://alpha.named.test:5555", endpoint.Of("tcp://10.0.0.1:5555", eps))
	assert.Equal(t, "tcp://10.0.0.4:5555", endpoint.Of("tcp://10.0.0.4:5555", eps), "nobody's: itself")

	// Two names for one address cannot be told apart; a name that does
	// not resolve stands for nothing.
	got, ok := endpoint.Named("tcp://10.0.0.2:5555", []string{"tcp://beta.named.test:5555", "tcp://twin.named.test:5555"})
	assert.False(t, ok, got)
	got, ok = endpoint.Named("tcp://10.0.0.2:5555", []string{"tcp://nowhere.named.test:5555", "tcp://10.0.0.1:5555"})
	assert.False(t, ok, got)
	// A source address names nothing: the host connected to does.
	got, ok = endpoint.Named("tcp://10.0.0.2:5555", []string{"tcp://10.0.0.1:0;beta.named.test:5555", "tcp://10.0.0.1:5555"})
	assert.True(t, ok)
	assert.Equal(t, "tcp://10.0.0.1:0;beta.named.test:5555", got)
}

func TestSamePort(t *testing.T) {
	assert.True(t, endpoint.SamePort("tcp://a:1", "tcp://1.2.3.4:1"))
	assert.True(t, endpoint.SamePort("tcp://[::1]:1", "tcp://a:1"))
	assert.False(t, endpoint.SamePort("tcp://a:1", "tcp://a:12"))
	assert.False(t, endpoint.SamePort("ipc://a:1", "tcp://a:1"))
	assert.False(t, endpoint.SamePort("tcp://a", "tcp://b"))
}
