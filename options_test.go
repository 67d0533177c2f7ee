package zmqkit

import (
	"context"
	"math"
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
	maxMs := time.Duration(math.MaxInt32) * time.Millisecond
	refused := []struct {
		name  string
		opt   Option
		limit string
	}{
		{"WithSendHWM", WithSendHWM(1<<32 + 2), "2147483647"},
		{"WithSendHWM", WithSendHWM(math.MaxInt32 + 1), "2147483647"},
		{"WithRecvHWM", WithRecvHWM(math.MaxInt64), "2147483647"},
		{"WithLinger", WithLinger(maxMs + time.Nanosecond), "2147483647ms"},
		{"WithLinger", WithLinger(time.Duration(1<<32-1) * time.Millisecond), "2147483647ms"},
		{"WithLinger", WithLinger(math.MaxInt64), "2147483647ms"},
		{"WithReconnectInterval", WithReconnectInterval(time.Duration(1<<32-1)*time.Millisecond, 0), "2147483647ms"},
		{"WithReconnectInterval", WithReconnectInterval(time.Second, maxMs+time.Millisecond), "2147483647ms"},
		{"WithHeartbeat", WithHeartbeat(maxMs+time.Millisecond, time.Second), "2147483647ms"},
		{"WithHeartbeat", WithHeartbeat(time.Second, math.MaxInt64), "6553.5s"},
		{"WithConcurrency", WithConcurrency(MaxConcurrency + 1), "65536"},
		{"WithConcurrency", WithConcurrency(1 << 40), "65536"},
		{"WithConcurrency", WithConcurrency(math.MaxInt64), "65536"},
	}
	for _, tc := range refused {
		_, err := NewPPPuller("inproc://limits", nil, WithContext(zctx), tc.opt)
		require.ErrorIs(t, err, ErrInvalidOption, tc.name)
		assert.Contains(t, err.Error(), tc.name)
		assert.Contains(t, err.Error(), tc.limit, tc.name)
	}

	// The largest values are applied as given.
	pull, err := NewPPPuller("inproc://limits", nil, WithContext(zctx),
		WithSendHWM(math.MaxInt32), WithRecvHWM(math.MaxInt32), WithLinger(maxMs),
		WithReconnectInterval(maxMs, maxMs), WithHeartbeat(maxMs, 6553500*time.Millisecond),
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
			assert.Equal(t, maxMs, d)
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
// and works.
func TestMaxConcurrencyRun(t *testing.T) {
	push, pull := newPushPull(t, "inproc", nil, []Option{WithConcurrency(MaxConcurrency)})
	got := make(chan []byte, 10)
	pull.handler = func(_ context.Context, msg []byte) error { got <- msg; return nil }
	stop := runInBackground(t, pull.Run)
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
}
