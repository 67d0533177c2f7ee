package zmqkit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pySeedPublisher plays the Python module's Publisher: it connects a PUB to
// each endpoint given, publishes probes until told "go" on stdin, then sends
// frames exactly as the seed builds them: f"{msgid} {msgtype} {msg}" encoded
// in the publisher's coding, with json.dumps for non-text messages.
const pySeedPublisher = `
import json, select, sys, time, zmq
ctx = zmq.Context()
pubs = []
for ep in sys.argv[1:]:
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(ep)
    pubs.append(s)

def publish(sock, msg, msgtype='text', msgid=1000, coding='utf-8'):
    if msgtype != 'text':
        msg = json.dumps(msg)
        msgtype = 'json'
    sock.send(f"{msgid} {msgtype} {msg}".encode(coding))

print("ready")
while not select.select([sys.stdin], [], [], 0.01)[0]:
    for s in pubs:
        s.send(b"424242 text probe")
sys.stdin.readline()
utf, gbk = pubs
publish(utf, "Hello World")
publish(utf, {"data": 42}, msgtype="json")
publish(utf, "must be filtered", msgid=10001)
publish(utf, "你好，世界 with spaces")
publish(utf, "")
publish(gbk, "你好，世界", msgid=2000, coding='gbk')
publish(gbk, {"城市": "北京"}, msgtype="json", msgid=2000, coding='gbk')
publish(utf, "END", msgid=1000)
publish(gbk, "END", msgid=2000, coding='gbk')
print("sent")
ctx.destroy(linger=2000)
`

func TestInteropPythonPublisherToSubscriber(t *testing.T) {
	zctx := newTestContext(t)
	ctx := testCtx(t)
	utf, err := NewSubscriber("@tcp://127.0.0.1:*", WithZMQContext(zctx), WithMsgIDs(1000, probeID))
	require.NoError(t, err)
	closeOnCleanup(t, utf)
	gbk, err := NewSubscriber("@tcp://127.0.0.1:*", WithZMQContext(zctx), WithMsgIDs(2000, probeID), WithEncoding("gbk"))
	require.NoError(t, err)
	closeOnCleanup(t, gbk)

	py := startPython(t, pySeedPublisher, utf.Endpoints()[0], gbk.Endpoints()[0])
	require.Equal(t, "ready", py.Line(t))
	for _, s := range []*Subscriber{utf, gbk} {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, probeID, m.ID)
	}
	py.Send(t, "go")
	require.Equal(t, "sent", py.Line(t))

	collect := func(s *Subscriber) []Message {
		var out []Message
		for {
			m, err := receive(ctx, s)
			require.NoError(t, err)
			if m.Text() == "END" {
				return out
			}
			out = append(out, m)
		}
	}
	got := collect(utf)
	require.Len(t, got, 4, "10001 is not 1000: exact filter")
	assert.Equal(t, Message{ID: 1000, Type: "text", Body: []byte("Hello World")}, got[0])
	assert.Equal(t, "json", got[1].Type)
	v, err := got[1].Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"data": 42.0}, v)
	assert.Equal(t, "你好，世界 with spaces", got[2].Text())
	assert.Equal(t, "", got[3].Text())

	got = collect(gbk)
	require.Len(t, got, 2)
	assert.Equal(t, "你好，世界", got[0].Text(), "gbk bytes decoded to UTF-8")
	var city map[string]string
	require.NoError(t, got[1].JSON(&city))
	assert.Equal(t, map[string]string{"城市": "北京"}, city)
	py.Wait(t)
}

