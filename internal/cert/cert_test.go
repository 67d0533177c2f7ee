package cert

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The key pairs of libzmq's zmq_curve(7) example, which zmq_curve_public
// must agree with.
var (
	serverPair = KeyPair{Public: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", Secret: "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"}
	clientPair = KeyPair{Public: "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", Secret: "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"}
)

// requireCurve skips when libzmq has no CURVE (FromSecret and secret
// certificates need it), except under CI=true, where it fails.
func requireCurve(t testing.TB) {
	t.Helper()
	if zmq4.HasCurve() {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("libzmq has no CURVE support")
	}
	t.Skip("libzmq has no CURVE support")
}

// pythonPath is Debian's interpreter, which has python3-zmq.
const pythonPath = "/usr/bin/python3"

// requirePyzmq skips the test when pyzmq is missing, except under CI=true,
// where a missing dependency is a failure: CI must not go green by skipping.
func requirePyzmq(t testing.TB) {
	t.Helper()
	out, err := exec.Command(pythonPath, "-c", "import zmq.auth").CombinedOutput()
	if err == nil {
		return
	}
	msg := "pyzmq is not available (" + strings.TrimSpace(string(out)) + "): apt-get install python3-zmq"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// runPython runs script with args under pyzmq and decodes the JSON it
// prints into v.
func runPython(t testing.TB, v any, script string, args ...string) {
	t.Helper()
	requirePyzmq(t)
	cmd := exec.Command(pythonPath, append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "python: %s", stderr.String())
	require.NoError(t, json.Unmarshal(out, v), "python printed %q", out)
}

// writeFile writes a file with exactly mode perm and returns its path.
func writeFile(t testing.TB, dir, name, content string, perm fs.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), perm))
	require.NoError(t, os.Chmod(p, perm))
	return p
}

func fileMode(t testing.TB, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Mode().Perm()
}

// secretFile is a secret certificate laid out as pyzmq writes it: the
// public-key is on line 8 and the secret-key on line 9.
func secretFile(pub, sec string) string {
	return "#   ****  Generated on 2026-12-01 16:21:46.957864 by pyzmq  ****\n" +
		"#   ZeroMQ CURVE **Secret** Certificate\n" +
		"#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n" +
		"\n" +
		"metadata\n" +
		"    name = Alice\n" +
		"curve\n" +
		"    public-key = \"" + pub + "\"\n" +
		"    secret-key = \"" + sec + "\"\n"
}

func TestKnownPairs(t *testing.T) {
	requireCurve(t)
	for _, want := range []KeyPair{serverPair, clientPair} {
		got, err := FromSecret(want.Secret)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.NoError(t, want.Check())
	}
	err := KeyPair{Public: serverPair.Public, Secret: clientPair.Secret}.Check()
	assert.ErrorIs(t, err, ErrInvalidKey)
	assert.NotContains(t, err.Error(), clientPair.Secret)
}

func TestNewKeyPair(t *testing.T) {
	requireCurve(t)
	a, err := NewKeyPair()
	require.NoError(t, err)
	b, err := NewKeyPair()
	require.NoError(t, err)
	for _, k := range []KeyPair{a, b} {
		assert.Len(t, k.Public, KeyLen)
		assert.Len(t, k.Secret, KeyLen)
		assert.NoError(t, CheckPublicKey(k.Public))
		assert.NoError(t, CheckSecretKey(k.Secret))
		derived, err := FromSecret(k.Secret)
		require.NoError(t, err)
		assert.Equal(t, k, derived)
	}
	assert.NotEqual(t, a, b)
}

func TestCheckKey(t *testing.T) {
	valid := serverPair.Public
	for _, tc := range []struct {
		name, key string
		msg       string // in the error; "" means valid
		pubOnly   string // in the public key's error only
	}{
		{"valid", valid, "", ""},
		{"valid with #", "0000#" + strings.Repeat("0", 35), "", ""},
		{"highest group", "%nSc0" + strings.Repeat("0", 35), "", ""},
		{"empty", "", "is empty", ""},
		{"short", valid[:39], "is 39 characters, want 40", ""},
		{"long", valid + "0", "is 41 characters, want 40", ""},
		{"spaces", " " + valid[:38] + " ", "has white space around it", ""},
		{"non-ASCII", "é" + valid[2:], "is 39 characters, want 40", ""},
		{"bad character", valid[:11] + `"` + valid[12:], "at position 12", `'"'`},
		{"tilde", "~" + valid[1:], "at position 1", `'~'`},
		{"overflow", valid[:5] + "%nSc1" + valid[10:], "characters 6-10 encode a number above 2^32-1", ""},
		{"starts with #", "#" + valid[1:], "characters 1-5", ""},
		{"null", strings.Repeat("0", 40), "null key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pubErr, secErr := CheckPublicKey(tc.key), CheckSecretKey(tc.key)
			if tc.msg == "" {
				assert.NoError(t, pubErr)
				assert.NoError(t, secErr)
				return
			}
			require.Error(t, pubErr)
			require.Error(t, secErr)
			assert.ErrorIs(t, pubErr, ErrInvalidKey)
			assert.ErrorIs(t, secErr, ErrInvalidKey)
			assert.True(t, strings.HasPrefix(pubErr.Error(), "zmqkit: public key "), pubErr.Error())
			assert.True(t, strings.HasPrefix(secErr.Error(), "zmqkit: secret key "), secErr.Error())
			assert.Contains(t, pubErr.Error(), tc.msg)
			assert.Contains(t, secErr.Error(), tc.msg)
			if tc.pubOnly != "" {
				assert.Contains(t, pubErr.Error(), tc.pubOnly)
				assert.NotContains(t, secErr.Error(), tc.pubOnly)
			}
			if len(tc.key) > 1 {
				assert.NotContains(t, secErr.Error(), tc.key)
			}
		})
	}
}

