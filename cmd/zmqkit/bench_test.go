package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	benchBinOnce sync.Once
	benchBinPath string
	benchBinErr  error
)

// benchBin is the command built without -race: figures under the race
// detector say nothing about the library.
func benchBin(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return binPath
	}
	benchBinOnce.Do(func() {
		benchBinPath = filepath.Join(binDir, "zmqkit-norace")
		benchBinErr = goBuild(benchBinPath, false)
	})
	require.NoError(t, benchBinErr)
	return benchBinPath
}

// runBench runs bench's --bind side, then its --connect side, and returns
// the reporting side's stdout.
func runBench(t *testing.T, mode string, bindEP string, args ...string) string {
	t.Helper()
	bin := benchBin(t)
	nEPs := strings.Count(bindEP, ",") + 1
	bind := startBin(t, bin, nil, append([]string{"bench", mode, "--bind", bindEP}, args...)...)
	conn := startBin(t, bin, nil, append([]string{"bench", mode, "--connect", bind.bound(nEPs)}, args...)...)
	code, connOut := conn.wait()
	require.Equal(t, 0, code, "%q", conn.errLines())
	code, bindOut := bind.wait()
	require.Equal(t, 0, code, "%q", bind.errLines())
	if mode == "thr" { // the receiving side reports, as libzmq's local_thr
		require.Empty(t, connOut)
		return strings.Join(bindOut, "\n")
	}
	require.Empty(t, bindOut) // lat: the timing side reports, as remote_lat
	return strings.Join(connOut, "\n")
}

// The tests check what bench measured and how it reports it, never how
// fast the machine is: figures from a shared or loaded machine vary too
// much for a threshold that cannot fail by chance. Each report must be
// consistent with itself (rates from counts and times, percentiles in
// order) and complete (nothing lost where nothing may be).

func TestBenchThroughput(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		count   int
	}{
		{"pushpull", 200000},
		{"pubsub", 100000},
		{"reqrep", 5000},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			out := runBench(t, "thr", "tcp://127.0.0.1:*", "--pattern", tc.pattern, "--count", strconv.Itoa(tc.count), "--json")
			var r thrResult
			require.NoError(t, json.Unmarshal([]byte(out), &r), out)
			t.Logf("%s", out)
			assert.Equal(t, tc.pattern, r.Pattern)
			assert.Equal(t, 64, r.Size)
			assert.Equal(t, tc.count, r.Count)
			// pubsub too: the sender waits for the subscription (no slow
			// joiner) and neither side has a high-water mark.
			assert.Equal(t, r.Count, r.Received, "none lost")
			assert.Zero(t, r.Lost)
			assert.Positive(t, r.ElapsedSec)
			assert.Positive(t, r.MsgsPerSec)
			assert.InEpsilon(t, float64(r.Received)/r.ElapsedSec, r.MsgsPerSec, 1e-6)
			assert.InEpsilon(t, r.MsgsPerSec*64/1e6, r.MBPerSec, 1e-6)
		})
	}
}

func TestBenchLatency(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		bind    string
	}{
		{"reqrep", "tcp://127.0.0.1:*"},
		{"pushpull", "tcp://127.0.0.1:*,tcp://127.0.0.1:*"},
		{"pubsub", "tcp://127.0.0.1:*,tcp://127.0.0.1:*"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			out := runBench(t, "lat", tc.bind, "--pattern", tc.pattern, "--count", "2000", "--json")
			var r latResult
			require.NoError(t, json.Unmarshal([]byte(out), &r), out)
			t.Logf("%s", out)
			assert.Equal(t, tc.pattern, r.Pattern)
			assert.Equal(t, 2000, r.Count)
			assert.Positive(t, r.P50us)
			assert.LessOrEqual(t, r.P50us, r.P90us)
			assert.LessOrEqual(t, r.P90us, r.P99us)
			assert.LessOrEqual(t, r.P99us, r.P999us)
			assert.LessOrEqual(t, r.P999us, r.MaxUs)
			// The HDR histogram keeps three significant digits.
			assert.LessOrEqual(t, r.MeanUs, r.MaxUs*1.001)
			assert.Positive(t, r.MsgsPerSec)
			// Round trips a second cannot exceed what the mean allows:
			// the total time includes every round trip and more.
			assert.LessOrEqual(t, r.MsgsPerSec, 1e6/r.MeanUs*1.01)
		})
	}
}

// Without --json, the results are a table.
func TestBenchTable(t *testing.T) {
	out := runBench(t, "thr", "ipc://"+filepath.Join(t.TempDir(), "thr"), "--count", "10000")
	lines := strings.Split(out, "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, []string{"pattern", "size", "(B)", "count", "received", "lost", "elapsed", "(s)", "msgs/s", "MB/s"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"pushpull", "64", "10000", "10000", "0"}, strings.Fields(lines[1])[:5])
}
