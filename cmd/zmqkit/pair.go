package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type pairCmd struct {
	*common
	count int
}

func newPairCmd(e *env) *cobra.Command {
	p := &pairCmd{}
	cmd := &cobra.Command{
		Use:   "pair ENDPOINTS [--count N]",
		Short: "Talk to one peer: send stdin lines, print what arrives",
		Long: `pair connects (by default; "@" binds) to one peer over a ZeroMQ PAIR socket,
sends each line of standard input as a message, and prints each message that
arrives, one per line, both at once. It ends when the input ends (after what
is queued has left, up to --linger), on Ctrl-C (status 0), or, with --count
N, once N messages have arrived (then the end of the input does not end it).
Over tcp and ipc it survives the peer's restart.`,
		Example: `  zmqkit pair @tcp://*:5560                 # one terminal
  zmqkit pair tcp://localhost:5560          # another: type in either
  echo ping | zmqkit pair tcp://localhost:5560 --count 1`,
		Args: cobra.ExactArgs(1),
	}
	p.common = addCommon(cmd, e, sends|receives|reports)
	cmd.Flags().IntVar(&p.count, "count", 0, "exit after this many messages have arrived (0: when the input ends)")
	cmd.RunE = runner("pair", p.wrap(p.run))
	return cmd
}

func (p *pairCmd) run(ctx context.Context, args []string) error {
	if err := p.setup(); err != nil {
		return err
	}
	if p.count < 0 {
		return usagef("--count must not be negative")
	}
	tc, err := p.transcoder()
	if err != nil {
		return err
	}
	opts, err := p.options()
	if err != nil {
		return err
	}
	pc, err := zmqkit.NewPairClient(args[0], opts...)
	if err != nil {
		return err
	}
	defer pc.Close()
	p.printBound(args[0], false, pc.Endpoints())

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- p.send(ctx, pc, tc)
	}()

	recvErr := make(chan error, 1)
	go func() {
		recvErr <- p.receive(ctx, pc, tc)
	}()
	var err1 error
	select {
	case err1 = <-sendErr:
		if err1 == nil && p.count > 0 {
			err1 = <-recvErr // the input ended; wait for the messages
		}
	case err1 = <-recvErr:
	}
	cancel()
	// Both goroutines end with ctx, except one blocked reading stdin,
	// which cannot be interrupted and ends with the process.
	if err1 != nil && !stopped(ctx, err1) && !errors.Is(err1, context.Canceled) {
		return err1
	}
	p.settle(parent, args[0], false)
	return pc.Close()
}

func (p *pairCmd) send(ctx context.Context, pc *zmqkit.PairClient, tc *transcoder) error {
	lines := readLines(ctx, p.e.stdin)
	for {
		line, ok, err := lines.next(ctx)
		if !ok {
			return err
		}
		if line, err = tc.toWire(line); err != nil {
			return err
		}
		if err := pc.Send(ctx, line); err != nil {
			return err
		}
	}
}

func (p *pairCmd) receive(ctx context.Context, pc *zmqkit.PairClient, tc *transcoder) error {
	out := newLineWriter(p.e.stdout)
	for n := 0; p.count == 0 || n < p.count; n++ {
		msg, err := pc.Receive(ctx)
		if err != nil {
			if errors.Is(err, zmqkit.ErrMalformed) {
				fmt.Fprintf(p.e.stderr, "zmqkit pair: %s\n", oneLine(trimLibPrefix(err.Error())))
				continue
			}
			return err
		}
		if err := out.line(tc.fromWire(msg)); err != nil {
			return err
		}
	}
	return nil
}
