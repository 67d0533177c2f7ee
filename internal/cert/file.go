package cert

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// File name suffixes of the two certificates of a pair, as pyzmq and CZMQ
// name them.
const (
	PublicSuffix = ".key"
	SecretSuffix = ".key_secret"
)

// Load reads one certificate file. A certificate that holds a secret key
// must not be accessible by group or others: Load then fails with
// ErrInsecureFile, as ssh does for private keys (except on Windows, which
// has no such mode bits). Symbolic links are followed and the mode checked
// is the target's. Errors are *Error values
// naming the file (and line); see Parse for what is refused.
func Load(file string) (Certificate, error) {
	c, mode, err := load(file)
	if err != nil {
		return Certificate{}, err
	}
	if c.Secret != "" {
		if err := checkPrivate(file, mode); err != nil {
			return Certificate{}, err
		}
	}
	return c, nil
}

// LoadKeyPair reads a secret certificate (a <name>.key_secret file), which
// must hold both keys and must not be accessible by group or others. A
// certificate without a secret key fails with ErrMalformed.
func LoadKeyPair(file string) (KeyPair, error) {
	c, err := Load(file)
	if err != nil {
		return KeyPair{}, err
	}
	if c.Secret == "" {
		return KeyPair{}, &Error{File: file, Msg: "no secret-key in the curve section (is this a public certificate?)", Err: ErrMalformed}
	}
	return c.KeyPair(), nil
}

// LoadPublicKey returns the public key of a certificate file, public or
// secret. The file's mode is not checked, as the secret is not used; a
// secret key in the file is still validated against the public one.
func LoadPublicKey(file string) (string, error) {
	c, _, err := load(file)
	if err != nil {
		return "", err
	}
	return c.Public, nil
}

// LoadPublicKeys returns the public keys of the certificates in dir, for a
// CURVE allow-list. Like pyzmq's load_certificates it reads the files whose
// names end in ".key" (not ".key_secret", not in subdirectories, not hidden
// ones: the glob "*.key"), following symbolic links. The keys come in file
// name order, each once.
//
// It fails closed: one file that cannot be read or parsed fails the whole
// call with that file's error, so an allow-list is never silently partial.
// A directory without a *.key file fails with ErrNoCertificates, because a
// mistaken path would otherwise give an empty allow-list that locks every
// client out without saying why; a caller that wants to start empty can
// test for it with errors.Is.
func LoadPublicKeys(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, ioError(dir, err)
	}
	keys := []string{}
	seen := make(map[string]bool)
	files, secrets := 0, 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if strings.HasSuffix(name, SecretSuffix) {
			secrets++
		}
		if !strings.HasSuffix(name, PublicSuffix) {
			continue
		}
		files++
		pub, err := LoadPublicKey(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if !seen[pub] {
			seen[pub] = true
			keys = append(keys, pub)
		}
	}
	if files == 0 {
		msg := "no certificates (*" + PublicSuffix + " files)"
		switch {
		case secrets == 1:
			msg += "; the *" + SecretSuffix + " file is not read: an allow-list is made of public certificates"
		case secrets > 1:
			msg += fmt.Sprintf("; the %d *%s files are not read: an allow-list is made of public certificates", secrets, SecretSuffix)
		}
		return nil, &Error{File: dir, Msg: msg, Err: ErrNoCertificates}
	}
	return keys, nil
}

// load reads and parses a certificate file and returns its mode too.
func load(file string) (Certificate, fs.FileMode, error) {
	data, mode, err := readFile(file)
	if err != nil {
		return Certificate{}, 0, err
	}
	c, err := Parse(data, file)
	if err != nil {
		return Certificate{}, 0, err
	}
	return c, mode, nil
}

