package clisuite

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchPair runs the --bind side, then the --connect side, and returns both.
func benchPair(t *testing.T, kind string, bindArgs, connArgs []string, endpoints int) (*proc, *proc) {
	t.Helper()
	bind := strings.TrimSuffix(strings.Repeat(localAny+",", endpoints), ",")
	b := zk(t, opts{}, append([]string{"bench", kind, "--bind", bind}, bindArgs...)...)
	var eps []string
	for i := 0; i < endpoints; i++ {
		eps = append(eps, b.bound(i))
	}
	c := zk(t, opts{}, append([]string{"bench", kind, "--connect", strings.Join(eps, ",")}, connArgs...)...)
	require.Equal(t, 0, c.wait(), "bench %s --connect", kind)
	require.Equal(t, 0, b.wait(), "bench %s --bind", kind)
	return b, c
}

func jsonObject(t *testing.T, p *proc) map[string]any {
	t.Helper()
	out := p.stdout()
	require.Len(t, out, 1, "one JSON object on stdout")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out[0]), &m), out[0])
	return m
}

func TestBenchThrTable(t *testing.T) {
	b, c := benchPair(t, "thr", []string{"--count", "20000"}, []string{"--count", "20000"}, 1)
	out := b.stdout()
	require.Len(t, out, 2, "header and one row: %q", out)
	for _, h := range []string{"pattern", "size (B)", "count", "received", "lost", "msgs/s", "MB/s"} {
		assert.Contains(t, out[0], h)
	}
	row := strings.Fields(out[1])
	require.GreaterOrEqual(t, len(row), 5, out[1])
	assert.Equal(t, []string{"pushpull", "64", "20000", "20000", "0"}, row[:5])
	assert.Regexp(t, `^sent 20000 messages of 64 bytes in \S+$`, strings.Join(append(c.stdout(), c.stderr()...), "\n"))
}

func TestBenchThrJSON(t *testing.T) {
	for _, pattern := range []string{"pushpull", "pubsub"} {
		t.Run(pattern, func(t *testing.T) {
			args := []string{"--count", "5000", "--size", "100", "--pattern", pattern, "--json"}
			b, _ := benchPair(t, "thr", args, args[:6], 1)
			m := jsonObject(t, b)
			for _, k := range []string{"pattern", "size", "count", "received", "lost", "elapsed_sec", "msgs_per_sec", "mb_per_sec"} {
				assert.Contains(t, m, k)
			}
			assert.Equal(t, pattern, m["pattern"])
			assert.EqualValues(t, 100, m["size"])
			assert.EqualValues(t, 5000, m["count"])
			assert.EqualValues(t, 5000, m["received"])
			assert.EqualValues(t, 0, m["lost"])
			assert.Greater(t, m["msgs_per_sec"], 0.0)
			assert.Greater(t, m["mb_per_sec"], 0.0)
		})
	}
}

func TestBenchLat(t *testing.T) {
	t.Run("table", func(t *testing.T) {
		_, c := benchPair(t, "lat", []string{"--count", "300"}, []string{"--count", "300"}, 1)
		out := c.stdout()
		require.Len(t, out, 2, "header and one row: %q", out)
		for _, h := range []string{"pattern", "size (B)", "p50 (µs)", "p90 (µs)", "p99 (µs)", "p99.9 (µs)", "msgs/s"} {
			assert.Contains(t, out[0], h)
		}
		assert.Equal(t, []string{"reqrep", "64", "300"}, strings.Fields(out[1])[:3])
	})
	for _, pattern := range []string{"reqrep", "pushpull", "pubsub"} {
		t.Run("json "+pattern, func(t *testing.T) {
			n := 1
			if pattern != "reqrep" {
				n = 2 // OUT,BACK
			}
			args := []string{"--count", "200", "--pattern", pattern}
			_, c := benchPair(t, "lat", args, append(args, "--json"), n)
			m := jsonObject(t, c)
			for _, k := range []string{"pattern", "size", "count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "msgs_per_sec"} {
				assert.Contains(t, m, k)
			}
			assert.Equal(t, pattern, m["pattern"])
			assert.EqualValues(t, 200, m["count"])
			assert.EqualValues(t, 64, m["size"])
			p50, _ := m["p50_us"].(float64)
			p999, _ := m["p999_us"].(float64)
			assert.Greater(t, p50, 0.0)
			assert.LessOrEqual(t, p50, p999, "p50 <= p99.9")
		})
	}
}
