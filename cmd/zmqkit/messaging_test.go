package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func newTestContext(t testing.TB) *zmqkit.Context {
	t.Helper()
	zctx, err := zmqkit.NewContext()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zctx.Close()) })
	return zctx
}

// publishUntilSeen publishes probe on pub every 10 ms until sub prints a
// line, which it returns: the handshake that beats the slow joiner.
func publishUntilSeen(t testing.TB, pub *zmqkit.Publisher, probe any, sub *proc) string {
	t.Helper()
	ctx := testCtx(t)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		require.NoError(t, pub.Publish(ctx, probe))
		select {
		case l, ok := <-sub.stdout:
			require.True(t, ok, "sub exited: %q", sub.errLines())
			return l
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("sub printed nothing: %q", sub.errLines())
		}
	}
}

// A zmqkit Publisher → zmqkit sub: the lines sub prints.
func TestSubPrintsMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pubOpts []zmqkit.Option
		args    []string
		send    any
		check   func(t *testing.T, line string)
	}{
		{name: "text", send: "hello world", check: func(t *testing.T, line string) {
			assert.Equal(t, "1000 text hello world", line)
		}},
		{name: "text with a newline", send: "two\nlines", check: func(t *testing.T, line string) {
			assert.Equal(t, `1000 text two\nlines`, line)
		}},
		{name: "json", send: map[string]int{"data": 42}, check: func(t *testing.T, line string) {
			assert.Equal(t, `1000 json {"data":42}`, line)
		}},
		{name: "json lines", args: []string{"--json"}, send: map[string]int{"data": 42}, check: func(t *testing.T, line string) {
			var got struct {
				ID   int
				Type string
				Body map[string]int
				Time string
			}
			require.NoError(t, json.Unmarshal([]byte(line), &got), line)
			assert.Equal(t, 1000, got.ID)
			assert.Equal(t, "json", got.Type)
			assert.Equal(t, map[string]int{"data": 42}, got.Body)
			tm, err := time.Parse(time.RFC3339, got.Time)
			require.NoError(t, err)
			assert.WithinDuration(t, time.Now(), tm, time.Minute)
		}},
		{name: "text as json lines", args: []string{"--json"}, send: "hello", check: func(t *testing.T, line string) {
			assert.Regexp(t, `^\{"id":1000,"type":"text","body":"hello","time":"[^"]+"\}$`, line)
		}},
		{name: "gbk", pubOpts: []zmqkit.Option{zmqkit.WithEncoding("gbk")}, args: []string{"--encoding", "gbk"}, send: "你好，世界", check: func(t *testing.T, line string) {
			assert.Equal(t, "1000 text 你好，世界", line)
		}},
		{name: "msgid", pubOpts: []zmqkit.Option{zmqkit.WithMsgID(2000)}, args: []string{"--msgid", "1000", "--msgid", "2000"}, send: "yes", check: func(t *testing.T, line string) {
			assert.Equal(t, "2000 text yes", line)
		}},
		{name: "raw", args: []string{"--raw"}, send: "as it came", check: func(t *testing.T, line string) {
			assert.Equal(t, "1000 text as it came", line)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := zmqkit.NewPublisher("tcp://127.0.0.1:*", append(tc.pubOpts, zmqkit.WithZMQContext(newTestContext(t)))...)
			require.NoError(t, err)
			sub := start(t, append([]string{"sub", pub.Endpoints()[0]}, tc.args...)...)
			// The probe is the message itself: every line must be it.
			tc.check(t, publishUntilSeen(t, pub, tc.send, sub))
			require.NoError(t, pub.Publish(testCtx(t), tc.send)) // once more, now that sub is subscribed
			tc.check(t, sub.line())
			sub.interrupt()
			code, rest := sub.wait()
			assert.Equal(t, 0, code, "%q", sub.errLines())
			for _, l := range rest {
				tc.check(t, l)
			}
		})
	}
}

// sub --count ends after that many messages, with status 0; a msgid
// filter keeps the others out.
func TestSubCount(t *testing.T) {
	zctx := newTestContext(t)
	other, err := zmqkit.NewPublisher("tcp://127.0.0.1:*", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgID(10001))
	require.NoError(t, err)
	pub, err := zmqkit.NewPublisher("tcp://127.0.0.1:*", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgID(1000))
	require.NoError(t, err)
	sub := start(t, "sub", other.Endpoints()[0]+","+pub.Endpoints()[0], "--msgid", "1000", "--count", "3")
	ctx := testCtx(t)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lines []string
	for len(lines) < 3 {
		require.NoError(t, other.Publish(ctx, "not for sub"))
		require.NoError(t, pub.Publish(ctx, "for sub"))
		select {
		case l, ok := <-sub.stdout:
			require.True(t, ok, "sub exited early: %q", sub.errLines())
			lines = append(lines, l)
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("sub printed %q", lines)
		}
	}
	code, rest := sub.wait()
	assert.Equal(t, 0, code, "%q", sub.errLines())
	assert.Empty(t, rest)
	assert.Equal(t, []string{"1000 text for sub", "1000 text for sub", "1000 text for sub"}, lines)
}

