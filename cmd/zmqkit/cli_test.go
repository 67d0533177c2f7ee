package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"sub", "pub", "req", "rep", "push", "pull", "pair", "proxy", "keygen", "bench", "version"} {
		code, out, _ := runCmd(t, "", sub, "-h")
		assert.Equal(t, 0, code, sub)
		assert.Contains(t, out, "Usage:", sub)
		assert.Contains(t, out, "Examples:", sub)
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"sub"},
		{"sub", "tcp://127.0.0.1:5555", "--bogus"},
		{"sub", "tcp://127.0.0.1:5555", "--count", "x"},
		{"sub", "tcp://127.0.0.1:5555", "--msgid", "-1"},
		{"sub", "nonsense"},
		{"sub", "tcp://127.0.0.1:5555", "--encoding", "klingon"},
		{"sub", "tcp://127.0.0.1:5555", "--curve-client-key", "x.key_secret"},
		{"pub", "tcp://127.0.0.1:*", "--curve-server-key", "x.key_secret"},
		{"pub", "tcp://127.0.0.1:*", "--json", "not json"},
		{"req", "tcp://127.0.0.1:5555", "--timeout", "0s"},
		{"rep", "tcp://127.0.0.1:*", "--echo", "--exec", "tr", "a-z", "A-Z"},
		{"rep", "tcp://127.0.0.1:*", "--exec"},
		{"bench", "thr"},
		{"bench", "lat", "--connect", "tcp://127.0.0.1:5555", "--pattern", "pushpull"},
		{"proxy", "relay", "tcp://*:1", "tcp://*:2"},
		{"proxy", "queue", "tcp://127.0.0.1:*"},
		{"proxy", "queue", "tcp://127.0.0.1:*", "bogus"},
		{"proxy", "streamer", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "--curve-server-key", "x.key_secret"},
		{"pub", "tcp://127.0.0.1:*", "--wait-subscribers", "-1", "hi"},
		{"keygen"},
	} {
		code, out, errText := runCmd(t, "", args...)
		assert.Equal(t, 2, code, "%q: %s", args, errText)
		assert.Empty(t, out, "%q", args)
		assert.Contains(t, errText, "Usage:", "%q", args)
	}
}

func TestRequestToNobodyTimesOut(t *testing.T) {
	ep := "ipc://" + filepath.Join(t.TempDir(), "nobody")
	start := time.Now()
	code, out, errText := runCmd(t, "", "req", ep, "--timeout", "200ms", "hello")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Less(t, time.Since(start), 5*time.Second)
	lines := strings.Split(strings.TrimSuffix(errText, "\n"), "\n")
	require.Len(t, lines, 1, "%q", errText)
	assert.Equal(t, "zmqkit req: no reply from "+ep+" within 200ms", lines[0])
}

func TestSubEndsOnSIGINT(t *testing.T) {
	sub := start(t, "sub", "@tcp://127.0.0.1:*")
	sub.bound(1) // reported once its signal handler is in place
	sub.interrupt()
	code, rest := sub.wait() // its time-out is the bound: no timing threshold here
	assert.Equal(t, 0, code, "%q", sub.errLines())
	assert.Empty(t, rest)
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "", "version")
	require.Equal(t, 0, code)
	assert.Regexp(t, `^zmqkit \S+.* go1\.\d+.* libzmq \d+\.\d+\.\d+ \((no )?CURVE\)\n$`, out)
}

// The command's libraries (cobra, the HDR histogram, the progress bar)
// must never reach the library package's imports.
func TestLibraryDoesNotImportCommandDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/zmqkit/zmqkit").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range []string{"github.com/spf13/", "github.com/HdrHistogram/", "github.com/schollz/", "golang.org/x/term"} {
		assert.NotContains(t, string(out), dep)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errText := runCmd(t, "", "keygen", "server", "--dir", filepath.Join(dir, "certs"))
	require.Equal(t, 0, code, errText)
	assert.Len(t, strings.TrimSpace(out), 40, "a Z85 public key")
	for file, mode := range map[string]os.FileMode{"server.key": 0o644, "server.key_secret": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, "certs", file))
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), file)
	}
	code, _, errText = runCmd(t, "", "keygen", "server", "--dir", filepath.Join(dir, "certs"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errText, "exists")
	code, _, errText = runCmd(t, "", "keygen", "server", "--dir", filepath.Join(dir, "certs"), "--force")
	assert.Equal(t, 0, code, errText)
}
