//go:build unix

package cert

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSaveUmask: Save sets the modes itself, whatever the umask. The umask
// is process-wide, so this test must not run in parallel with others.
func TestSaveUmask(t *testing.T) {
	requireCurve(t)
	for _, mask := range []int{0, 0o022, 0o077, 0o277} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		err := serverPair.Save(dir, "s")
		syscall.Umask(old)
		require.NoError(t, err, "umask %04o", mask)
		assert.Equal(t, fs.FileMode(0o644), fileMode(t, filepath.Join(dir, "s.key")), "umask %04o", mask)
		assert.Equal(t, fs.FileMode(0o600), fileMode(t, filepath.Join(dir, "s.key_secret")), "umask %04o", mask)
	}
}
