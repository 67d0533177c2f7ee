package zmqkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// receiveAll takes n messages with ReceiveBatch(max), checking that no
// batch is larger than max.
func receiveAll(t *testing.T, ctx context.Context, pull *PPPuller, n, max int) [][]byte {
	t.Helper()
	var got [][]byte
	for len(got) < n {
		batch, err := pull.ReceiveBatch(ctx, max)
		require.NoError(t, err)
		require.NotEmpty(t, batch)
		require.LessOrEqual(t, len(batch), max)
		got = append(got, batch...)
	}
	return got
}

// PushBatch and ReceiveBatch move messages of every size in order, none
// lost or doubled, whatever the batch sizes; a batch's messages do not
// overlap.
func TestPushPullBatch(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			push, pull := newPushPull(t, tr, nil, nil)
			ctx := testCtx(t)
			var msgs [][]byte
			for i := 0; i < 600; i++ {
				size := []int{0, 1, 64, 1000, 40 << 10}[i%5] // 40 KiB: past one call's 32 KiB
				m := bytes.Repeat([]byte{byte(i)}, size)
				msgs = append(msgs, append(m, fmt.Sprint(i)...))
			}
			for _, chunk := range [][][]byte{msgs[:1], msgs[1:300], msgs[300:]} {
				n, err := push.PushBatch(ctx, chunk)
				require.NoError(t, err)
				require.Equal(t, len(chunk), n)
			}
			got := receiveAll(t, ctx, pull, len(msgs), 7)
			require.Len(t, got, len(msgs))
			short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			defer cancel()
			_, err := pull.ReceiveBatch(short, MaxBatch)
			require.ErrorIs(t, err, context.DeadlineExceeded, "no message more")
			for i := range msgs {
				require.Equal(t, msgs[i], got[i], "message %d", i)
			}
			// Appending to one message never writes over the next.
			for i := 0; i+1 < len(got); i++ {
				got[i] = append(got[i], 'x')
				require.Equal(t, msgs[i+1], got[i+1], "message %d after appending to %d", i+1, i)
			}
			assert.Equal(t, uint64(len(msgs)), push.Stats().Sent)
			assert.Equal(t, uint64(len(msgs)), pull.Stats().Received)

			n, err := push.PushBatch(ctx, nil)
			assert.NoError(t, err)
			assert.Zero(t, n)
		})
	}
}

// A message of several frames in a batch is skipped, counted and reported,
// small or too large for one call; the messages around it arrive in order.
func TestReceiveBatchSkipsMultiFrame(t *testing.T) {
	var rec errorRecorder
	push, pull := newPushPull(t, "tcp", nil, []Option{rec.option()})
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("b"), 40<<10)
	require.NoError(t, push.Push(ctx, []byte("one")))
	require.NoError(t, push.PushFrames(ctx, []byte("x"), []byte("y")))
	require.NoError(t, push.Push(ctx, []byte("two")))
	require.NoError(t, push.PushFrames(ctx, big, []byte("y"), []byte("z")))
	require.NoError(t, push.Push(ctx, []byte("three")))
	require.NoError(t, push.PushFrames(ctx, []byte("last"), []byte("y"))) // alone in the end
	require.NoError(t, push.Push(ctx, []byte("four")))

	got := receiveAll(t, ctx, pull, 4, MaxBatch)
	assert.Equal(t, [][]byte{[]byte("one"), []byte("two"), []byte("three"), []byte("four")}, got)
	assert.Equal(t, uint64(3), pull.Stats().Malformed)
	assert.Equal(t, uint64(7), pull.Stats().Received)
	errs := rec.errors()
	require.Len(t, errs, 3)
	for i, frames := range []int{2, 3, 2} {
		var me *MalformedError
		require.ErrorAs(t, errs[i], &me)
		assert.Contains(t, me.Error(), fmt.Sprintf("message of %d frames, want 1", frames))
	}
}