// writeUntil writes probe lines to a pub's stdin every 10 ms until seen
// returns true.
func writeUntil(t testing.TB, pub *proc, probe string, seen func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !seen() {
		require.True(t, time.Now().Before(deadline), "the probe never arrived: %q", pub.errLines())
		pub.write(probe)
	}
}

// zmqkit pub → a zmqkit Subscriber.
func TestPubToSubscriber(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		probe string
		line  string
		want  zmqkit.Message
	}{
		{name: "text", probe: "probe", line: "hello world", want: zmqkit.Message{ID: 1000, Type: "text", Body: []byte("hello world")}},
		{name: "json", args: []string{"--json", "--msgid", "2000"}, probe: `"probe"`, line: `{"data": 42}`, want: zmqkit.Message{ID: 2000, Type: "json", Body: []byte(`{"data": 42}`)}},
		{name: "gbk", args: []string{"--encoding", "gbk"}, probe: "probe", line: "你好", want: zmqkit.Message{ID: 1000, Type: "text", Body: []byte("你好")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := start(t, append([]string{"pub", "tcp://127.0.0.1:*"}, tc.args...)...)
			opts := []zmqkit.Option{zmqkit.WithZMQContext(newTestContext(t))}
			if tc.name == "gbk" {
				opts = append(opts, zmqkit.WithEncoding("gbk"))
			}
			sub, err := zmqkit.NewSubscriber(pub.bound(1), opts...)
			require.NoError(t, err)
			ctx := testCtx(t)
			writeUntil(t, pub, tc.probe, func() bool {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
				defer cancel()
				_, err := sub.Receive(rctx)
				return err == nil
			})
			pub.write(tc.line)
			for {
				m, err := sub.Receive(ctx)
				require.NoError(t, err)
				v, err := m.Value()
				require.NoError(t, err)
				if probe, _ := json.Marshal(v); string(probe) == `"probe"` {
					continue
				}
				assert.Equal(t, tc.want, m)
				break
			}
			code, _ := pub.wait()
			assert.Equal(t, 0, code, "%q", pub.errLines())
		})
	}
}

