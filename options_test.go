package zmqkit

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Numeric options at the edges of their types: the largest value libzmq
// can hold is taken and applied exactly; one more is refused with an error
// that names the option and the limit, never cut to 32 bits.
func TestOptionLimits(t *testing.T) {
	zctx := newTestContext(t)
	maxDur := time.Duration(math.MaxInt32) * time.Millisecond
	refused := []struct {
		name  string
		opt   Option
		limit string
	}{
		{"WithSendHWM", WithSendHWM(1<<32 + 2), "2147483647"},
		{"WithSendHWM", WithSendHWM(math.MaxInt32 + 1), "2147483647"},
		{"WithRecvHWM", WithRecvHWM(math.MaxInt64), "2147483647"},
		{"WithLinger", WithLinger(maxDur + time.Nanosecond), "2147483647ms"},
		{"WithLinger", WithLinger(time.Duration(1<<32-1) * time.Millisecond), "2147483647ms"},
		{"WithLinger", WithLinger(math.MaxInt64), "2147483647ms"},
		{"WithReconnectInterval", WithReconnectInterval(time.Duration(1<<32-1)*time.Millisecond, 0), "2147483647ms"},
		{"WithReconnectInterval", WithReconnectInterval(time.Second, maxDur+time.Millisecond), "2147483647ms"},
		{"WithHeartbeat", WithHeartbeat(maxDur+time.Millisecond, time.Second), "2147483647ms"},
		{"WithHeartbeat", WithHeartbeat(time.Second, math.MaxInt64), "6553.5s"},
		{"WithConcurrency", WithConcurrency(MaxConcurrency + 1), "65536"},
		{"WithConcurrency", WithConcurrency(1 << 40), "65536"},
		{"WithConcurrency", WithConcurrency(math.MaxInt64), "65536"},
	}
	for _, tc := range refused {
		_, err := NewRRServer("inproc://limits", echo, WithZMQContext(zctx), tc.opt)
		require.ErrorIs(t, err, ErrInvalidOption, tc.name)
		assert.Contains(t, err.Error(), tc.name)
		assert.Contains(t, err.Error(), tc.limit, tc.name)
	}

	// The largest values are applied as given.
	pull, err := NewRRServer("inproc://limits", echo, WithZMQContext(zctx),
		WithSendHWM(math.MaxInt32), WithRecvHWM(math.MaxInt32), WithLinger(maxDur),
		WithReconnectInterval(maxDur, maxDur), WithHeartbeat(maxDur, 6553500*time.Millisecond),
		WithConcurrency(MaxConcurrency), WithMaxMessageSize(math.MaxInt64))
	require.NoError(t, err)
	require.NoError(t, pull.sock.Do(func(z *zmq.Socket) error {
		for _, get := range []func() (int, error){z.GetSndhwm, z.GetRcvhwm} {
			n, err := get()
			require.NoError(t, err)
			assert.Equal(t, math.MaxInt32, n)
		}
		for _, get := range []func() (time.Duration, error){z.GetLinger, z.GetReconnectIvl, z.GetReconnectIvlMax} {
			d, err := get()
			require.NoError(t, err)
			assert.Equal(t, maxDur, d)
		}
		size, err := z.GetMaxmsgsize()
		require.NoError(t, err)
		assert.Equal(t, int64(math.MaxInt64), size)
		return nil
	}))
	// Close with the largest linger does not wait for it: nothing is queued.
	require.NoError(t, pull.Close())
}

// A Run at the largest concurrency allocates nothing in proportion to it,
// and works: it allocates about what a Run at concurrency 1 does, far less
// than one pointer per slot would take.
func TestMaxConcurrencyRun(t *testing.T) {
	allocated := func(conc int) uint64 {
		push, pull := newPushPull(t, "inproc", nil, []Option{WithConcurrency(conc)})
		got := make(chan []byte, 10)
		h := func(_ context.Context, msg []byte) error { got <- msg; return nil }
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		stop := runInBackground(t, func(ctx context.Context) error { return pull.Run(ctx, h) })
		for i := 0; i < 10; i++ {
			require.NoError(t, push.Push(testCtx(t), []byte("x")))
		}
		for i := 0; i < 10; i++ {
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("handler not called")
			}
		}
		require.ErrorIs(t, stop(), context.Canceled)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	one, most := allocated(1), allocated(MaxConcurrency)
	perSlot := uint64(MaxConcurrency) * 8 // a channel or slice of one word per slot
	assert.Less(t, most, one+perSlot/2, "Run at concurrency %d allocated %d B, at 1 %d B", MaxConcurrency, most, one)
}

// lifecyclesFor returns the types the option named name applies to, or
// (applies false) those it does not.
func lifecyclesFor(name string, applies bool) []lifecycle {
	var out []lifecycle
	for i, lc := range lifecycles {
		if (optionKinds[name]&(1<<i) != 0) == applies {
			out = append(out, lc)
		}
	}
	return out
}