func TestEncodeDecodeKey(t *testing.T) {
	for i := 0; i < 100; i++ {
		var b [32]byte
		_, err := rand.Read(b[:])
		require.NoError(t, err)
		if i == 0 {
			b = [32]byte{}
		} else if i == 1 {
			for j := range b {
				b[j] = 0xff
			}
		}
		text := EncodeKey(b)
		assert.Equal(t, zmq4.Z85encode(string(b[:])), text)
		got, err := DecodeKey(text)
		require.NoError(t, err)
		assert.Equal(t, b, got)
		assert.Equal(t, string(b[:]), zmq4.Z85decode(text))
	}
	_, err := DecodeKey(serverPair.Secret[:39] + "~")
	assert.ErrorIs(t, err, ErrInvalidKey)
	assert.NotContains(t, err.Error(), "~")
	assert.NotContains(t, err.Error(), serverPair.Secret[:39])
}

// TestMarshalLayout pins the text Save writes: pyzmq's layout and banners,
// values quoted.
func TestMarshalLayout(t *testing.T) {
	requireCurve(t)
	c := Certificate{
		Public:   serverPair.Public,
		Secret:   serverPair.Secret,
		Metadata: []Property{{"name", "Alice"}, {"motto", `say "hi" # twice`}, {"empty", ""}},
	}
	when := time.Date(2026, 12, 1, 16, 12, 0, 0, time.Local)
	pub, err := c.marshal(false, when)
	require.NoError(t, err)
	assert.Equal(t, `#   ****  Generated on 2026-12-01 16:12:00 by zmqkit  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
    name = "Alice"
    motto = 'say "hi" # twice'
    empty = ""
curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
`, string(pub))
	sec, err := c.marshal(true, when)
	require.NoError(t, err)
	assert.Equal(t, `#   ****  Generated on 2026-12-01 16:12:00 by zmqkit  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = "Alice"
    motto = 'say "hi" # twice'
    empty = ""
curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
`, string(sec))

	for _, data := range [][]byte{pub, sec} {
		got, err := Parse(data, "x")
		require.NoError(t, err)
		want := c
		if !bytes.Contains(data, []byte("secret-key")) {
			want.Secret = ""
		}
		assert.Equal(t, want, got)
	}
}

func TestMarshalRefuses(t *testing.T) {
	requireCurve(t)
	for _, tc := range []struct {
		name string
		c    Certificate
		want error
		msg  string
	}{
		{"bad public", Certificate{Public: "x"}, ErrInvalidKey, "public key is 1 character, want 40"},
		{"pair mismatch", Certificate{Public: clientPair.Public, Secret: serverPair.Secret}, ErrInvalidKey, "does not belong"},
		{"name with space", Certificate{Public: serverPair.Public, Metadata: []Property{{"full name", "x"}}}, ErrMalformed, "position 5"},
		{"empty name", Certificate{Public: serverPair.Public, Metadata: []Property{{"", "x"}}}, ErrMalformed, "name is empty"},
		{"slash name", Certificate{Public: serverPair.Public, Metadata: []Property{{"a/", "x"}}}, ErrMalformed, "'/'"},
		{"key-like name", Certificate{Public: serverPair.Public, Metadata: []Property{{"public-key2", "x"}}}, ErrMalformed, "pyzmq"},
		{"duplicate", Certificate{Public: serverPair.Public, Metadata: []Property{{"a", "x"}, {"a", "y"}}}, ErrMalformed, "duplicate"},
		{"newline", Certificate{Public: serverPair.Public, Metadata: []Property{{"a", "x\ny"}}}, ErrMalformed, "control character"},
		{"both quotes", Certificate{Public: serverPair.Public, Metadata: []Property{{"a", `"it's"`}}}, ErrMalformed, "both quote"},
		{"bad UTF-8", Certificate{Public: serverPair.Public, Metadata: []Property{{"a", "\xff"}}}, ErrMalformed, "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.MarshalSecret()
			if tc.c.Secret == "" {
				_, err = tc.c.MarshalPublic()
			}
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorContains(t, err, tc.msg)
			dir := t.TempDir()
			assert.Error(t, tc.c.Save(dir, "x"))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Empty(t, entries, "a refused Save writes nothing")
		})
	}

	// A value with both quotes is written bare when it reads back the same.
	c := Certificate{Public: serverPair.Public, Metadata: []Property{{"a", `it's "x"`}}}
	data, err := c.MarshalPublic()
	require.NoError(t, err)
	assert.Contains(t, string(data), "\n    a = it's \"x\"\n")
	got, err := Parse(data, "x")
	require.NoError(t, err)
	assert.Equal(t, c, got)
}

