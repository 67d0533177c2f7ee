package clisuite

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pub → a pyzmq SUB: each argument is one "<msgid> text <body>" frame.
func TestPubToPyzmqSub(t *testing.T) {
	needPy(t)
	pub := zk(t, opts{}, "pub", localAny, "--wait-subscribers", "1", "hello", "two words")
	ep := pub.bound(0)
	sub := py(t, opts{}, "sub", ep, "2", "1000")
	require.Equal(t, 0, pub.wait(), "pub status")
	require.Equal(t, 0, sub.wait(), "pyzmq sub status")
	msgs := pyFrames(t, sub.stdout())
	assert.Equal(t, [][]string{{"1000 text hello"}, {"1000 text two words"}}, msgs)
}

// pub --json, --msgid and stdin lines; pub --encoding gbk puts gbk bytes on the wire.
func TestPubJSONStdinAndEncodingToPyzmq(t *testing.T) {
	needPy(t)
	pub := zk(t, opts{stdin: str("{\"data\": 42}\n[1,2]\n")}, "pub", localAny, "--json", "--msgid", "2000", "--wait-subscribers", "1")
	sub := py(t, opts{}, "sub", pub.bound(0), "2", "2000")
	require.Equal(t, 0, pub.wait())
	require.Equal(t, 0, sub.wait())
	msgs := pyFrames(t, sub.stdout())
	require.Len(t, msgs, 2)
	for i, want := range []string{`{"data":42}`, `[1,2]`} {
		body, ok := strings.CutPrefix(msgs[i][0], "2000 json ")
		require.True(t, ok, "frame %q", msgs[i][0])
		assert.JSONEq(t, want, body)
	}

	gbk := zk(t, opts{}, "pub", localAny, "--encoding", "gbk", "--wait-subscribers", "1", "你好")
	sub2 := py(t, opts{}, "sub", gbk.bound(0), "1")
	require.Equal(t, 0, gbk.wait())
	require.Equal(t, 0, sub2.wait())
	assert.Equal(t, [][]string{{"1000 text \xc4\xe3\xba\xc3"}}, pyFrames(t, sub2.stdout()))
}

// A pyzmq publisher → sub: default lines, --json lines, exact --msgid, --count.
func TestPyzmqPubToSub(t *testing.T) {
	needPy(t)
	msgs := []string{"10001 text not me", "1000 text hello", "2000 json {\"data\": 42}", "3000 text skipped", "1000 text line1\nline2"}

	t.Run("text", func(t *testing.T) {
		xp := py(t, opts{}, append([]string{"xpub", "@" + localAny}, msgs...)...)
		ep := xp.waitStderr(`^bound (\S+)`)[1]
		sub := zk(t, opts{}, "sub", ep, "--msgid", "1000", "--msgid", "2000", "--count", "3")
		require.Equal(t, 0, sub.wait())
		assert.Equal(t, []string{"1000 text hello", `2000 json {"data":42}`, `1000 text line1\nline2`}, sub.stdout())
	})
	t.Run("json", func(t *testing.T) {
		xp := py(t, opts{}, append([]string{"xpub", "@" + localAny}, msgs...)...)
		ep := xp.waitStderr(`^bound (\S+)`)[1]
		// flags before the positional argument, msgids comma-separated
		sub := zk(t, opts{}, "sub", "--json", "--count=2", "--msgid", "1000,2000", ep)
		require.Equal(t, 0, sub.wait())
		out := sub.stdout()
		require.Len(t, out, 2)
		var a, b map[string]any
		require.NoError(t, json.Unmarshal([]byte(out[0]), &a), out[0])
		require.NoError(t, json.Unmarshal([]byte(out[1]), &b), out[1])
		assert.EqualValues(t, 1000, a["id"])
		assert.Equal(t, "text", a["type"])
		assert.Equal(t, "hello", a["body"])
		assert.EqualValues(t, 2000, b["id"])
		assert.Equal(t, "json", b["type"])
		assert.Equal(t, map[string]any{"data": float64(42)}, b["body"])
		for _, m := range []map[string]any{a, b} {
			ts, ok := m["time"].(string)
			require.True(t, ok, "time %v", m["time"])
			_, err := time.Parse(time.RFC3339Nano, ts)
			assert.NoError(t, err)
		}
	})
	t.Run("raw", func(t *testing.T) {
		xp := py(t, opts{}, "xpub", "@"+localAny, "weather 10001 20", "plain frame")
		ep := xp.waitStderr(`^bound (\S+)`)[1]
		sub := zk(t, opts{}, "sub", ep, "--raw", "--count", "2")
		require.Equal(t, 0, sub.wait())
		assert.Equal(t, []string{"weather 10001 20", "plain frame"}, sub.stdout())
	})
	t.Run("gbk", func(t *testing.T) {
		xp := py(t, opts{}, "xpub", "@"+localAny, "hex:"+"313030302074657874"+"20"+"c4e3bac3")
		ep := xp.waitStderr(`^bound (\S+)`)[1]
		sub := zk(t, opts{}, "sub", ep, "--encoding", "gbk", "--count", "1")
		require.Equal(t, 0, sub.wait())
		assert.Equal(t, []string{"1000 text 你好"}, sub.stdout())
	})
}

// zmqkit pub → zmqkit sub, and the README's CURVE example is elsewhere.
func TestPubToSub(t *testing.T) {
	sub := zk(t, opts{}, "sub", "@"+localAny, "--count", "2")
	ep := sub.bound(0)
	pub := zk(t, opts{}, "pub", ">"+ep, "--wait-subscribers", "1", "--count", "2", "again")
	require.Equal(t, 0, pub.wait())
	require.Equal(t, 0, sub.wait())
	assert.Equal(t, []string{"1000 text again", "1000 text again"}, sub.stdout())
}

// pub --json: a line that is not JSON is reported and skipped, and pub exits 1
// at the end; the other lines are sent.
func TestPubJSONBadLine(t *testing.T) {
	sub := zk(t, opts{}, "sub", "@"+localAny, "--count", "2", "--json")
	ep := sub.bound(0)
	pub := zk(t, opts{stdin: str("1\nnot json\n\"x\"\n")}, "pub", ">"+ep, "--json", "--wait-subscribers", "1")
	assert.Equal(t, 1, pub.wait(), "pub status with a bad line")
	require.Equal(t, 0, sub.wait())
	out := sub.stdout()
	require.Len(t, out, 2)
	assert.Contains(t, out[0], `"body":1`)
	assert.Contains(t, out[1], `"body":"x"`)
}
