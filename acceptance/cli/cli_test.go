package clisuite

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var subcommands = [][]string{
	{"sub"}, {"pub"}, {"req"}, {"rep"}, {"push"}, {"pull"}, {"pair"}, {"proxy"},
	{"keygen"}, {"bench"}, {"bench", "thr"}, {"bench", "lat"}, {"version"},
}

// Every subcommand's -h: usage and two or three examples, status 0.
func TestHelpHasExamples(t *testing.T) {
	exRx := regexp.MustCompile(`(?m)^\s+(\S+ \| )?(seq \S+ \| |printf .* \| |echo .* \| |tail .* \| )?zmqkit `)
	for _, sc := range subcommands {
		t.Run(strings.Join(sc, "_"), func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				out, errs, code := run(t, opts{}, append(append([]string{}, sc...), h)...)
				require.Equal(t, 0, code, errs)
				assert.Contains(t, out, "Usage:\n  zmqkit "+sc[0])
				i := strings.Index(out, "Examples:\n")
				require.GreaterOrEqual(t, i, 0, "no Examples section in %s %s:\n%s", sc, h, out)
				ex := out[i:]
				if j := strings.Index(ex, "\n\n"); j > 0 {
					ex = ex[:j]
				}
				n := 0
				for _, l := range strings.Split(ex, "\n")[1:] {
					if strings.TrimSpace(l) != "" {
						n++
					}
				}
				assert.GreaterOrEqual(t, len(exRx.FindAllString(ex, -1)), 1, "a zmqkit example:\n%s", ex)
				assert.GreaterOrEqual(t, n, 2, "at least two examples:\n%s", ex)
			}
		})
	}
	out, _, code := run(t, opts{}, "help")
	assert.Equal(t, 0, code)
	for _, sc := range subcommands {
		assert.Contains(t, out, "\n  "+sc[0]+" ", "zmqkit help lists %s", sc[0])
	}
}

// Bad usage: status 2, the usage on stderr, nothing on stdout.
func TestBadUsageExits2(t *testing.T) {
	cases := [][]string{
		{"sub", "--bogus", "tcp://127.0.0.1:5555"},
		{"sub"}, // missing ENDPOINTS
		{"pub", localAny, "--count", "many"},
		{"req", "tcp://127.0.0.1:5555", "--timeout", "soon"},
		{"rep", localAny, "--concurrency", "x"},
		{"push", "--rate", "fast", localAny},
		{"pull", "tcp://127.0.0.1:5555", "--count", "-x"},
		{"pair"},
		{"proxy", "relay", localAny, localAny},
		{"proxy", "queue", localAny},
		{"keygen"},
		{"bench", "thr"}, // neither --bind nor --connect
		{"bench", "thr", "--bind", localAny, "--pattern", "carrier-pigeon"},
		{"bench", "fast", "--bind", localAny},
		{"sub", "tcp://127.0.0.1:5555", "--msgid", "abc"},
		{"nosuchcommand"},
		{"sub", "bogus://x"}, // an endpoint that is not one
		{"version", "--bogus"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errs, code := run(t, opts{}, args...)
			assert.Equal(t, 2, code, "status for bad usage; stderr %q", errs)
			assert.Empty(t, out, "stdout")
			assert.Contains(t, errs, "Usage:", "usage on stderr")
		})
	}
}

// Runtime failures: status 1 with one line on stderr.
func TestRuntimeFailureExits1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	busy := "tcp://" + l.Addr().String()
	d := t.TempDir()
	cases := map[string][]string{
		"bind a port in use":            {"pub", busy, "hello"},
		"rep on a port in use":          {"rep", busy},
		"pull bind on a port in use":    {"pull", "@" + busy},
		"proxy on a port in use":        {"proxy", "streamer", busy, localAny},
		"bench on a port in use":        {"bench", "thr", "--bind", busy},
		"missing curve key file":        {"sub", "tcp://127.0.0.1:5555", "--curve-client-key", filepath.Join(d, "none.key_secret"), "--curve-server-key", filepath.Join(d, "none.key")},
		"missing curve allow dir":       {"rep", localAny, "--curve-server-key", filepath.Join(d, "none.key_secret"), "--curve-allow", filepath.Join(d, "nodir")},
		"request to nobody":             {"req", "tcp://127.0.0.1:1", "--timeout", "200ms", "hello"},
		"keygen into a file, not a dir": {"keygen", "x", "--dir", filepath.Join(d, "afile")},
	}
	require.NoError(t, os.WriteFile(filepath.Join(d, "afile"), []byte("x"), 0o644))
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			out, errs, code := run(t, opts{}, args...)
			assert.Equal(t, 1, code, "status; stderr %q", errs)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errs, "\n"), "one line on stderr: %q", errs)
			assert.True(t, strings.HasPrefix(errs, "zmqkit "), "stderr names the command: %q", errs)
		})
	}
}

func TestVersion(t *testing.T) {
	out, errs, code := run(t, opts{}, "version")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^zmqkit \S+ .*go1\.\d+\S* \w+/\w+ libzmq \d+\.\d+\.\d+ \((CURVE|no CURVE)\)\n$`, out)
}

// --events prints "event KIND ENDPOINT [peer ADDR][: REASON]" lines; -v prints slog records.
func TestEventsAndVerbose(t *testing.T) {
	rep := zk(t, opts{}, "rep", localAny, "--events", "-v")
	ep := rep.bound(0)
	rep.waitStderr(`^event listening tcp://127\.0\.0\.1:\d+$`)
	_, errs, code := run(t, opts{}, "req", ep, "x")
	require.Equal(t, 0, code, errs)
	rep.waitStderr(`^event accepted tcp://\S+ peer 127\.0\.0\.1:\d+$`)
	rep.waitStderr(`^event disconnected tcp://\S+ peer 127\.0\.0\.1:\d+`)
	rep.waitStderr(`level=(DEBUG|INFO)`)
	assert.Equal(t, 0, rep.interrupt())
	assert.Empty(t, rep.stdout(), "stdout carries only messages and results")
}

// The common flags are accepted on every messaging command.
func TestCommonFlags(t *testing.T) {
	common := []string{"--heartbeat", "100ms", "--heartbeat-timeout", "1s", "--sndhwm", "10", "--linger", "100ms"}
	rep := zk(t, opts{}, append([]string{"rep", localAny, "--rcvhwm", "5"}, common...)...)
	out, errs, code := run(t, opts{}, append([]string{"req", rep.bound(0), "hb", "--rcvhwm", "5"}, common...)...)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "hb\n", out)
}
