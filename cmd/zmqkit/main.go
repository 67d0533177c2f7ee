// Command zmqkit watches, feeds and measures ZeroMQ services from a shell:
// it subscribes to a topic, publishes, sends requests, serves replies, feeds
// and drains pipelines, talks over a pair, makes CURVE certificates and
// benchmarks a link between two processes or machines, over the zmqkit
// library.
//
// Install it with
//
//	go install github.com/zmqkit/zmqkit/cmd/zmqkit@latest
//
// and run "zmqkit help" or "zmqkit COMMAND -h" for each command's usage and
// examples. Exit status: 0 on success (and on Ctrl-C for the commands that
// run until stopped), 1 on a runtime failure, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses, as Go's own tools use them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command: it parses args, runs the subcommand until it
// ends or an interrupt (SIGINT, SIGTERM) arrives, and returns the exit
// status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first interrupt a second one kills the process at once,
		// in case a shutdown ever hangs.
		<-ctx.Done()
		stop()
	}()

	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	args, e.execArgv = splitExec(args)
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var rt *runtimeError
	if errors.As(err, &rt) {
		fmt.Fprintf(stderr, "zmqkit %s: %s\n", rt.cmd, oneLine(trimLibPrefix(rt.err.Error())))
		return exitFailure
	}
	// Everything else cobra returns is bad usage: an unknown command or
	// flag, a bad flag value, missing arguments, flags that clash.
	name := "zmqkit"
	if cmd == nil {
		cmd = root
	} else if cmd != root {
		name += " " + cmd.Name()
	}
	fmt.Fprintf(stderr, "%s: %s\n%s", name, err, cmd.UsageString())
	return exitUsage
}
