package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type keygenCmd struct {
	e     *env
	dir   string
	force bool
}

func newKeygenCmd(e *env) *cobra.Command {
	k := &keygenCmd{e: e}
	cmd := &cobra.Command{
		Use:   "keygen NAME [--dir D]",
		Short: "Make a CURVE key pair as certificate files pyzmq and CZMQ read",
		Long: `keygen makes a new CURVE key pair and writes it as D/NAME.key (the public
key, mode 0644: give it to peers) and D/NAME.key_secret (both keys, mode
0600: keep it secret), the files pyzmq's zmq.auth.create_certificates and
CZMQ's zcert write and read. It prints the public key (Z85) on stdout, and
refuses to replace existing files without --force.

Use them with any command: a server takes --curve-server-key D/NAME.key_secret
and --curve-allow DIR (a directory of its clients' NAME.key files); a client
takes --curve-client-key its NAME.key_secret and --curve-server-key the
server's NAME.key.`,
		Example: `  zmqkit keygen server --dir certs
  zmqkit keygen alice --dir clients
  zmqkit pub tcp://*:5555 --curve-server-key certs/server.key_secret --curve-allow clients
  zmqkit sub tcp://localhost:5555 --curve-client-key clients/alice.key_secret --curve-server-key certs/server.key`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&k.dir, "dir", ".", "directory to write the files in (made if missing)")
	cmd.Flags().BoolVar(&k.force, "force", false, "replace existing certificate files")
	cmd.RunE = runner("keygen", k.run)
	return cmd
}

func (k *keygenCmd) run(_ context.Context, args []string) error {
	name := args[0]
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return usagef("NAME %q: want a plain file name, without a directory (use --dir)", name)
	}
	files := []string{filepath.Join(k.dir, name+".key"), filepath.Join(k.dir, name+".key_secret")}
	if !k.force {
		for _, f := range files {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("%s exists: not replaced (--force replaces it)", f)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return err
	}
	keys, err := zmqkit.NewKeyPair()
	if err != nil {
		return err
	}
	if err := keys.Save(k.dir, name); err != nil {
		return err
	}
	fmt.Fprintf(k.e.stderr, "wrote %s (public) and %s (secret)\n", files[0], files[1])
	fmt.Fprintln(k.e.stdout, keys.Public)
	return nil
}