func TestSaveLoadRoundTrip(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	k, err := NewKeyPair()
	require.NoError(t, err)
	require.NoError(t, k.Save(dir, "server"))

	got, err := LoadKeyPair(filepath.Join(dir, "server.key_secret"))
	require.NoError(t, err)
	assert.Equal(t, k, got)
	for _, f := range []string{"server.key", "server.key_secret"} {
		pub, err := LoadPublicKey(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, k.Public, pub)
	}
	c, err := Load(filepath.Join(dir, "server.key"))
	require.NoError(t, err)
	assert.Equal(t, Certificate{Public: k.Public}, c, "a public certificate has no secret and no metadata")

	_, err = LoadKeyPair(filepath.Join(dir, "server.key"))
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "server.key: no secret-key")

	meta := Certificate{Public: k.Public, Secret: k.Secret, Metadata: []Property{{"name", "Bob"}, {"email", "bob@example.com"}}}
	require.NoError(t, meta.Save(dir, "bob"))
	for _, f := range []string{"bob.key", "bob.key_secret"} {
		c, err := Load(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, meta.Metadata, c.Metadata, f)
	}

	// A certificate without a secret saves only its public file.
	require.NoError(t, Certificate{Public: clientPair.Public}.Save(dir, "client"))
	_, err = os.Stat(filepath.Join(dir, "client.key_secret"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	pub, err := LoadPublicKey(filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	assert.Equal(t, clientPair.Public, pub)
}

func TestSaveModes(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	require.NoError(t, serverPair.Save(dir, "s"))
	assert.Equal(t, fs.FileMode(0o644), fileMode(t, filepath.Join(dir, "s.key")))
	assert.Equal(t, fs.FileMode(0o600), fileMode(t, filepath.Join(dir, "s.key_secret")))

	// Overwriting: the new files get the right modes whatever the old ones
	// had, and the new keys.
	require.NoError(t, os.Chmod(filepath.Join(dir, "s.key_secret"), 0o644))
	require.NoError(t, os.Chmod(filepath.Join(dir, "s.key"), 0o600))
	require.NoError(t, clientPair.Save(dir, "s"))
	assert.Equal(t, fs.FileMode(0o644), fileMode(t, filepath.Join(dir, "s.key")))
	assert.Equal(t, fs.FileMode(0o600), fileMode(t, filepath.Join(dir, "s.key_secret")))
	got, err := LoadKeyPair(filepath.Join(dir, "s.key_secret"))
	require.NoError(t, err)
	assert.Equal(t, clientPair, got)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"s.key", "s.key_secret"}, names, "no temporary file is left")
}

func TestSaveRefuses(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", ".hidden", "a/b", `a\b`, "a\x00b"} {
		err := serverPair.Save(dir, name)
		assert.ErrorIs(t, err, fs.ErrInvalid, "name %q", name)
	}
	err := KeyPair{Public: serverPair.Public}.Save(dir, "x")
	assert.ErrorIs(t, err, ErrInvalidKey)
	assert.ErrorContains(t, err, "secret key is empty")
	err = KeyPair{Public: clientPair.Public, Secret: serverPair.Secret}.Save(dir, "x")
	assert.ErrorIs(t, err, ErrInvalidKey)
	assert.NotContains(t, err.Error(), serverPair.Secret)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)

	err = serverPair.Save(filepath.Join(dir, "missing"), "x")
	assert.ErrorIs(t, err, fs.ErrNotExist)

	// A rename that fails leaves no temporary file behind. If it is the
	// secret certificate's, nothing is replaced.
	require.NoError(t, serverPair.Save(dir, "a"))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "b.key_secret"), 0o755))
	err = clientPair.Save(dir, "b")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, filepath.Join(dir, "b.key_secret"), e.File)
	assert.ErrorContains(t, err, "rename: ")
	// If it is the public certificate's, the error says the pair is split.
	require.NoError(t, os.Remove(filepath.Join(dir, "a.key")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "a.key"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.key", "f"), nil, 0o644))
	err = clientPair.Save(dir, "a")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, filepath.Join(dir, "a.key"), e.File)
	assert.ErrorContains(t, err, "a.key_secret was replaced, so the two files do not match")
	got, err := LoadKeyPair(filepath.Join(dir, "a.key_secret"))
	require.NoError(t, err)
	assert.Equal(t, clientPair, got, "the secret certificate is whole")

	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"a.key", "a.key_secret", "b.key_secret"}, names, "no temporary file is left")
}