// Bad values are refused with ErrInvalidOption naming the option, by every
// type the option applies to.
func TestBadOptions(t *testing.T) {
	zctx := newTestContext(t)
	for _, tc := range []struct {
		name string
		opt  Option
	}{
		{"WithZMQContext", WithZMQContext(nil)},
		{"WithMsgID", WithMsgID(-1)},
		{"WithMsgIDs", WithMsgIDs()},
		{"WithMsgIDs", WithMsgIDs(1, -2)},
		{"WithEncoding", WithEncoding("klingon")},
		{"WithBodyCodec", WithBodyCodec("bad type", RawCodec{})},
		{"WithBodyCodec", WithBodyCodec("ok", nil)},
		{"WithLogger", WithLogger(nil)},
		{"WithErrorHandler", WithErrorHandler(nil)},
		{"WithSendHWM", WithSendHWM(-1)},
		{"WithRecvHWM", WithRecvHWM(-5)},
		{"WithLinger", WithLinger(-time.Second)},
		{"WithConcurrency", WithConcurrency(0)},
		{"WithReconnectInterval", WithReconnectInterval(0, 0)},
		{"WithReconnectInterval", WithReconnectInterval(time.Second, time.Millisecond)},
		{"WithHeartbeat", WithHeartbeat(0, time.Second)},
		{"WithHeartbeat", WithHeartbeat(time.Second, 2*time.Hour)},
		{"WithMaxMessageSize", WithMaxMessageSize(0)},
		{"WithRetries", WithRetries(0, time.Second)},
		{"WithRetries", WithRetries(2, 0)},
	} {
		for _, lc := range lifecyclesFor(tc.name, true) {
			_, err := lc.open(bindEndpoint(t, "inproc"), WithZMQContext(zctx), tc.opt)
			require.ErrorIs(t, err, ErrInvalidOption, "%s on %s", tc.name, lc.name)
			assert.Contains(t, err.Error(), tc.name)
		}
	}
}

// validOptions has one good value of every option.
var validOptions = map[string]Option{
	"WithZMQContext":        WithZMQContext(&Context{}), // never used: refused first
	"WithLogger":            WithLogger(slog.Default()),
	"WithLinger":            WithLinger(time.Millisecond),
	"WithReconnectInterval": WithReconnectInterval(time.Second, 0),
	"WithHeartbeat":         WithHeartbeat(time.Second, time.Second),
	"WithMsgID":             WithMsgID(1),
	"WithMsgIDs":            WithMsgIDs(1),
	"WithEncoding":          WithEncoding("gbk"),
	"WithBodyCodec":         WithBodyCodec("raw", RawCodec{}),
	"WithSendHWM":           WithSendHWM(1),
	"WithRecvHWM":           WithRecvHWM(1),
	"WithMaxMessageSize":    WithMaxMessageSize(1),
	"WithConcurrency":       WithConcurrency(2),
	"WithErrorHandler":      WithErrorHandler(func(error) {}),
	"WithRetries":           WithRetries(2, time.Second),
	"WithCurveServer":       WithCurveServer(KeyPair{}, nil), // refused first
	"WithCurveClient":       WithCurveClient(KeyPair{}, ""),  // refused first
	"WithEvents":            WithEvents(func(Event) {}),
	"WithCapture":           WithCapture(func(bool, [][]byte) {}),
}

// An option given to a type it does not apply to is refused, naming the
// option and the type, not silently ignored.
func TestInapplicableOptionsAreRefused(t *testing.T) {
	zctx := newTestContext(t)
	require.Len(t, validOptions, len(optionKinds))
	for name, opt := range validOptions {
		for _, lc := range lifecyclesFor(name, false) {
			_, err := lc.open(bindEndpoint(t, "inproc"), WithZMQContext(zctx), opt)
			require.ErrorIs(t, err, ErrInvalidOption, "%s on %s", name, lc.name)
			assert.Contains(t, err.Error(), name)
			assert.Contains(t, err.Error(), "does not apply to "+lc.name)
		}
	}
	_, err := NewPublisher("inproc://refuse", WithZMQContext(zctx), WithRetries(3, time.Second))
	require.EqualError(t, err, "zmqkit: invalid option WithRetries: does not apply to Publisher (it applies to RRClient)")
}

// Every option's doc ends with the types it applies to, as the table the
// constructors use says: docs and behaviour cannot drift.
func TestOptionDocsMatchTheTable(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range pkgs["zmqkit"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "With") || fn.Type.Results == nil {
				continue
			}
			name := fn.Name.Name
			if res, ok := fn.Type.Results.List[0].Type.(*ast.Ident); !ok || res.Name != "Option" {
				continue
			}
			seen[name] = true
			kinds, ok := optionKinds[name]
			require.True(t, ok, "%s is not in optionKinds", name)
			want := "Applies to: " + kinds.list() + "."
			if strings.HasPrefix(kinds.list(), "every type") {
				want = "Applies to " + kinds.list() + "."
			}
			doc := strings.TrimSpace(fn.Doc.Text())
			lines := strings.Split(doc, "\n")
			assert.Equal(t, want, lines[len(lines)-1], "the last line of %s's doc", name)
		}
	}
	for name := range optionKinds {
		assert.True(t, seen[name], "optionKinds has %s, the package has no such option", name)
	}
}

// A bad type given to WithBodyCodec is a bad option (ErrInvalidOption, and
// ErrInvalidMessage for what is wrong with the type), not a bad argument.
func TestBodyCodecBadTypeIsAnOptionError(t *testing.T) {
	_, err := NewPublisher(bindEndpoint(t, "inproc"), WithZMQContext(newTestContext(t)), WithBodyCodec("a b", nil))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorIs(t, err, ErrInvalidMessage)
	assert.NotErrorIs(t, err, ErrInvalidArgument)
	assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "%q", err)

	// Codec.Register, the same check on a codec of one's own.
	codec, err := NewCodec("utf-8")
	require.NoError(t, err)
	err = codec.Register("a b", nil)
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorIs(t, err, ErrInvalidMessage)
	assert.NotErrorIs(t, err, ErrInvalidArgument)
	assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "%q", err)
}
