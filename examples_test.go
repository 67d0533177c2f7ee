package zmqkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every program in examples/ builds, runs by itself to the end and exits
// 0: they are documentation, and documentation must not rot.
func TestExamplesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs every example")
	}
	dirs, err := filepath.Glob("examples/*")
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	bin := t.TempDir()
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			exe := filepath.Join(bin, name)
			out, err := exec.Command("go", "build", "-o", exe, "./"+dir).CombinedOutput()
			require.NoError(t, err, "%s", out)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err = exec.CommandContext(ctx, exe).CombinedOutput()
			require.NoError(t, err, "%s", out)
			t.Logf("%s", out)
		})
	}
}