// zmqkit pub → a pyzmq SUB.
func TestPubToPyzmq(t *testing.T) {
	requirePyzmq(t)
	pub := start(t, "pub", "tcp://127.0.0.1:*")
	py := startPython(t, `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"1000 ")
s.connect(sys.argv[1])
while True:
    m = s.recv()
    print(m.decode(), flush=True)
    if m.endswith(b"bye"):
        break
`, pub.bound(1))
	first := make(chan string, 1)
	writeUntil(t, pub, "probe", func() bool {
		select {
		case l := <-py.stdout:
			first <- l
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	})
	assert.Equal(t, "1000 text probe", <-first)
	pub.write("hello from go")
	pub.write("bye")
	var got []string
	for l := py.line(); ; l = py.line() {
		if l != "1000 text probe" {
			got = append(got, l)
		}
		if strings.HasSuffix(l, "bye") {
			break
		}
	}
	assert.Equal(t, []string{"1000 text hello from go", "1000 text bye"}, got)
	code, _ := py.wait()
	assert.Equal(t, 0, code, "%q", py.errLines())
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

func TestReqRep(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rep      []string
		req      []string
		want     []string
		code     int
		errMatch string
	}{
		{name: "echo", rep: []string{"--echo"}, req: []string{"hello", "two words"}, want: []string{"hello", "two words"}},
		{name: "exec", rep: []string{"--concurrency", "2", "--exec", "tr", "a-z", "A-Z"}, req: []string{"hello", "world"}, want: []string{"HELLO", "WORLD"}},
		{name: "exec fails", rep: []string{"--exec", "sh", "-c", "echo broken >&2; exit 3"}, req: []string{"hello"}, code: 1,
			errMatch: `^zmqkit req: error reply: sh: exit status 3: broken$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := start(t, append([]string{"rep", "tcp://127.0.0.1:*"}, tc.rep...)...)
			ep := rep.bound(1)
			code, out, errText := runCmd(t, "", append([]string{"req", ep, "--timeout", "10s"}, tc.req...)...)
			assert.Equal(t, tc.code, code, errText)
			if tc.errMatch != "" {
				assert.Regexp(t, tc.errMatch, strings.TrimSuffix(errText, "\n"))
				assert.Equal(t, 1, strings.Count(errText, "\n"), "%q", errText)
			} else {
				assert.Equal(t, strings.Join(tc.want, "\n")+"\n", out)
			}
			// Requests from stdin, one per line.
			if tc.code == 0 {
				code, out, errText = runCmd(t, strings.Join(tc.req, "\n")+"\n", "req", ep)
				assert.Equal(t, 0, code, errText)
				assert.Equal(t, strings.Join(tc.want, "\n")+"\n", out)
			}
			rep.interrupt()
			code, _ = rep.wait()
			assert.Equal(t, 0, code, "%q", rep.errLines())
		})
	}
}

// push → pull: 10,000 lines, none lost, in order.
func TestPushPullNoneLost(t *testing.T) {
	const n = 10000
	var in strings.Builder
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("line %d of the file", i)
		in.WriteString(want[i] + "\n")
	}
	push := startIn(t, strings.NewReader(in.String()), "push", "tcp://127.0.0.1:*")
	pull := start(t, "pull", push.bound(1), "--count", fmt.Sprint(n))
	code, got := pull.wait()
	assert.Equal(t, 0, code, "%q", pull.errLines())
	assert.Equal(t, want, got)
	code, _ = push.wait()
	assert.Equal(t, 0, code, "%q", push.errLines())
}

// Two pair commands talk both ways. Each line is written once the other
// side has shown it is there: a pair with --count ends as soon as its
// count has arrived, with what it has not yet read from stdin unsent (as
// its help says), so two lines written at once raced the exit.
func TestPair(t *testing.T) {
	a := start(t, "pair", "@ipc://"+filepath.Join(t.TempDir(), "pair"))
	b := start(t, "pair", a.bound(1), "--count", "1")
	b.write("from b")
	assert.Equal(t, "from b", a.line())
	a.write("from a")
	assert.Equal(t, "from a", b.line())
	for _, p := range []*proc{b, a} { // a ends when its input does
		code, rest := p.wait()
		assert.Equal(t, 0, code, "%q", p.errLines())
		assert.Empty(t, rest)
	}
}

// pub --wait-subscribers N holds its messages until N subscribers are
// subscribed, so that the first message reaches them all: here a line
// written before any subscriber exists reaches a zmqkit sub and a zmqkit
// Subscriber, without a probe.
func TestPubWaitSubscribers(t *testing.T) {
	pub := start(t, "pub", "tcp://127.0.0.1:*", "--wait-subscribers", "2")
	ep := pub.bound(1)
	pub.write("first")
	sub := start(t, "sub", ep, "--count", "1")
	lib, err := zmqkit.NewSubscriber(ep, zmqkit.WithZMQContext(newTestContext(t)))
	require.NoError(t, err)

	m, err := lib.Receive(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, "first", m.Text())
	code, lines := sub.wait()
	assert.Equal(t, 0, code, "%q", sub.errLines())
	assert.Equal(t, []string{"1000 text first"}, lines)
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

// A pyzmq SUB counts as a subscriber when its subscription matches pub's
// msgid.
func TestPubWaitSubscribersPyzmq(t *testing.T) {
	requirePyzmq(t)
	pub := start(t, "pub", "tcp://127.0.0.1:*", "--wait-subscribers", "1", "--msgid", "2000")
	ep := pub.bound(1)
	pub.write("first")
	py := startPython(t, `
import sys, zmq
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"2000")
s.connect(sys.argv[1])
print(s.recv().decode(), flush=True)
`, ep)
	assert.Equal(t, "2000 text first", py.line())
	code, _ := py.wait()
	assert.Equal(t, 0, code, "%q", py.errLines())
	code, _ = pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
}

// Ctrl-C while pub waits for subscribers ends it, with status 0.
func TestPubWaitSubscribersInterrupted(t *testing.T) {
	pub := start(t, "pub", "tcp://127.0.0.1:*", "--wait-subscribers", "1", "never sent")
	pub.bound(1)
	pub.interrupt()
	code, out := pub.wait()
	assert.Equal(t, 0, code, "%q", pub.errLines())
	assert.Empty(t, out)
}