// ReceiveBatch waits for the first message until ctx ends or the puller
// closes, and refuses a batch of no messages.
func TestReceiveBatchWaitsAndEnds(t *testing.T) {
	push, pull := newPushPull(t, "inproc", nil, nil)
	ctx := testCtx(t)

	_, err := pull.ReceiveBatch(ctx, 0)
	require.ErrorIs(t, err, ErrInvalidArgument)

	got := make(chan [][]byte, 1)
	go func() {
		b, err := pull.ReceiveBatch(ctx, MaxBatch)
		assert.NoError(t, err)
		got <- b
	}()
	require.Eventually(t, func() bool { return pull.sock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, push.Push(ctx, []byte("late")))
	assert.Equal(t, [][]byte{[]byte("late")}, <-got)

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = pull.ReceiveBatch(cctx, MaxBatch)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	errc := make(chan error, 1)
	go func() {
		_, err := pull.ReceiveBatch(ctx, MaxBatch)
		errc <- err
	}()
	require.Eventually(t, func() bool { return pull.sock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, pull.Close())
	require.ErrorIs(t, <-errc, ErrClosed)
}

// PushBatch blocks at the high-water mark like Push: with nobody reading,
// it sends what fits and returns that count with ctx's error; what it sent
// arrives, in order, and the rest goes once there is room.
func TestPushBatchBackPressure(t *testing.T) {
	push, pull := newPushPull(t, "inproc", []Option{WithSendHWM(10)}, []Option{WithRecvHWM(10)})
	ctx := testCtx(t)
	msgs := make([][]byte, 100)
	for i := range msgs {
		msgs[i] = []byte(fmt.Sprint(i))
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	n, err := push.PushBatch(cctx, msgs)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Positive(t, n)
	require.Less(t, n, len(msgs))
	assert.Equal(t, uint64(n), push.Stats().Sent)

	done := make(chan error, 1)
	go func() {
		m, err := push.PushBatch(ctx, msgs[n:])
		if err == nil && m != len(msgs)-n {
			err = fmt.Errorf("sent %d of %d", m, len(msgs)-n)
		}
		done <- err
	}()
	got := receiveAll(t, ctx, pull, len(msgs), MaxBatch)
	require.NoError(t, <-done)
	assert.Equal(t, msgs, got)
}

// PublishBatch sends every value as Publish would, in order; a value that
// cannot be encoded stops the batch there. Subscriber.ReceiveBatch decodes
// them, and skips (counting and reporting) what does not decode.
func TestPubSubBatch(t *testing.T) {
	var rec errorRecorder
	pub, sub := newPubSub(t, "tcp", nil, []Option{rec.option()})
	ctx := testCtx(t)
	before := pub.Stats().Sent

	n, err := pub.PublishBatch(ctx, []any{"hello", map[string]int{"n": 1}, []byte("raw"), make(chan int), "never"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, n, "sent up to the value that cannot be encoded")
	require.NoError(t, pub.PublishFrames(ctx, []byte("1000 no-type-or-body")))
	n, err = pub.PublishBatch(ctx, []any{"after"})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	var got []Message
	for len(got) < 4 {
		ms, err := sub.ReceiveBatch(ctx, MaxBatch)
		require.NoError(t, err)
		for _, m := range ms {
			if m.ID != probeID { // queued before the test's messages
				got = append(got, m)
			}
		}
	}
	require.Len(t, got, 4)
	assert.Equal(t, "hello", got[0].Text())
	assert.JSONEq(t, `{"n":1}`, string(got[1].Body))
	assert.Equal(t, []byte("raw"), got[2].Body)
	assert.Equal(t, "after", got[3].Text())
	assert.Equal(t, uint64(1), sub.Stats().Malformed)
	require.Len(t, rec.errors(), 1)
	assert.True(t, errors.Is(rec.errors()[0], ErrMalformed), rec.errors()[0])
	assert.Equal(t, uint64(5), pub.Stats().Sent-before)

	_, err = sub.ReceiveBatch(ctx, -1)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

// A long PublishBatch sees its ctx end between calls, though a PUB never
// makes it wait (it drops at its mark): it returns what it sent so far.
// (Before, the whole batch ran under the socket's lock, ctx unseen.)
func TestPublishBatchCancelled(t *testing.T) {
	zctx := newTestContext(t)
	pub, err := NewPublisher("inproc://batch-cancel", WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	body := strings.Repeat("x", 1024)
	vs := make([]any, 2_000_000)
	for i := range vs {
		vs[i] = body
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := pub.PublishBatch(ctx, vs)
		done <- result{n, err}
	}()
	require.Eventually(t, func() bool { return pub.Stats().Sent > 0 }, 10*time.Second, time.Millisecond, "sent as it goes")
	cancel()
	r := <-done
	require.ErrorIs(t, r.err, context.Canceled)
	assert.Positive(t, r.n)
	assert.Less(t, r.n, len(vs))
	assert.Equal(t, uint64(r.n), pub.Stats().Sent)
}

// A PublishBatch larger than one call's 32 KiB goes out in several calls,
// whole and in order (PublishBatch ends a chunk at that size, so that its
// encoding buffer stays pooled).
func TestPublishBatchLargerThanOneCall(t *testing.T) {
	pub, sub := newPubSub(t, "inproc", nil, nil)
	ctx := testCtx(t)
	pad := strings.Repeat("x", 1000)
	vs := make([]any, 100) // about 100 KiB encoded
	for i := range vs {
		vs[i] = fmt.Sprintf("%03d %s", i, pad)
	}
	n, err := pub.PublishBatch(ctx, vs)
	require.NoError(t, err)
	require.Equal(t, len(vs), n)
	var got []string
	for len(got) < len(vs) {
		ms, err := sub.ReceiveBatch(ctx, MaxBatch)
		require.NoError(t, err)
		for _, m := range ms {
			if m.ID != probeID {
				got = append(got, m.Text())
			}
		}
	}
	for i, g := range got {
		require.Equal(t, vs[i], g, "message %d", i)
	}
}
