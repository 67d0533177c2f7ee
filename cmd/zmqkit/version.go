package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	zmq "github.com/pebbe/zmq4"
	"github.com/spf13/cobra"
)

func newVersionCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print zmqkit's version, and the Go and libzmq it runs on",
		Long: `version prints one line: zmqkit's module version ("(devel)" for a build
from a work tree), the VCS revision when known, the Go version, the platform,
and the libzmq version with whether it has CURVE.`,
		Example: `  zmqkit version
  go version -m $(which zmqkit)    # every module it was built with`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = runner("version", func(context.Context, []string) error {
		fmt.Fprintln(e.stdout, versionLine())
		return nil
	})
	return cmd
}

func versionLine() string {
	v, rev := "(unknown)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	// The library does not say which libzmq it runs on (see the API
	// notes), so ask pebbe/zmq4, which it is built on.
	major, minor, patch := zmq.Version()
	curve := "no CURVE"
	if zmq.HasCurve() {
		curve = "CURVE"
	}
	return fmt.Sprintf("zmqkit %s%s %s %s/%s libzmq %d.%d.%d (%s)", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH, major, minor, patch, curve)
}
