package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type reqCmd struct {
	*common
	timeout time.Duration
	retries int
}

func newReqCmd(e *env) *cobra.Command {
	r := &reqCmd{}
	cmd := &cobra.Command{
		Use:   "req ENDPOINTS [--timeout D] [--retries N] [MESSAGE ...]",
		Short: "Send requests and print each reply",
		Long: `req connects (by default) to a reply server (zmqkit rep, any ZeroMQ REP or
ROUTER server) and sends each MESSAGE as a request, one after another, or,
without MESSAGE arguments, one request per line of standard input. It prints
each reply as it came, one per line.

Each reply is awaited for --timeout; with --retries N a request that got no
reply is sent again up to N more times (only for requests that are safe to
repeat). req exits 1, with one line on stderr, at the first request that
gets no reply in time or gets an error reply (a zmqkit server's handler
failed), and on Ctrl-C before a reply. When no reply came, that line ends
with the last problem met on the way, if any, as "(last problem: ...)": a
CURVE server that refused this client, a peer that does not speak ZMTP;
-v logs each occurrence.`,
		Example: `  zmqkit req tcp://localhost:5555 hello
  zmqkit req tcp://localhost:5555 --timeout 200ms --retries 2 ping ping
  printf 'a\nb\n' | zmqkit req ipc:///tmp/rpc`,
		Args: cobra.MinimumNArgs(1),
	}
	r.common = addCommon(cmd, e, sends|receives|reports)
	f := cmd.Flags()
	f.DurationVar(&r.timeout, "timeout", 5*time.Second, "how long to wait for each reply")
	f.IntVar(&r.retries, "retries", 0, "send a request that got no reply up to N more times")
	cmd.RunE = runner("req", r.wrap(r.run))
	return cmd
}

func (r *reqCmd) run(ctx context.Context, args []string) error {
	if err := r.setup(); err != nil {
		return err
	}
	if r.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if r.retries < 0 {
		return usagef("--retries must not be negative")
	}
	tc, err := r.transcoder()
	if err != nil {
		return err
	}
	r.holdReports = true // one line on failure: the last report is its reason
	opts, err := r.options()
	if err != nil {
		return err
	}
	tries := r.retries + 1
	if r.retries > 0 {
		opts = append(opts, zmqkit.WithRetries(tries, r.timeout))
	}
	cli, err := zmqkit.NewRRClient(args[0], opts...)
	if err != nil {
		return err
	}
	defer cli.Close()
	r.printBound(args[0], false, cli.Endpoints())

	out := newLineWriter(r.e.stdout)
	src := newSource(ctx, r.e, args[1:], 0)
	for {
		msg, ok, err := src.next(ctx)
		if !ok {
			if err != nil {
				return r.noReply(ctx, err, args[0])
			}
			return cli.Close()
		}
		if msg, err = tc.toWire(msg); err != nil {
			return err
		}
		// With retries, the library times each try; the ctx only bounds
		// the whole call, with room for the last try.
		rctx, cancel := context.WithTimeout(ctx, time.Duration(tries)*r.timeout+r.timeout/2)
		if r.retries == 0 {
			cancel()
			rctx, cancel = context.WithTimeout(ctx, r.timeout)
		}
		rep, err := cli.Request(rctx, msg)
		cancel()
		if err != nil {
			return r.noReply(ctx, err, args[0])
		}
		if err := out.line(tc.fromWire(rep)); err != nil {
			return err
		}
	}
}

// noReply turns a failed request into the one line req prints.
func (r *reqCmd) noReply(ctx context.Context, err error, endpoints string) error {
	var remote *zmqkit.RemoteError
	switch {
	case ctx.Err() != nil:
		return errors.New("interrupted before a reply")
	case errors.As(err, &remote):
		return fmt.Errorf("error reply: %s", remote.Message)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, zmqkit.ErrNoReply):
		msg := fmt.Sprintf("no reply from %s within %v", endpoints, r.timeout)
		if r.retries > 0 {
			msg = fmt.Sprintf("no reply from %s after %d tries of %v", endpoints, r.retries+1, r.timeout)
		}
		if why := r.heldReport(); why != "" {
			msg += " (last problem: " + why + ")"
		}
		return errors.New(msg)
	}
	return err
}
