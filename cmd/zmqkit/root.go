package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

// env is what every subcommand reads and writes: the process's standard
// streams, and the argv of rep --exec, which is cut off before cobra sees
// the arguments (it takes the rest of the line).
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	execArgv       []string
}

// newRootCmd builds the command tree.
func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "zmqkit",
		Short: "Watch, feed and measure ZeroMQ services from the shell",
		Long: `zmqkit talks to ZeroMQ services from the shell, over the zmqkit library:
subscribe to a topic, publish, send requests, serve replies, feed and drain
pipelines, talk over a pair, make CURVE certificates, benchmark a link.

Endpoints are one argument, a comma-separated list in the CZMQ style:
"tcp://host:5555,ipc:///tmp/feed". A leading @ binds and > connects; without
one, each command takes its socket's usual side (pub, rep, push and both
proxy ends bind; sub, req, pull and pair connect). "tcp://127.0.0.1:*" binds
an ephemeral port. Every endpoint a command binds is reported on stderr as a
line "bound ENDPOINT", with the port really bound.

Exit status: 0 on success (and on Ctrl-C for the commands that run until
stopped), 1 on a runtime failure, 2 on bad usage.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// zmqkit alone is bad usage, as "go" alone is.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			return usagef("missing command")
		},
		Args: cobra.ArbitraryArgs,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	root.AddCommand(
		newSubCmd(e), newPubCmd(e),
		newReqCmd(e), newRepCmd(e),
		newPushCmd(e), newPullCmd(e),
		newPairCmd(e), newProxyCmd(e),
		newKeygenCmd(e), newBenchCmd(e),
		newVersionCmd(e),
	)
	return root
}

// usageError is bad usage: exit status 2, with the command's usage.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// runtimeError is a failure while running: exit status 1, one line on
// stderr.
type runtimeError struct {
	cmd string
	err error
}

func (r *runtimeError) Error() string { return r.err.Error() }
func (r *runtimeError) Unwrap() error { return r.err }

// runner adapts a subcommand's body to cobra: its errors are runtime
// failures unless they are usageErrors.
func runner(name string, f func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd.Context(), args)
		if err == nil {
			return nil
		}
		var u *usageError
		if errors.As(err, &u) {
			return err
		}
		// A malformed endpoint or a value the library refuses for an
		// option is bad usage too.
		if errors.Is(err, zmqkit.ErrInvalidEndpoint) || errors.Is(err, zmqkit.ErrInvalidOption) {
			return &usageError{msg: trimLibPrefix(err.Error())}
		}
		return &runtimeError{cmd: name, err: err}
	}
}

// stopped reports whether err is only the end of ctx (Ctrl-C), which the
// commands that run until stopped treat as success.
func stopped(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// trimLibPrefix drops the library's "zmqkit: " from a message the command
// prints after its own "zmqkit CMD: ".
func trimLibPrefix(s string) string {
	for strings.HasPrefix(s, "zmqkit: ") {
		s = strings.TrimPrefix(s, "zmqkit: ")
	}
	return s
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// splitExec cuts "rep ... --exec CMD ARGS..." before flag parsing: --exec
// takes the rest of the line, including words that look like flags
// ("--exec tr -d x"), which no flag library parses that way. The arguments
// up to a "--" are searched, and only for the rep command.
func splitExec(args []string) (rest, execArgv []string) {
	sub := -1
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			sub = i
			break
		}
	}
	if sub < 0 || args[sub] != "rep" {
		return args, nil
	}
	for i := sub + 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args, nil
		case a == "--exec":
			return append(args[:i:i], "--exec"), append([]string{}, args[i+1:]...)
		case strings.HasPrefix(a, "--exec="):
			return append(args[:i:i], "--exec"), append([]string{strings.TrimPrefix(a, "--exec=")}, args[i+1:]...)
		}
	}
	return args, nil
}