func TestLoadInsecure(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	f := writeFile(t, dir, "s.key_secret", secretFile(serverPair.Public, serverPair.Secret), 0o600)
	_, err := LoadKeyPair(f)
	require.NoError(t, err)

	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o666} {
		require.NoError(t, os.Chmod(f, mode))
		_, err := LoadKeyPair(f)
		assert.ErrorIs(t, err, ErrInsecureFile, "mode %04o", mode)
		assert.ErrorContains(t, err, fmt.Sprintf("zmqkit: %s: permissions %04o are too open", f, mode))
		assert.ErrorContains(t, err, "chmod 600")
		_, err = Load(f)
		assert.ErrorIs(t, err, ErrInsecureFile)
		// Only the secret is protected: the public key may still be read.
		pub, err := LoadPublicKey(f)
		require.NoError(t, err)
		assert.Equal(t, serverPair.Public, pub)
	}
	for _, mode := range []fs.FileMode{0o400, 0o600, 0o700} {
		require.NoError(t, os.Chmod(f, mode))
		_, err := LoadKeyPair(f)
		assert.NoError(t, err, "mode %04o", mode)
	}

	// A public certificate may be world-readable.
	p := writeFile(t, dir, "p.key", "curve\n    public-key = \""+serverPair.Public+"\"\n", 0o644)
	_, err = Load(p)
	assert.NoError(t, err)
}

func TestLoadSymlinks(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	target := writeFile(t, dir, "real", secretFile(serverPair.Public, serverPair.Secret), 0o600)
	link := filepath.Join(dir, "s.key_secret")
	require.NoError(t, os.Symlink(target, link))

	got, err := LoadKeyPair(link)
	require.NoError(t, err)
	assert.Equal(t, serverPair, got)

	// The target's mode counts, not the link's (0777).
	require.NoError(t, os.Chmod(target, 0o644))
	_, err = LoadKeyPair(link)
	assert.ErrorIs(t, err, ErrInsecureFile)

	dangling := filepath.Join(dir, "d.key_secret")
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), dangling))
	_, err = LoadKeyPair(dangling)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.ErrorContains(t, err, "zmqkit: "+dangling+": ")
}

func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadPublicKey(dir)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "not a regular file")

	_, err = LoadPublicKey(filepath.Join(dir, "missing.key"))
	assert.ErrorIs(t, err, fs.ErrNotExist)

	big := writeFile(t, dir, "big.key", strings.Repeat("#\n", MaxFileSize), 0o644)
	_, err = LoadPublicKey(big)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, big+": larger than 65536 bytes")
}

