package zmqkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports is the matrix every pattern test body runs over.
var transports = []string{"inproc", "ipc", "tcp"}

var inprocSeq atomic.Int64

// bindEndpoint returns an endpoint to bind on transport tr: a fresh inproc
// name, an ipc path in a short temporary folder (ipc paths are limited to
// about 100 bytes), or tcp on an ephemeral loopback port.
func bindEndpoint(t testing.TB, tr string) string {
	t.Helper()
	switch tr {
	case "inproc":
		return fmt.Sprintf("inproc://test-%d", inprocSeq.Add(1))
	case "ipc":
		dir, err := os.MkdirTemp("", "zk")
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
		return "ipc://" + filepath.Join(dir, "s")
	case "tcp":
		return "tcp://127.0.0.1:*"
	}
	t.Fatalf("unknown transport %q", tr)
	return ""
}

// newTestContext returns a Context closed when the test ends, so objects a
// test forgets cannot leak into the next one.
func newTestContext(t testing.TB) *Context {
	t.Helper()
	zctx, err := NewContext()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, zctx.Close()) })
	return zctx
}

// testCtx is a context bounded so that a bug fails the test instead of
// hanging it.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// closeOnCleanup registers c.Close, checked, with the test.
func closeOnCleanup(t testing.TB, c interface{ Close() error }) {
	t.Helper()
	t.Cleanup(func() { require.NoError(t, c.Close()) })
}
