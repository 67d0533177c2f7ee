package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type pubCmd struct {
	*common
	msgid           int
	json            bool
	rate            float64
	count           int
	waitSubscribers int
}

func newPubCmd(e *env) *cobra.Command {
	p := &pubCmd{}
	cmd := &cobra.Command{
		Use:   "pub ENDPOINTS [--msgid N] [--json] [--rate R] [--count N] [--wait-subscribers N] [MESSAGE ...]",
		Short: "Publish the arguments, or one message per line of stdin",
		Long: `pub binds (by default) and publishes each MESSAGE as a "<msgid> text <body>"
frame, or, without MESSAGE arguments, one message per line of standard input
until it ends. --json sends each argument or line as a JSON value (type
json); one that is not JSON is refused (an argument: before anything is
sent; a line: reported on stderr and skipped, and pub exits 1 at the end).

Pub/sub is best effort: a subscriber misses what is published before its
subscription has reached pub (the "slow joiner"), so a pub that sends its
arguments at once and exits usually reaches nobody. --wait-subscribers N
makes pub wait, before it sends anything, until N subscriptions that match
its --msgid have arrived (a subscriber to every message, as zmqkit sub
without --msgid, counts; so does a pyzmq SUB subscribed to "1000"; a
forwarder counts once however many subscribers it has). Then the first
message reaches them all. Ctrl-C while it waits ends pub (status 0) with
nothing sent.

--count N sends N messages, cycling through the arguments (or stops after
N lines); --rate R sends at most R messages a second. Ctrl-C ends pub
(status 0).`,
		Example: `  zmqkit pub tcp://*:5555                         # one message per line you type
  zmqkit pub tcp://*:5555 --json '{"data": 42}' --count 100 --rate 10
  tail -f app.log | zmqkit pub tcp://*:5555 --msgid 2000
  zmqkit pub tcp://*:5555 --wait-subscribers 2 "deploy done"   # once two subscribers are listening`,
		Args: cobra.MinimumNArgs(1),
	}
	p.common = addCommon(cmd, e, sends)
	f := cmd.Flags()
	f.IntVar(&p.msgid, "msgid", zmqkit.DefaultMsgID, "msgid of the messages")
	f.BoolVar(&p.json, "json", false, "send each argument or line as a JSON value (type json)")
	f.Float64Var(&p.rate, "rate", 0, "at most this many messages a second (0: no limit)")
	f.IntVar(&p.count, "count", 0, "send this many messages, cycling through the arguments (0: each argument once, or every line)")
	f.IntVar(&p.waitSubscribers, "wait-subscribers", 0, "before publishing, wait until N subscribers of --msgid are connected and subscribed (0: do not wait)")
	cmd.RunE = runner("pub", p.wrap(p.run))
	return cmd
}

func (p *pubCmd) run(ctx context.Context, args []string) error {
	if err := p.setup(); err != nil {
		return err
	}
	switch {
	case p.msgid < 0:
		return usagef("--msgid must not be negative")
	case p.count < 0:
		return usagef("--count must not be negative")
	case p.rate < 0:
		return usagef("--rate must not be negative")
	case p.waitSubscribers < 0:
		return usagef("--wait-subscribers must not be negative")
	}
	if _, err := zmqkit.NewCodec(p.encoding); err != nil {
		return usagef("--encoding: %s", trimLibPrefix(err.Error()))
	}
	msgs := args[1:]
	if p.json {
		for _, m := range msgs {
			if !json.Valid([]byte(m)) {
				return usagef("--json: argument %q is not JSON", m)
			}
		}
	}
	opts, err := p.options()
	if err != nil {
		return err
	}
	opts = append(opts, zmqkit.WithMsgID(p.msgid), zmqkit.WithEncoding(p.encoding))
	pub, err := zmqkit.NewPublisher(args[0], opts...)
	if err != nil {
		return err
	}
	defer pub.Close()
	p.printBound(args[0], true, pub.Endpoints())
	if p.waitSubscribers > 0 {
		p.log.Debug("waiting for subscribers", "n", p.waitSubscribers)
		if err := pub.WaitForSubscribers(ctx, p.waitSubscribers); err != nil {
			if stopped(ctx, err) {
				return nil
			}
			return err
		}
		p.log.Debug("subscribers arrived", "n", p.waitSubscribers)
	}

	src := newSource(ctx, p.e, msgs, p.count)
	pace := newPacer(p.rate)
	refused := 0
	for line := 1; ; line++ {
		msg, ok, err := src.next(ctx)
		if !ok {
			if err != nil && !stopped(ctx, err) {
				return err
			}
			break
		}
		var v any = string(msg)
		if p.json {
			if !json.Valid(msg) {
				refused++
				fmt.Fprintf(p.e.stderr, "zmqkit pub: line %d is not JSON: skipped\n", line)
				continue
			}
			v = json.RawMessage(msg)
		}
		if err := pace.wait(ctx); err != nil {
			break
		}
		if err := pub.Publish(ctx, v); err != nil {
			if stopped(ctx, err) {
				break
			}
			if errors.Is(err, zmqkit.ErrInvalidMessage) {
				refused++
				fmt.Fprintf(p.e.stderr, "zmqkit pub: message %d: %s: skipped\n", line, oneLine(trimLibPrefix(err.Error())))
				continue
			}
			return err
		}
	}
	p.log.Debug("published", "stats", pub.Stats())
	p.settle(ctx, args[0], true)
	if err := pub.Close(); err != nil {
		return err
	}
	if refused > 0 {
		return fmt.Errorf("%d messages could not be sent (see above)", refused)
	}
	return nil
}