// TestParseVariants covers the forms of ZPL a certificate may take.
func TestParseVariants(t *testing.T) {
	requireCurve(t)
	pub, sec := serverPair.Public, serverPair.Secret
	hashKey := "0000#" + strings.Repeat("0", 35)
	for _, tc := range []struct {
		name string
		in   string
		want Certificate
	}{
		{"pyzmq secret", secretFile(pub, sec), Certificate{pub, sec, []Property{{"name", "Alice"}}}},
		{"bare minimum", "curve\n    public-key = \"" + pub + "\"", Certificate{Public: pub}},
		{"CRLF", strings.ReplaceAll(secretFile(pub, sec), "\n", "\r\n"), Certificate{pub, sec, []Property{{"name", "Alice"}}}},
		{"CR", strings.ReplaceAll(secretFile(pub, sec), "\n", "\r"), Certificate{pub, sec, []Property{{"name", "Alice"}}}},
		{"BOM", "\uFEFF" + secretFile(pub, sec), Certificate{pub, sec, []Property{{"name", "Alice"}}}},
		{"tabs", "metadata\n\tname = Alice\ncurve\n\tpublic-key = \"" + pub + "\"\n\tsecret-key = \"" + sec + "\"\n",
			Certificate{pub, sec, []Property{{"name", "Alice"}}}},
		{"two spaces", "curve\n  public-key = \"" + pub + "\"\n  secret-key = \"" + sec + "\"\n", Certificate{Public: pub, Secret: sec}},
		{"single quotes", "curve\n    public-key = '" + pub + "'\n", Certificate{Public: pub}},
		{"unquoted", "curve\n    public-key = " + pub + "\n    secret-key=" + sec + "\n", Certificate{Public: pub, Secret: sec}},
		{"unquoted with #", "curve\n    public-key = " + hashKey + "   # a comment\n", Certificate{Public: hashKey}},
		{"quoted with #", "curve\n    public-key = \"" + hashKey + "\"# a comment\n", Certificate{Public: hashKey}},
		{"comments everywhere", "# top\n\n    # indented comment\ncurve   # the keys\n    # between\n\n    public-key = \"" + pub + "\"  # trailing\n",
			Certificate{Public: pub}},
		{"trailing white space", "curve \t\n    public-key = \"" + pub + "\" \t\n", Certificate{Public: pub}},
		{"sections in any order", "curve\n    public-key = \"" + pub + "\"\nmetadata\n    a = 1\n", Certificate{pub, "", []Property{{"a", "1"}}}},
		{"other sections and levels", "context\n    verbose = 1\n    deep\n        public = no\ncurve = yes\n    public-key = \"" + pub + "\"\n        child = ignored\n    other = ignored\nmetadata\n    a = 1\n        b = 2\n    c\n",
			Certificate{pub, "", []Property{{"a", "1"}, {"c", ""}}}},
		{"metadata values", "metadata\n    q = \"a # b\"\n    s = 'it' # c\n    s2 = 'it''\n    bare = x # comment\n    open = \"unclosed\n    both = \"a\" b\n    hash = a#b\n    utf8 = Zoë\ncurve\n    public-key = \"" + pub + "\"\n",
			Certificate{pub, "", []Property{{"q", "a # b"}, {"s", "it"}, {"s2", "'it''"}, {"bare", "x"}, {"open", `"unclosed`}, {"both", `"a" b`}, {"hash", "a#b"}, {"utf8", "Zoë"}}}},
		{"names", "metadata\n    a$-_@.&+/b = 1\ncurve\n    public-key = \"" + pub + "\"\n", Certificate{pub, "", []Property{{"a$-_@.&+/b", "1"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), "x")
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestParseErrors: a malformed certificate is refused with the file, the
// line and what is wrong, and nothing of the secret key.
func TestParseErrors(t *testing.T) {
	requireCurve(t)
	pub, sec := serverPair.Public, serverPair.Secret
	curve := func(lines ...string) string { return "curve\n" + strings.Join(lines, "\n") + "\n" }
	pk := `    public-key = "` + pub + `"`
	for _, tc := range []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"short secret", secretFile(pub, sec[:39]), 9, "secret-key is 39 characters, want 40"},
		{"long public", secretFile(pub+"0", sec), 8, "public-key is 41 characters, want 40"},
		{"bad public character", secretFile(pub[:3]+"~"+pub[4:], sec), 8, `public-key has '~' at position 4`},
		{"bad secret character", secretFile(pub, sec[:3]+"~"+sec[4:]), 9, "secret-key has a character at position 4 that is not in the Z85 alphabet"},
		{"overflow", secretFile(pub, sec[:35]+"%nSc1"), 9, "secret-key does not decode: characters 36-40"},
		{"null public", curve(`    public-key = "` + strings.Repeat("0", 40) + `"`), 2, "public-key is a null key"},
		{"mismatch", secretFile(clientPair.Public, sec), 9, "secret-key does not belong to the public-key on line 8"},
		{"white space in quotes", curve(`    public-key = " ` + pub + ` "`), 2, "public-key has white space around it"},
		{"empty key", curve(`    public-key = ""`), 2, "public-key is empty"},
		{"no value", curve("    public-key"), 2, "public-key has no value"},
		{"unclosed quote", curve(`    public-key = "` + pub), 2, "public-key has an unclosed quote"},
		{"text after quote", curve(`    public-key = "` + pub + `" x`), 2, "text after its closing quote"},
		{"mismatched quotes", curve(`    secret-key = '`+sec+`"`, pk), 2, "secret-key has an unclosed quote"},
		{"no public-key", "metadata\ncurve\n", 0, "no public-key in a curve section"},
		{"empty file", "", 0, "no public-key"},
		{"secret only", curve(`    secret-key = "` + sec + `"`), 0, "no public-key"},
		{"top-level key", "public-key = \"" + pub + "\"\n", 1, "public-key must be one level inside the top-level curve section"},
		{"key in metadata", "metadata\n" + pk + "\n", 2, "public-key must be one level inside"},
		{"key too deep", "curve\n    keys\n    " + pk + "\n", 3, "public-key must be one level inside"},
		{"key in other section", "Curve\n" + pk + "\n", 2, "must be one level inside"},
		{"key-like name", curve(pk, `    public-key-old = "`+clientPair.Public+`"`), 3, `a name that begins with "public-key" but is longer (column 5)`},
		{"lost separator", curve(pk, `    secret-keyQWERTYuiop1234`), 3, `a name that begins with "secret-key" but is longer`},
		{"key-like metadata", "metadata\n    secret-keys = 1\n" + curve(pk), 2, `begins with "secret-key"`},
		{"duplicate public-key", curve(pk, pk), 3, "duplicate public-key (first on line 2)"},
		{"duplicate in two sections", curve(pk) + curve(pk), 4, "duplicate public-key (first on line 2)"},
		{"duplicate metadata", "metadata\n    a = 1\n    b = 2\n    a = 3\n" + curve(pk), 4, `duplicate metadata name "a" (first on line 2)`},
		{"missing equals", curve(`    public-key "` + pub + `"`), 2, "expected '=' or the end of the line after the name, at column 16"},
		{"no name", curve(pk, `    "`+sec+`"`), 3, "expected a name at column 5"},
		{"colon", curve(`    public-key: "` + pub + `"`), 2, "expected '='"},
		{"slash name", "metadata\n    /a = 1\n" + curve(pk), 2, "must not begin or end with '/'"},
		{"indented first line", "    curve\n" + pk + "\n", 1, "indentation matches no enclosing level"},
		{"inconsistent indentation", "metadata\n    a = 1\n  b = 2\n" + curve(pk), 3, "indentation matches no enclosing level"},
		{"tab after spaces", "metadata\n    a = 1\n\tb = 2\n" + curve(pk), 3, "indentation matches no enclosing level"},
		{"NUL", curve(pk, "    a = \x00"), 3, "control character at column 9"},
		{"escape", "metadata\n    a = \x1b[31m\n" + curve(pk), 2, "control character"},
		{"bad UTF-8", "metadata\n    a = \xff\n" + curve(pk), 2, "not valid UTF-8"},
		{"too large", curve(pk) + strings.Repeat("#", MaxFileSize), 0, "larger than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := "/certs/x.key_secret"
			_, err := Parse([]byte(tc.in), file)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrMalformed)
			prefix := "zmqkit: " + file + ": "
			if tc.line > 0 {
				prefix = fmt.Sprintf("zmqkit: %s:%d: ", file, tc.line)
			}
			assert.Equal(t, prefix, err.Error()[:min(len(prefix), len(err.Error()))], "error: %v", err)
			assert.Contains(t, err.Error(), tc.msg)
			var e *Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, tc.line, e.Line)
			assert.Equal(t, file, e.File)
			for _, s := range []string{sec, sec[:39], sec[:35], "QWERTY"} {
				assert.NotContains(t, err.Error(), s, "the secret key leaks into the error")
			}
			// The same file on disk gives the same error, with its path.
			dir := t.TempDir()
			path := writeFile(t, dir, "x.key_secret", tc.in, 0o600)
			_, err = Load(path)
			assert.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), strings.Replace(prefix, file, path, 1))
		})
	}
}

