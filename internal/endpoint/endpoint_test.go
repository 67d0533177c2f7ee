package endpoint_test

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/zmqkit/zmqkit/internal/endpoint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func bind(addr string) endpoint.Endpoint    { return endpoint.Endpoint{Bind: true, Addr: addr} }
func connect(addr string) endpoint.Endpoint { return endpoint.Endpoint{Addr: addr} }

func TestParse(t *testing.T) {
	tests := []struct {
		name        string
		list        string
		defaultBind bool
		want        []endpoint.Endpoint
	}{
		// tcp
		{"tcp bind host port", "@tcp://127.0.0.1:5555", false, []endpoint.Endpoint{bind("tcp://127.0.0.1:5555")}},
		{"tcp bind every interface", "@tcp://*:5555", false, []endpoint.Endpoint{bind("tcp://*:5555")}},
		{"tcp bind ephemeral star", "@tcp://127.0.0.1:*", false, []endpoint.Endpoint{bind("tcp://127.0.0.1:*")}},
		{"tcp bind ephemeral zero", "@tcp://127.0.0.1:0", false, []endpoint.Endpoint{bind("tcp://127.0.0.1:0")}},
		{"tcp bind star star", "@tcp://*:*", false, []endpoint.Endpoint{bind("tcp://*:*")}},
		{"tcp bind interface name", "@tcp://eth0:5555", false, []endpoint.Endpoint{bind("tcp://eth0:5555")}},
		{"tcp connect host name", ">tcp://localhost:5555", true, []endpoint.Endpoint{connect("tcp://localhost:5555")}},
		{"tcp lowest and highest port", ">tcp://127.0.0.1:1,>tcp://127.0.0.1:65535", true,
			[]endpoint.Endpoint{connect("tcp://127.0.0.1:1"), connect("tcp://127.0.0.1:65535")}},
		{"tcp IPv6 connect", ">tcp://[::1]:5555", true, []endpoint.Endpoint{connect("tcp://[::1]:5555")}},
		{"tcp IPv6 bind ephemeral", "@tcp://[::1]:*", false, []endpoint.Endpoint{bind("tcp://[::1]:*")}},
		{"tcp connect with source address", ">tcp://127.0.0.1:0;127.0.0.1:5555", true,
			[]endpoint.Endpoint{connect("tcp://127.0.0.1:0;127.0.0.1:5555")}},
		{"tcp connect with source host only", ">tcp://127.0.0.1;[::1]:5555", true,
			[]endpoint.Endpoint{connect("tcp://127.0.0.1;[::1]:5555")}},
		// ipc
		{"ipc bind absolute path", "@ipc:///tmp/zmqkit/a.sock", false, []endpoint.Endpoint{bind("ipc:///tmp/zmqkit/a.sock")}},
		{"ipc connect relative path", ">ipc://a.sock", true, []endpoint.Endpoint{connect("ipc://a.sock")}},
		{"ipc abstract namespace", ">ipc://@zmqkit", true, []endpoint.Endpoint{connect("ipc://@zmqkit")}},
		{"ipc bind wildcard", "@ipc://*", false, []endpoint.Endpoint{bind("ipc://*")}},
		// inproc
		{"inproc bind", "@inproc://a", false, []endpoint.Endpoint{bind("inproc://a")}},
		{"inproc connect", ">inproc://a", true, []endpoint.Endpoint{connect("inproc://a")}},
		{"inproc bind wildcard", "@inproc://*", false, []endpoint.Endpoint{bind("inproc://*")}},
		// prefixes and defaults
		{"unprefixed takes default bind", "tcp://*:5555", true, []endpoint.Endpoint{bind("tcp://*:5555")}},
		{"unprefixed takes default connect", "tcp://localhost:5555", false, []endpoint.Endpoint{connect("tcp://localhost:5555")}},
		{"prefix overrides default bind", ">inproc://a", true, []endpoint.Endpoint{connect("inproc://a")}},
		{"prefix overrides default connect", "@inproc://a", false, []endpoint.Endpoint{bind("inproc://a")}},
		// lists
		{"list with spaces around commas", " @tcp://127.0.0.1:* ,  >ipc:///tmp/x,inproc://y ", false, []endpoint.Endpoint{
			bind("tcp://127.0.0.1:*"), connect("ipc:///tmp/x"), connect("inproc://y"),
		}},
		{"list mixing defaults", "inproc://a,@inproc://b,inproc://c", false, []endpoint.Endpoint{
			connect("inproc://a"), bind("inproc://b"), connect("inproc://c"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := endpoint.Parse(tc.list, tc.defaultBind)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name        string
		list        string
		defaultBind bool
		bad         string // the endpoint the error must quote; "" for the whole list
		why         string // part of the reason given
	}{
		{"empty list", "", true, "", "empty endpoint list"},
		{"blank list", " \t ", true, "", "empty endpoint list"},
		{"empty item", "inproc://a,,inproc://b", true, `""`, "empty endpoint"},
		{"blank item", "inproc://a, ,inproc://b", true, `""`, "empty endpoint"},
		{"trailing comma", "inproc://a,", true, `""`, "empty endpoint"},
		{"prefix alone", "@", true, `"@"`, "empty endpoint"},
		{"space after prefix", "@ tcp://*:5555", true, `"@ tcp://*:5555"`, "unsupported transport"},
		{"missing transport", "127.0.0.1:5555", false, `"127.0.0.1:5555"`, "want transport://address"},
		{"missing separator", "tcp:127.0.0.1:5555", false, `"tcp:127.0.0.1:5555"`, "want transport://address"},
		{"missing address tcp", ">tcp://", true, `">tcp://"`, "missing address after tcp://"},
		{"missing address ipc", "ipc://", true, `"ipc://"`, "missing address after ipc://"},
		{"missing address inproc", "@inproc://", false, `"@inproc://"`, "missing address after inproc://"},
		{"empty transport", "://x", true, `"://x"`, "unsupported transport"},
		{"udp unsupported", "udp://127.0.0.1:5555", false, `"udp://127.0.0.1:5555"`, `unsupported transport "udp"`},
		{"pgm unsupported", "pgm://eth0;239.192.1.1:5555", false, `"pgm://eth0;239.192.1.1:5555"`, `unsupported transport "pgm"`},
		{"epgm unsupported", "epgm://eth0;239.192.1.1:5555", false, `"epgm://eth0;239.192.1.1:5555"`, `unsupported transport "epgm"`},
		{"ws unsupported", "ws://127.0.0.1:5555", false, `"ws://127.0.0.1:5555"`, `unsupported transport "ws"`},
		{"transport is case sensitive", "TCP://127.0.0.1:5555", false, `"TCP://127.0.0.1:5555"`, `unsupported transport "TCP"`},
		{"tcp no port", "tcp://127.0.0.1", false, `"tcp://127.0.0.1"`, "want host:port"},
		{"tcp IPv6 without brackets", "tcp://::1:5555", false, `"tcp://::1:5555"`, "want host:port"},
		{"tcp missing host", "tcp://:5555", true, `"tcp://:5555"`, "missing host"},
		{"tcp empty port", "tcp://127.0.0.1:", false, `"tcp://127.0.0.1:"`, "is not a number"},
		{"tcp port not a number", "tcp://127.0.0.1:http", false, `"tcp://127.0.0.1:http"`, `port "http"`},
		{"tcp port too big", "tcp://127.0.0.1:65536", false, `"tcp://127.0.0.1:65536"`, `port "65536"`},
		{"tcp port negative", "tcp://127.0.0.1:-1", false, `"tcp://127.0.0.1:-1"`, `port "-1"`},
		{"tcp connect to star port", ">tcp://127.0.0.1:*", true, `">tcp://127.0.0.1:*"`, "ephemeral port"},
		{"tcp connect to port zero", "tcp://127.0.0.1:0", false, `"tcp://127.0.0.1:0"`, "ephemeral port"},
		{"tcp connect to star host", ">tcp://*:5555", true, `">tcp://*:5555"`, "cannot connect to *"},
		{"tcp connect with source to ephemeral", ">tcp://127.0.0.1:0;127.0.0.1:*", true, `">tcp://127.0.0.1:0;127.0.0.1:*"`, "ephemeral port"},
		{"tcp connect with source, no destination", ">tcp://127.0.0.1:0;", true, `">tcp://127.0.0.1:0;"`, "want host:port"},
		{"tcp bind with source", "@tcp://127.0.0.1:0;127.0.0.1:5555", false, `"@tcp://127.0.0.1:0;127.0.0.1:5555"`, "want host:port"},
		{"ipc white space", "ipc:///tmp/a b", false, `"ipc:///tmp/a b"`, "white space"},
		{"ipc tab", "ipc:///tmp/a\tb", false, `"ipc:///tmp/a\tb"`, "white space"},
		{"inproc white space", "inproc://a b", false, `"inproc://a b"`, "white space"},
		{"inproc connect to wildcard", ">inproc://*", true, `">inproc://*"`, "wildcard"},
		{"bad item after good ones", "inproc://a, inproc://b ,udp://x:1", true, `"udp://x:1"`, "unsupported transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := endpoint.Parse(tc.list, tc.defaultBind)
			require.Error(t, err)
			assert.Nil(t, got)
			assert.ErrorIs(t, err, endpoint.ErrInvalid)
			assert.Contains(t, err.Error(), tc.why)
			if tc.bad != "" {
				assert.Contains(t, err.Error(), "zmqkit: invalid endpoint "+tc.bad+": ")
			}
		})
	}
}

// ParseOne is Parse for one endpoint: same results, same errors.
func TestParseOne(t *testing.T) {
	ep, err := endpoint.ParseOne("  @tcp://127.0.0.1:*  ", false)
	require.NoError(t, err)
	assert.Equal(t, bind("tcp://127.0.0.1:*"), ep)

	ep, err = endpoint.ParseOne("inproc://a", true)
	require.NoError(t, err)
	assert.Equal(t, bind("inproc://a"), ep)

	_, err = endpoint.ParseOne(" >tcp://127.0.0.1:* ", true)
	require.ErrorIs(t, err, endpoint.ErrInvalid)
	assert.Equal(t, `zmqkit: invalid endpoint ">tcp://127.0.0.1:*": cannot connect to an ephemeral port`, err.Error())

	// A comma is no list separator here: it ends up in the address.
	ep, err = endpoint.ParseOne("inproc://a,b", true)
	require.NoError(t, err)
	assert.Equal(t, bind("inproc://a,b"), ep)
}

// libzmq refuses these tcp addresses with EINVAL when connecting; Parse
// should refuse them first, as ErrInvalid, like every other malformed
// endpoint.
func TestParseRefusesWhatLibzmqRefuses(t *testing.T) {
	for _, s := range []string{">tcp://a b:5555", ">tcp://;127.0.0.1:5555"} {
		t.Run(s, func(t *testing.T) {
			_, err := endpoint.Parse(s, false)
			assert.ErrorIs(t, err, endpoint.ErrInvalid)
		})
	}
}

// Error carries a failed bind or connect to the root package, which turns it
// into its EndpointError (where errors.Is matches a syscall.Errno): the
// message names the operation and the endpoint, and the errno stays in the
// chain.
func TestError(t *testing.T) {
	err := error(&endpoint.Error{Op: "bind", Endpoint: "tcp://*:5555", Err: zmq.Errno(syscall.EADDRINUSE)})

	assert.Equal(t, "bind tcp://*:5555: address already in use", err.Error())
	assert.Equal(t, zmq.Errno(syscall.EADDRINUSE), errors.Unwrap(err))
	assert.ErrorIs(t, err, zmq.EADDRINUSE)
	assert.NotErrorIs(t, err, zmq.ECONNREFUSED)
	assert.NotErrorIs(t, err, endpoint.ErrInvalid)

	// Through more wrapping, errors.As finds it and the errno is kept.
	wrapped := fmt.Errorf("zmqkit: pair: %w", err)
	assert.ErrorIs(t, wrapped, zmq.EADDRINUSE)
	var ee *endpoint.Error
	require.ErrorAs(t, wrapped, &ee)
	assert.Equal(t, "bind", ee.Op)
	assert.Equal(t, "tcp://*:5555", ee.Endpoint)
	assert.Equal(t, zmq.Errno(syscall.EADDRINUSE), zmq.AsErrno(ee.Err))

	conn := &endpoint.Error{Op: "connect", Endpoint: "tcp://a b:5555", Err: zmq.Errno(syscall.EINVAL)}
	assert.Equal(t, "connect tcp://a b:5555: invalid argument", conn.Error())

	// libzmq's own errors keep their libzmq text.
	term := &endpoint.Error{Op: "connect", Endpoint: "inproc://a", Err: zmq.ETERM}
	assert.Equal(t, "connect inproc://a: Context was terminated", term.Error())
	assert.ErrorIs(t, term, zmq.ETERM)
}

// The errno pebbe/zmq4 really returns for a busy address is kept.
func TestErrorFromRealBind(t *testing.T) {
	zctx, err := zmq.NewContext()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, zctx.Term()) })
	open := func() *zmq.Socket {
		s, err := zctx.NewSocket(zmq.PAIR)
		require.NoError(t, err)
		require.NoError(t, s.SetLinger(0))
		t.Cleanup(func() { assert.NoError(t, s.Close()) })
		return s
	}
	first := open()
	require.NoError(t, first.Bind("tcp://127.0.0.1:*"))
	addr, err := first.GetLastEndpoint()
	require.NoError(t, err)

	berr := open().Bind(addr)
	require.Error(t, berr)
	err = &endpoint.Error{Op: "bind", Endpoint: addr, Err: berr}
	assert.ErrorIs(t, err, zmq.EADDRINUSE)
	assert.Equal(t, zmq.EADDRINUSE, zmq.AsErrno(errors.Unwrap(err)))
	assert.Equal(t, "bind "+addr+": address already in use", err.Error())
}
