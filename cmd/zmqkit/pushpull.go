package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type pushCmd struct {
	*common
	rate  float64
	count int
}

func newPushCmd(e *env) *cobra.Command {
	p := &pushCmd{}
	cmd := &cobra.Command{
		Use:   "push ENDPOINTS [--rate R] [--count N] [MESSAGE ...]",
		Short: "Push the arguments, or one message per line of stdin, down a pipeline",
		Long: `push binds (by default) and sends each MESSAGE, or, without MESSAGE
arguments, each line of standard input, to one connected puller in turn
(round-robin). A push never drops: it waits while no puller is connected or
every puller's queue is full, so a file pushed to a pull arrives whole.
When the input ends, push waits up to --linger for what is still queued to
leave, then exits. Ctrl-C ends push (status 0).`,
		Example: `  seq 10000 | zmqkit push tcp://*:5557
  zmqkit push tcp://*:5557 --count 100 --rate 50 task
  zmqkit push '>tcp://sink:5558' done        # fan in: connect to a puller that binds`,
		Args: cobra.MinimumNArgs(1),
	}
	p.common = addCommon(cmd, e, sends)
	f := cmd.Flags()
	f.Float64Var(&p.rate, "rate", 0, "at most this many messages a second (0: no limit)")
	f.IntVar(&p.count, "count", 0, "send this many messages, cycling through the arguments (0: each argument once, or every line)")
	cmd.RunE = runner("push", p.wrap(p.run))
	return cmd
}

func (p *pushCmd) run(ctx context.Context, args []string) error {
	if err := p.setup(); err != nil {
		return err
	}
	if p.count < 0 || p.rate < 0 {
		return usagef("--count and --rate must not be negative")
	}
	tc, err := p.transcoder()
	if err != nil {
		return err
	}
	opts, err := p.options()
	if err != nil {
		return err
	}
	push, err := zmqkit.NewPPPusher(args[0], opts...)
	if err != nil {
		return err
	}
	defer push.Close()
	p.printBound(args[0], true, push.Endpoints())
	src := newSource(ctx, p.e, args[1:], p.count)
	pace := newPacer(p.rate)
	for {
		msg, ok, err := src.next(ctx)
		if !ok {
			if err != nil && !stopped(ctx, err) {
				return err
			}
			break
		}
		if msg, err = tc.toWire(msg); err != nil {
			return err
		}
		if err := pace.wait(ctx); err != nil {
			break
		}
		if err := push.Push(ctx, msg); err != nil {
			if stopped(ctx, err) {
				break
			}
			return err
		}
	}
	p.log.Debug("pushed", "stats", push.Stats())
	p.settle(ctx, args[0], true)
	return push.Close()
}

type pullCmd struct {
	*common
	count int
}

func newPullCmd(e *env) *cobra.Command {
	p := &pullCmd{}
	cmd := &cobra.Command{
		Use:   "pull ENDPOINTS [--count N]",
		Short: "Pull messages from a pipeline and print one per line",
		Long: `pull connects (by default) to one or more pushers and prints each message's
body as it came, one per line. It ends on Ctrl-C (status 0) or after --count
messages. Bind it ("@") to fan in from many pushers.`,
		Example: `  zmqkit pull tcp://localhost:5557
  zmqkit pull tcp://localhost:5557 --count 10000 > out.txt
  zmqkit pull @tcp://*:5558                  # a sink many pushers connect to`,
		Args: cobra.ExactArgs(1),
	}
	p.common = addCommon(cmd, e, receives|reports)
	cmd.Flags().IntVar(&p.count, "count", 0, "exit after this many messages (0: run until Ctrl-C)")
	cmd.RunE = runner("pull", p.wrap(p.run))
	return cmd
}

func (p *pullCmd) run(ctx context.Context, args []string) error {
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
	pull, err := zmqkit.NewPPPuller(args[0], opts...)
	if err != nil {
		return err
	}
	defer pull.Close()
	p.printBound(args[0], false, pull.Endpoints())
	out := newLineWriter(p.e.stdout)
	for n := 0; p.count == 0 || n < p.count; {
		msg, err := pull.Receive(ctx)
		if err != nil {
			if stopped(ctx, err) {
				return nil
			}
			if errors.Is(err, zmqkit.ErrMalformed) {
				fmt.Fprintf(p.e.stderr, "zmqkit pull: %s\n", oneLine(trimLibPrefix(err.Error())))
				continue
			}
			return err
		}
		if err := out.line(tc.fromWire(msg)); err != nil {
			return err
		}
		n++
	}
	return pull.Close()
}