// TestParseKeyErrorsMatchInvalidKey: a bad key in a file is both.
func TestParseKeyErrorsMatchInvalidKey(t *testing.T) {
	_, err := Parse([]byte(secretFile(serverPair.Public, "x")), "f")
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorIs(t, err, ErrInvalidKey)
	_, err = Parse([]byte("curve\n  a = 1\n  b\n   c\n"), "f")
	assert.ErrorIs(t, err, ErrMalformed)
	assert.NotErrorIs(t, err, ErrInvalidKey)
}

// TestCZMQCertificate: a certificate as CZMQ's zcert_save writes it
// (zconfig_save: root comments, a blank line, every value double-quoted,
// metadata in both files, "by CZMQ" and a seconds-only time).
func TestCZMQCertificate(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	const meta = "metadata\n" +
		"    name = \"Steve Ballmer\"\n" +
		"    email = \"steve@example.com\"\n" +
		"    note = \"likes # and = and 'quotes'\"\n"
	pubFile := writeFile(t, dir, "steve.key", "#   ****  Generated on 2026-04-15 11:47:48 by CZMQ  ****\n"+
		"#   ZeroMQ CURVE Public Certificate\n"+
		"#   Exchange securely, or use a secure mechanism to verify the contents\n"+
		"#   of this file after exchange. Store public certificates in your home\n"+
		"#   directory, in the .curve subdirectory.\n"+
		"\n"+meta+
		"curve\n"+
		"    public-key = \""+clientPair.Public+"\"\n", 0o644)
	secFile := writeFile(t, dir, "steve.key_secret", "#   ****  Generated on 2026-04-15 11:47:48 by CZMQ  ****\n"+
		"#   ZeroMQ CURVE **Secret** Certificate\n"+
		"#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"+
		"\n"+meta+
		"curve\n"+
		"    public-key = \""+clientPair.Public+"\"\n"+
		"    secret-key = \""+clientPair.Secret+"\"\n", 0o600)
	wantMeta := []Property{{"name", "Steve Ballmer"}, {"email", "steve@example.com"}, {"note", "likes # and = and 'quotes'"}}

	c, err := Load(pubFile)
	require.NoError(t, err)
	assert.Equal(t, Certificate{Public: clientPair.Public, Metadata: wantMeta}, c)
	c, err = Load(secFile)
	require.NoError(t, err)
	assert.Equal(t, Certificate{Public: clientPair.Public, Secret: clientPair.Secret, Metadata: wantMeta}, c)
	keys, err := LoadPublicKeys(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{clientPair.Public}, keys)
}

