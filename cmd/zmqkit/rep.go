package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type repCmd struct {
	*common
	echo        bool
	exec        bool
	concurrency int
}

func newRepCmd(e *env) *cobra.Command {
	r := &repCmd{}
	cmd := &cobra.Command{
		Use:   "rep ENDPOINTS [--echo | --exec CMD ARGS...] [--concurrency N]",
		Short: "Serve requests by echoing them, or by running a command",
		Long: `rep binds (by default) and answers requests from any REQ client (zmqkit req,
pyzmq, the Python module's RRClient): with --echo (the default) each reply
is the request; with --exec CMD ARGS... each request runs CMD, with the
request on its standard input, followed by a newline unless it ends with
one, and its standard output, less one trailing newline, is the reply. CMD's
stderr goes to rep's stderr. A CMD that exits non-zero (or cannot start)
produces an error reply, which zmqkit req reports and exits 1 on.

--exec takes the rest of the command line, so it comes last. With
--concurrency N up to N requests are served at once (default 1: one at a
time, in order). Ctrl-C stops rep (status 0) after the requests being
served have been answered.`,
		Example: `  zmqkit rep tcp://*:5555 --echo
  zmqkit rep tcp://*:5555 --concurrency 4 --exec tr a-z A-Z
  zmqkit rep ipc:///tmp/rpc --exec sh -c 'wc -c'`,
		Args: cobra.ExactArgs(1),
	}
	r.common = addCommon(cmd, e, sends|receives|reports)
	f := cmd.Flags()
	f.BoolVar(&r.echo, "echo", false, "reply with the request (the default)")
	f.BoolVar(&r.exec, "exec", false, "CMD ARGS...: reply with CMD's output, the request on its stdin; takes the rest of the line")
	f.IntVar(&r.concurrency, "concurrency", 1, "serve up to N requests at once")
	cmd.RunE = runner("rep", r.wrap(r.run))
	return cmd
}

func (r *repCmd) run(ctx context.Context, args []string) error {
	if err := r.setup(); err != nil {
		return err
	}
	switch {
	case r.exec && r.echo:
		return usagef("give --echo or --exec, not both")
	case r.exec && len(r.e.execArgv) == 0:
		return usagef("--exec needs a command")
	case r.concurrency < 1 || r.concurrency > zmqkit.MaxConcurrency:
		return usagef("--concurrency must be from 1 to %d", zmqkit.MaxConcurrency)
	}
	tc, err := r.transcoder()
	if err != nil {
		return err
	}
	h := zmqkit.RequestHandler(func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
	if r.exec {
		argv := r.e.execArgv
		if _, err := exec.LookPath(argv[0]); err != nil {
			return fmt.Errorf("--exec: %w", err)
		}
		h = r.execHandler(argv, tc)
	}
	opts, err := r.options()
	if err != nil {
		return err
	}
	opts = append(opts, zmqkit.WithConcurrency(r.concurrency))
	srv, err := zmqkit.NewRRServer(args[0], h, opts...)
	if err != nil {
		return err
	}
	defer srv.Close()
	r.printBound(args[0], true, srv.Endpoints())
	if err := srv.Run(ctx); err != nil && !stopped(ctx, err) {
		return err
	}
	r.log.Debug("served", "stats", srv.Stats())
	return srv.Close()
}

// execHandler runs argv once per request.
func (r *repCmd) execHandler(argv []string, tc *transcoder) zmqkit.RequestHandler {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		in := tc.fromWire(req)
		if !bytes.HasSuffix(in, []byte("\n")) {
			in = append(in, '\n')
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = bytes.NewReader(in)
		var out bytes.Buffer
		cmd.Stdout = &out
		tail := &tailBuffer{max: 512}
		cmd.Stderr = io.MultiWriter(r.e.stderr, tail)
		// A CMD whose children keep its pipes open must not hold the
		// reply forever.
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			msg := argv[0] + ": " + err.Error()
			if t := strings.TrimSpace(tail.String()); t != "" {
				msg += ": " + lastLine(t)
			}
			return nil, errors.New(msg)
		}
		return tc.toWire(bytes.TrimSuffix(out.Bytes(), []byte("\n")))
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
