package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type proxyCmd struct {
	*common
	capture string
}

func newProxyCmd(e *env) *cobra.Command {
	p := &proxyCmd{}
	cmd := &cobra.Command{
		Use:   "proxy forwarder|queue|streamer FRONT BACK [--capture ENDPOINT]",
		Short: "Run a proxy: forwarder (pub/sub), queue (req/rep) or streamer (push/pull)",
		Long: `proxy joins many peers through one address, binding both ends by default:
  forwarder  publishers connect to FRONT (XSUB), subscribers to BACK (XPUB);
             messages go front to back, subscriptions back to front
  queue      clients (req) connect to FRONT (ROUTER), servers (rep ">BACK")
             to BACK (DEALER) as workers; requests are dealt to the workers
             in turn, and each reply goes back to its client
  streamer   pushers connect to FRONT (PULL), pullers to BACK (PUSH)
Each end's endpoints are reported on stderr as "bound ENDPOINT" lines, the
front's first, then the back's, then the capture's.

--capture ENDPOINT publishes a copy of every message the proxy moves, both
ways, on a PUB socket that binds by default, frames as they are, as
zmq_proxy's capture socket does (watch it with "zmqkit sub --raw").

The proxy runs until Ctrl-C or SIGTERM (status 0), then prints on stderr
what it moved each way: "front->back received N sent N dropped N" (and
"back->front ..." for the forwarder and the queue). --sndhwm and --rcvhwm
apply to both ends, and so do the CURVE flags: with --curve-server-key the
proxy is the CURVE server on both ends (and the capture), admitting the
clients --curve-allow lists; with --curve-client-key it is a client of that
one server key wherever it connects (">").`,
		Example: `  zmqkit proxy forwarder tcp://*:5559 tcp://*:5560   # pub '>tcp://broker:5559', sub tcp://broker:5560
  zmqkit proxy queue tcp://*:5555 tcp://*:5556       # rep '>tcp://broker:5556' --echo, req tcp://broker:5555
  zmqkit proxy streamer tcp://*:5557 tcp://*:5558 --capture tcp://127.0.0.1:5570`,
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
	cmd.Flags().StringVar(&p.capture, "capture", "", "publish a copy of every message moved, both ways, on this endpoint (PUB; binds unless >)")
	cmd.RunE = runner("proxy", p.wrap(p.run))
	return cmd
}

var newProxy = map[string]func(front, back string, opts ...zmqkit.Option) (*zmqkit.Proxy, error){
	"forwarder": zmqkit.NewForwarder,
	"queue":     zmqkit.NewQueue,
	"streamer":  zmqkit.NewStreamer,
}

func (p *proxyCmd) run(ctx context.Context, args []string) error {
	if err := p.setup(); err != nil {
		return err
	}
	kind, front, back := args[0], args[1], args[2]
	opts, err := p.options()
	if err != nil {
		return err
	}
	var (
		capPub    *zmqkit.Publisher
		capFailed atomic.Uint64
	)
	if p.capture != "" {
		// The capture exists before the proxy, which so never moves a
		// message it does not show. A PUB drops what nobody subscribed to
		// and what a slow subscriber cannot take: it never holds the proxy
		// up.
		capOpts, err := p.optionsFor(sends)
		if err != nil {
			return err
		}
		if capPub, err = zmqkit.NewPublisher(p.capture, capOpts...); err != nil {
			return fmt.Errorf("--capture: %w", err)
		}
		defer capPub.Close()
		opts = append(opts, zmqkit.WithCapture(func(_ bool, frames [][]byte) {
			if err := capPub.PublishFrames(ctx, frames...); err != nil && ctx.Err() == nil {
				capFailed.Add(1)
			}
		}))
	}
	px, err := newProxy[kind](front, back, opts...)
	if err != nil {
		return err
	}
	defer px.Close()
	p.printBound(front, true, px.Front())
	p.printBound(back, true, px.Back())
	if capPub != nil {
		p.printBound(p.capture, true, capPub.Endpoints())
	}

	runErr := px.Run(ctx)
	closeErr := px.Close()
	st := px.Stats()
	report := func(dir string, s zmqkit.Stats) {
		fmt.Fprintf(p.e.stderr, "%s received %d sent %d dropped %d\n", dir, s.Received, s.Sent, s.Dropped)
	}
	report("front->back", st.FrontToBack)
	if kind != "streamer" {
		report("back->front", st.BackToFront)
	}
	if capPub != nil {
		p.log.Debug("capture", "stats", capPub.Stats())
		if n := capFailed.Load(); n > 0 {
			fmt.Fprintf(p.e.stderr, "zmqkit proxy: %d messages could not be captured\n", n)
		}
	}
	if runErr != nil && !stopped(ctx, runErr) {
		return runErr
	}
	return closeErr
}