func TestLoadPublicKeys(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	a, err := NewKeyPair()
	require.NoError(t, err)
	require.NoError(t, a.Save(dir, "b-alice"))
	require.NoError(t, serverPair.Save(dir, "a-server"))
	require.NoError(t, clientPair.Save(dir, "c-client"))
	// A copy under another name counts once.
	data, err := os.ReadFile(filepath.Join(dir, "a-server.key"))
	require.NoError(t, err)
	writeFile(t, dir, "d-copy.key", string(data), 0o644)
	// Not read: hidden files, other suffixes, subdirectories.
	writeFile(t, dir, ".hidden.key", "garbage", 0o644)
	writeFile(t, dir, "notes.txt", "garbage", 0o644)
	writeFile(t, dir, "x.key.bak", "garbage", 0o644)
	writeFile(t, dir, "x.key_secret", "garbage", 0o600)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	writeFile(t, filepath.Join(dir, "sub"), "y.key", "garbage", 0o644)
	// A symbolic link is followed.
	other := t.TempDir()
	e, err := NewKeyPair()
	require.NoError(t, err)
	require.NoError(t, e.Save(other, "e"))
	require.NoError(t, os.Symlink(filepath.Join(other, "e.key"), filepath.Join(dir, "e-link.key")))

	keys, err := LoadPublicKeys(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{serverPair.Public, a.Public, clientPair.Public, e.Public}, keys)

	// One bad certificate fails the whole directory, naming the file.
	bad := writeFile(t, dir, "f-bad.key", "curve\n    public-key = \"short\"\n", 0o644)
	keys, err = LoadPublicKeys(dir)
	assert.Nil(t, keys)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "zmqkit: "+bad+":2: public-key is 5 characters, want 40")
	require.NoError(t, os.Remove(bad))

	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "g-dangling.key")))
	_, err = LoadPublicKeys(dir)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.ErrorContains(t, err, "g-dangling.key")
	require.NoError(t, os.Remove(filepath.Join(dir, "g-dangling.key")))

	require.NoError(t, os.Mkdir(filepath.Join(dir, "h-dir.key"), 0o755))
	_, err = LoadPublicKeys(dir)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorContains(t, err, "h-dir.key: not a regular file")
}

