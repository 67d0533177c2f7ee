package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

type proxyCmd struct {
	*common
}

func newProxyCmd(e *env) *cobra.Command {
	p := &proxyCmd{}
	cmd := &cobra.Command{
		Use:   "proxy forwarder|queue|streamer FRONT BACK",
		Short: "Run a proxy: forwarder (pub/sub), queue (req/rep) or streamer (push/pull) (not available yet)",
		Long: `proxy joins many peers through one address, binding both ends by default:
  forwarder  publishers connect to FRONT (XSUB), subscribers to BACK (XPUB)
  queue      clients connect to FRONT (ROUTER), servers (rep ">BACK") to BACK (DEALER)
  streamer   pushers connect to FRONT (PULL), pullers to BACK (PUSH)
It runs until Ctrl-C (status 0), then prints the messages it passed each way.

Not available yet: it needs the library's NewForwarder, NewQueue and
NewStreamer, which this build lacks.`,
		Example: `  zmqkit proxy forwarder tcp://*:5559 tcp://*:5560
  zmqkit proxy queue tcp://*:5555 tcp://*:5556      # then: zmqkit rep '>tcp://broker:5556' --echo
  zmqkit proxy streamer tcp://*:5557 tcp://*:5558`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return usagef("want forwarder|queue|streamer FRONT BACK, got %d arguments", len(args))
			}
			switch args[0] {
			case "forwarder", "queue", "streamer":
				return nil
			}
			return usagef("unknown proxy %q: want forwarder, queue or streamer", args[0])
		},
	}
	p.common = addCommon(cmd, e, sends|receives|reports|noEncoding)
	cmd.RunE = runner("proxy", p.wrap(p.run))
	return cmd
}

func (p *proxyCmd) run(ctx context.Context, args []string) error {
	if err := p.setup(); err != nil {
		return err
	}
	// TODO(proxy): the library's proxies are not in this build yet. When
	// NewForwarder/NewQueue/NewStreamer(front, back, opts...) land, this
	// body becomes:
	//
	//	opts, err := p.options()
	//	if err != nil {
	//		return err
	//	}
	//	var px interface {
	//		Run(context.Context) error
	//		Close() error
	//		Stats() zmqkit.ProxyStats // whatever Stats returns
	//		Endpoints() []string      // if the proxies have it: see printBound
	//	}
	//	switch args[0] {
	//	case "forwarder":
	//		px, err = zmqkit.NewForwarder(args[1], args[2], opts...)
	//	case "queue":
	//		px, err = zmqkit.NewQueue(args[1], args[2], opts...)
	//	case "streamer":
	//		px, err = zmqkit.NewStreamer(args[1], args[2], opts...)
	//	}
	//	if err != nil {
	//		return err
	//	}
	//	defer px.Close()
	//	p.printBound(args[1], true, <front's endpoints>)
	//	p.printBound(args[2], true, <back's endpoints>)
	//	if err := px.Run(ctx); err != nil && !stopped(ctx, err) {
	//		return err
	//	}
	//	fmt.Fprintf(p.e.stderr, "zmqkit proxy: %+v\n", px.Stats())
	//	return px.Close()
	//
	// The options that apply to one end only (HWMs, CURVE on the public
	// end) need the proxies' own option story: see the API notes.
	return errors.New("not available yet: it needs the library's NewForwarder, NewQueue and NewStreamer, which this build lacks")
}