// readFile reads at most MaxFileSize+1 bytes of a regular file (after
// symbolic links), and returns the mode of the file it opened.
func readFile(file string) ([]byte, fs.FileMode, error) {
	// Stat before opening, and open non-blocking, because opening a FIFO
	// would wait for a writer.
	st, err := os.Stat(file)
	if err != nil {
		return nil, 0, ioError(file, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, notRegular(file, st.Mode())
	}
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, ioError(file, err)
	}
	defer f.Close() // read-only: nothing to lose on close
	if st, err = f.Stat(); err != nil {
		return nil, 0, ioError(file, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, notRegular(file, st.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, 0, ioError(file, err)
	}
	return data, st.Mode(), nil
}

func notRegular(file string, mode fs.FileMode) error {
	return &Error{File: file, Msg: fmt.Sprintf("not a regular file (mode %s)", mode), Err: ErrMalformed}
}

// checkPrivate refuses a secret certificate that group or others may
// access. Windows has no such mode bits to check.
func checkPrivate(file string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return &Error{
		File: file,
		Msg:  fmt.Sprintf("permissions %04o are too open; a secret certificate must not be accessible by group or others (chmod 600)", mode.Perm()),
		Err:  ErrInsecureFile,
	}
}

// ioError wraps a failed file system call, keeping it in the chain for
// errors.Is(err, fs.ErrNotExist) and the like.
func ioError(file string, err error) *Error {
	msg := err.Error()
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) {
		msg = pe.Op + ": " + pe.Err.Error() // the Error names the file already
	} else if errors.As(err, &le) {
		msg = le.Op + ": " + le.Err.Error()
	}
	return &Error{File: file, Msg: msg, Err: err}
}

// Save writes k as a certificate pair in dir: <name>.key, the public
// certificate, with mode 0644, and <name>.key_secret, the secret one, with
// mode 0600. See Certificate.Save.
func (k KeyPair) Save(dir, name string) error {
	if err := CheckSecretKey(k.Secret); err != nil {
		return err
	}
	return Certificate{Public: k.Public, Secret: k.Secret}.Save(dir, name)
}

// Save writes c in dir as <name>.key (the public certificate, mode 0644)
// and, if c has a secret key, <name>.key_secret (mode 0600), in the format
// of MarshalPublic and MarshalSecret. name is a file name without a
// directory or a leading dot. dir must exist.
//
// Each file is written to a hidden temporary file in dir, created with mode
// 0600 (the public one is then made 0644, whatever the umask), synced, and
// renamed over its final name, secret certificate first, after both are
// written; then dir is synced. So a reader sees the old file or the new one,
// never a partial one, and a failure (or a crash) before the renames leaves
// the old pair in place; only one between the two renames leaves a new
// secret certificate beside the old public one (an error says so; the
// secret certificate is complete, and the public one can be made again
// from it).
//
// Save replaces an existing pair of that name (the old keys are lost:
// callers that must not lose a key check first). The secret certificate is
// always a new file with mode 0600, whatever the mode of the one it
// replaces; a symbolic link of that name is replaced, not followed.
func (c Certificate) Save(dir, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	pubData, err := c.MarshalPublic()
	if err != nil {
		return err
	}
	var secData []byte
	if c.Secret != "" {
		if secData, err = c.MarshalSecret(); err != nil {
			return err
		}
	}
	pubFile := filepath.Join(dir, name+PublicSuffix)
	secFile := filepath.Join(dir, name+SecretSuffix)
	pubTmp, err := writeTemp(dir, pubFile, pubData, 0o644)
	if err != nil {
		return err
	}
	if secData != nil {
		secTmp, err := writeTemp(dir, secFile, secData, 0o600)
		if err != nil {
			return withCleanup(err, removeTemp(pubTmp))
		}
		if err := os.Rename(secTmp, secFile); err != nil {
			return withCleanup(ioError(secFile, err), errors.Join(removeTemp(secTmp), removeTemp(pubTmp)))
		}
	}
	if err := os.Rename(pubTmp, pubFile); err != nil {
		e := ioError(pubFile, err)
		if secData != nil {
			e.Msg += "; " + secFile + " was replaced, so the two files do not match"
		}
		return withCleanup(e, removeTemp(pubTmp))
	}
	return syncDir(dir)
}

// checkName accepts a plain file name that is not hidden (LoadPublicKeys
// skips hidden files).
func checkName(name string) error {
	if name == "" || name[0] == '.' || strings.ContainsAny(name, `/\`+"\x00") || filepath.Base(name) != name {
		return &Error{Msg: fmt.Sprintf("invalid certificate name %q: want a file name without a directory or a leading dot", name), Err: fs.ErrInvalid}
	}
	return nil
}

// writeTemp writes data to a new hidden file in dir with mode perm, syncs
// it and returns its path. final is the file it is meant to become, for
// error messages.
func writeTemp(dir, final string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*") // mode 0600
	if err != nil {
		return "", ioError(final, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", withCleanup(ioError(final, err), removeTemp(tmp))
	}
	return tmp, nil
}

// withCleanup returns err, joined with the error of the clean-up after it
// if that failed too.
func withCleanup(err, cleanup error) error {
	if cleanup == nil {
		return err
	}
	return errors.Join(err, cleanup)
}

// removeTemp removes a temporary file left by a failed Save.
func removeTemp(tmp string) error {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ioError(tmp, err)
	}
	return nil
}

// syncDir makes the renames in dir durable. Windows cannot open a
// directory for that.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return ioError(dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ioError(dir, err)
	}
	return nil
}