func TestLoadPublicKeysEmpty(t *testing.T) {
	dir := t.TempDir()
	keys, err := LoadPublicKeys(dir)
	assert.Nil(t, keys)
	assert.ErrorIs(t, err, ErrNoCertificates)
	assert.EqualError(t, err, "zmqkit: "+dir+": no certificates (*.key files)")

	writeFile(t, dir, "s.key_secret", secretFile(serverPair.Public, serverPair.Secret), 0o600)
	_, err = LoadPublicKeys(dir)
	assert.ErrorIs(t, err, ErrNoCertificates)
	assert.ErrorContains(t, err, "the *.key_secret file is not read")

	_, err = LoadPublicKeys(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.ErrorContains(t, err, "zmqkit: "+filepath.Join(dir, "missing")+": open: no such file or directory")
}

// pyKeys is what the pyzmq scripts report, keys as text.
type pyKeys struct {
	Certs map[string][2]*string `json:"certs"` // file -> load_certificate
	All   []string              `json:"all"`   // load_certificates(dir)
}

// pyLoad prints what pyzmq's loaders read from the certificates in a
// directory: load_certificate for each file named, load_certificates for
// the directory.
const pyLoad = `
import json, os, sys
import zmq.auth
d = sys.argv[1]
s = lambda b: None if b is None else b.decode()
certs = {f: [s(k) for k in zmq.auth.load_certificate(os.path.join(d, f))] for f in sys.argv[2:]}
print(json.dumps({"certs": certs, "all": sorted(k.decode() for k in zmq.auth.load_certificates(d))}))
`

// TestPyzmqCertificates: what pyzmq's create_certificates writes loads
// here with the keys pyzmq's load_certificate reads from it.
func TestPyzmqCertificates(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	var made pyKeys
	runPython(t, &made, `
import json, os, sys
import zmq.auth
os.umask(0o022)
d = sys.argv[1]
zmq.auth.create_certificates(d, "server")
zmq.auth.create_certificates(d, "client")
zmq.auth.create_certificates(d, "meta", metadata={"name": "Alice", "email": "alice@example.com", "note": "a # b"})
files = [n + e for n in ("server", "client", "meta") for e in (".key", ".key_secret")]
s = lambda b: None if b is None else b.decode()
certs = {f: [s(k) for k in zmq.auth.load_certificate(os.path.join(d, f))] for f in files}
print(json.dumps({"certs": certs, "all": sorted(k.decode() for k in zmq.auth.load_certificates(d))}))
`, dir)
	require.Len(t, made.Certs, 6)

	for file, keys := range made.Certs {
		path := filepath.Join(dir, file)
		pub, err := LoadPublicKey(path)
		require.NoError(t, err, file)
		assert.Equal(t, *keys[0], pub, file)
		if !strings.HasSuffix(file, SecretSuffix) {
			assert.Nil(t, keys[1])
			continue
		}
		// pyzmq creates the secret file with the umask's mode (0644
		// here), which LoadKeyPair refuses until it is made private.
		assert.Equal(t, fs.FileMode(0o644), fileMode(t, path))
		_, err = LoadKeyPair(path)
		assert.ErrorIs(t, err, ErrInsecureFile)
		require.NoError(t, os.Chmod(path, 0o600))
		k, err := LoadKeyPair(path)
		require.NoError(t, err, file)
		assert.Equal(t, KeyPair{Public: *keys[0], Secret: *keys[1]}, k, file)
	}

	c, err := Load(filepath.Join(dir, "meta.key_secret"))
	require.NoError(t, err)
	// pyzmq writes metadata unquoted, so "a # b" reads back as "a", as in
	// CZMQ; and only into the secret file.
	assert.Equal(t, []Property{{"name", "Alice"}, {"email", "alice@example.com"}, {"note", "a"}}, c.Metadata)
	c, err = Load(filepath.Join(dir, "meta.key"))
	require.NoError(t, err)
	assert.Empty(t, c.Metadata)

	keys, err := LoadPublicKeys(dir)
	require.NoError(t, err)
	sort.Strings(keys)
	assert.Equal(t, made.All, keys)
	assert.Len(t, keys, 3)
}

// TestPyzmqReadsSaved: what Save writes, pyzmq's load_certificate and
// load_certificates read with the same keys.
func TestPyzmqReadsSaved(t *testing.T) {
	requireCurve(t)
	dir := t.TempDir()
	k, err := NewKeyPair()
	require.NoError(t, err)
	require.NoError(t, k.Save(dir, "alice"))
	require.NoError(t, serverPair.Save(dir, "server"))
	meta := Certificate{Public: clientPair.Public, Secret: clientPair.Secret,
		Metadata: []Property{{"name", "Bob"}, {"motto", `say "hi" # = ok`}, {"x", `it's "both"`}}}
	require.NoError(t, meta.Save(dir, "bob"))

	files := []string{"alice.key", "alice.key_secret", "server.key", "server.key_secret", "bob.key", "bob.key_secret"}
	var got pyKeys
	runPython(t, &got, pyLoad, append([]string{dir}, files...)...)
	want := map[string]KeyPair{"alice": k, "server": serverPair, "bob": meta.KeyPair()}
	for _, f := range files {
		name, secret := strings.CutSuffix(f, SecretSuffix)
		name = strings.TrimSuffix(name, PublicSuffix)
		keys := got.Certs[f]
		require.NotNil(t, keys[0], f)
		assert.Equal(t, want[name].Public, *keys[0], f)
		if secret {
			require.NotNil(t, keys[1], f)
			assert.Equal(t, want[name].Secret, *keys[1], f)
		} else {
			assert.Nil(t, keys[1], f)
		}
	}
	all := []string{k.Public, serverPair.Public, clientPair.Public}
	sort.Strings(all)
	assert.Equal(t, all, got.All)
}

// FuzzParse: Parse never panics, and what it accepts has valid keys that
// belong together and survives a write and a read.
func FuzzParse(f *testing.F) {
	pub, sec := serverPair.Public, serverPair.Secret
	f.Add([]byte(secretFile(pub, sec)))
	f.Add([]byte(strings.ReplaceAll(secretFile(pub, sec), "\n", "\r\n")))
	f.Add([]byte("curve\n\tpublic-key = " + pub + " # c\nmetadata\n\ta = 'b'\n\t\tc = d\n"))
	f.Add([]byte("metadata\n    q = \"a # b\"\n    open = \"x\ncurve\n    public-key = '" + clientPair.Public + "'\n"))
	f.Add([]byte("curve\n    public-key = \"" + pub + "\"\n    public-key-old = \"x\"\n"))
	f.Add([]byte("curve\n  public-key = \"" + pub + "\"\n  secret-key = \"" + clientPair.Secret + "\"\n"))
	f.Add([]byte("\uFEFFcurve\r    public-key=\"0000#00000000000000000000000000000000000\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCurve) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if e.Line < 0 || e.Line > bytes.Count(data, []byte("\n"))+bytes.Count(data, []byte("\r"))+1 {
				t.Fatalf("error %v: line out of range", err)
			}
			return
		}
		if err := CheckPublicKey(c.Public); err != nil {
			t.Fatalf("accepted an invalid public key: %v", err)
		}
		if c.Secret != "" {
			if err := c.KeyPair().Check(); err != nil {
				t.Fatalf("accepted an invalid key pair: %v", err)
			}
		}
		when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for _, secret := range []bool{false, true} {
			if secret && c.Secret == "" {
				continue
			}
			out, err := c.marshal(secret, when)
			if err != nil {
				t.Fatalf("cannot write what was read: %v", err)
			}
			back, err := Parse(out, "again")
			if err != nil {
				t.Fatalf("cannot read what was written: %v\n%s", err, out)
			}
			want := c
			if !secret {
				want.Secret = ""
			}
			if fmt.Sprint(back) != fmt.Sprint(want) {
				t.Fatalf("round trip changed %+v into %+v", want, back)
			}
		}
	})
}