// pySeedSubscriber plays the Python module's Subscriber, with its prefix
// filter b'<msgid>' (which also matches 10001: the seed's bug), and checks
// that every frame is what the seed's own publish() would have sent.
const pySeedSubscriber = `
import json, sys, zmq
ep, coding = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b'1000')
s.connect(ep)

def seed_frame(msg, msgtype='text', msgid=1000):
    if msgtype != 'text':
        msg = json.dumps(msg)
        msgtype = 'json'
    return f"{msgid} {msgtype} {msg}".encode(coding)

expected = [
    seed_frame("Hello World"),
    seed_frame({"data": 42}, msgtype="json"),
    seed_frame("中文 with  spaces"),
    seed_frame("the seed's prefix filter lets 10001 in", msgid=10001),
    seed_frame(""),
]
first = True
got = []
while True:
    frame = s.recv()
    if frame == b"1000 text probe":
        if first:
            print("subscribed")
            first = False
        continue
    if frame == b"1000 text END":
        break
    got.append(frame)
for g, e in zip(got, expected):
    msgid, msgtype, body = g.decode(coding).split(' ', 2)
    if msgtype == 'json':
        # Same value; Go's JSON has no spaces after separators.
        emsgid, emsgtype, ebody = e.decode(coding).split(' ', 2)
        ok = (msgid, msgtype, json.loads(body)) == (emsgid, emsgtype, json.loads(ebody))
    else:
        ok = g == e
    print(("same" if ok else "DIFFERENT") + " " + repr(g) + " " + repr(e))
print("count", len(got), len(expected))
ctx.destroy(linger=0)
`

func TestInteropPublisherToPythonSubscriber(t *testing.T) {
	for _, enc := range []string{"utf-8", "gbk"} {
		t.Run(enc, func(t *testing.T) {
			zctx := newTestContext(t)
			ctx := testCtx(t)
			pub, err := NewPublisher("tcp://127.0.0.1:*", WithZMQContext(zctx), WithEncoding(enc))
			require.NoError(t, err)
			closeOnCleanup(t, pub)
			py := startPython(t, pySeedSubscriber, pub.Endpoints()[0], enc)
			// Publish probes until the Python SUB says it is subscribed.
			for subscribed := false; !subscribed; {
				require.NoError(t, pub.Publish(ctx, "probe"))
				select {
				case l := <-py.Lines:
					require.Equal(t, "subscribed", l)
					subscribed = true
				case <-time.After(10 * time.Millisecond):
				case <-ctx.Done():
					t.Fatal("python subscriber never subscribed")
				}
			}
			require.NoError(t, pub.Publish(ctx, "Hello World"))
			require.NoError(t, pub.Publish(ctx, map[string]int{"data": 42}))
			require.NoError(t, pub.Publish(ctx, "中文 with  spaces"))
			require.NoError(t, pub.PublishMessage(ctx, Message{ID: 10001, Type: TypeText, Body: []byte("the seed's prefix filter lets 10001 in")}))
			require.Error(t, pub.Publish(ctx, json.RawMessage{}), "an empty RawMessage is not JSON: refused, not sent")
			require.NoError(t, pub.Publish(ctx, ""))
			require.NoError(t, pub.Publish(ctx, "END"))
			for i := 0; i < 5; i++ {
				l := py.Line(t)
				assert.True(t, strings.HasPrefix(l, "same "), l)
			}
			assert.Equal(t, "count 5 5", py.Line(t))
			py.Wait(t)
		})
	}
}

// pySUBOnce subscribes a pyzmq SUB to everything, says "ready", then prints
// the first message it receives.
const pySUBOnce = `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.setsockopt(zmq.SUBSCRIBE, b"1000")
s.connect(sys.argv[1])
print("ready")
print(s.recv().decode())
s.close()
ctx.term()
`

// A pyzmq SUB (subscribing to "1000", as the Python module does) counts
// for WaitForSubscribers, and gets the first message published after it.
func TestWaitForSubscribersPyzmq(t *testing.T) {
	zctx := newTestContext(t)
	pub, err := NewPublisher(bindEndpoint(t, "tcp"), WithZMQContext(zctx))
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	p := startPython(t, pySUBOnce, pub.Endpoints()[0])
	require.Equal(t, "ready", p.Line(t))
	require.NoError(t, pub.WaitForSubscribers(testCtx(t), 1))
	require.NoError(t, pub.Publish(testCtx(t), "first"))
	assert.Equal(t, "1000 text first", p.Line(t))
	p.Wait(t)
}
