package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/zmqkit/zmqkit"
)

// The first byte of every bench message says what it is; the rest is
// padding up to --size.
const (
	kindSync = 'S' // the first round trip, which waits for the connection; not counted
	kindData = 'D' // counted and timed
	kindEnd  = 'E' // the sender is done
)

type benchCmd struct {
	*common
	bind, connect string
	pattern       string
	size, count   int
	json          bool
	inflight      int
	concurrency   int
	idle          time.Duration
	mode          string
}

func newBenchCmd(e *env) *cobra.Command {
	b := &benchCmd{}
	cmd := &cobra.Command{
		Use:   "bench thr|lat (--bind EP | --connect EP) [--pattern P] [--size N] [--count N] [--json]",
		Short: "Measure throughput or latency between two processes, as libzmq's perf tools do",
		Long: `bench measures a link between two processes, on one machine or two, in the
manner of libzmq's local_thr/remote_thr and local_lat/remote_lat: start the
--bind side first, then the --connect side with the same --pattern, --size
and --count.

  thr  the --connect side sends --count messages of --size bytes as fast as it
       can; the --bind side receives them and reports msgs/s and MB/s
       (10^6 bytes of message body a second). With --pattern reqrep the
       --connect side keeps --inflight requests in flight and the --bind side,
       an echo server, reports requests/s.
  lat  the --bind side echoes; the --connect side times --count round trips,
       one at a time, and reports their p50, p90, p99 and p99.9 in µs (from
       an HDR histogram) and round trips/s. reqrep uses one endpoint; pubsub
       and pushpull need two, "OUT,BACK": OUT carries the messages there,
       BACK brings them back.

Patterns: pushpull (the default for thr: nothing is lost), pubsub (each
publishing side waits for its subscriber's subscription before it sends, as
pub --wait-subscribers 1 does, so that nothing is lost to a slow joiner;
both high-water marks default to 0, no limit, as in make bench, and the
report counts what was lost all the same), reqrep (the default for lat). The side that reports prints a table on stdout, or one JSON object with
--json (thr: pattern, size, count, received, lost, elapsed_sec, msgs_per_sec,
mb_per_sec; lat: pattern, size, count, p50_us, p90_us, p99_us, p999_us,
max_us, mean_us, msgs_per_sec). A progress bar shows on stderr when it is a
terminal.

Ctrl-C stops either side at once: a run cut short measured nothing, so bench
then reports nothing, prints "zmqkit bench: interrupted" on stderr and exits
with status 1.`,
		Example: `  zmqkit bench thr --bind tcp://*:5555 --count 1000000          # machine A
  zmqkit bench thr --connect tcp://A:5555 --count 1000000        # machine B
  zmqkit bench lat --bind tcp://*:5555 &  zmqkit bench lat --connect tcp://localhost:5555 --json
  zmqkit bench lat --pattern pubsub --bind tcp://*:5555,tcp://*:5556   # and --connect tcp://A:5555,tcp://A:5556`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "thr" && args[0] != "lat") {
				return usagef("want thr or lat")
			}
			return nil
		},
	}
	b.common = addCommon(cmd, e, sends|receives|reports|noEncoding)
	f := cmd.Flags()
	f.StringVar(&b.bind, "bind", "", "bind this endpoint (the receiving side of thr, the echoing side of lat)")
	f.StringVar(&b.connect, "connect", "", "connect to this endpoint (the sending side of thr, the timing side of lat)")
	f.StringVar(&b.pattern, "pattern", "", "pubsub, pushpull or reqrep (default pushpull for thr, reqrep for lat)")
	f.IntVar(&b.size, "size", 64, "message size in bytes")
	f.IntVar(&b.count, "count", 0, "messages (thr) or round trips (lat) (default 100000 for thr, 10000 for lat)")
	f.BoolVar(&b.json, "json", false, "print the results as one JSON object")
	f.IntVar(&b.inflight, "inflight", 16, "thr reqrep: requests in flight at once on the --connect side")
	f.IntVar(&b.concurrency, "concurrency", 1, "reqrep: requests the echo server handles at once")
	f.DurationVar(&b.idle, "idle", 2*time.Second, "thr: the receiver ends after this long without a message, and reports what was lost")
	cmd.RunE = runner("bench", b.wrap(b.run))
	return cmd
}

func (b *benchCmd) run(ctx context.Context, args []string) error {
	b.mode = args[0]
	if err := b.setup(); err != nil {
		return err
	}
	if b.pattern == "" {
		b.pattern = map[string]string{"thr": "pushpull", "lat": "reqrep"}[b.mode]
	}
	if b.count == 0 {
		b.count = map[string]int{"thr": 100000, "lat": 10000}[b.mode]
	}
	switch {
	case (b.bind == "") == (b.connect == ""):
		return usagef("give --bind or --connect (one side each)")
	case b.pattern != "pubsub" && b.pattern != "pushpull" && b.pattern != "reqrep":
		return usagef("--pattern %q: want pubsub, pushpull or reqrep", b.pattern)
	case b.size < 1:
		return usagef("--size must be at least 1")
	case b.count < 1:
		return usagef("--count must be at least 1")
	case b.inflight < 1:
		return usagef("--inflight must be at least 1")
	case b.concurrency < 1 || b.concurrency > zmqkit.MaxConcurrency:
		return usagef("--concurrency must be from 1 to %d", zmqkit.MaxConcurrency)
	}
	if b.pattern == "pubsub" {
		// A PUB drops at its high-water mark; make bench sets none either.
		if !b.cmd.Flags().Changed("sndhwm") {
			b.sndhwm = 0
		}
		if !b.cmd.Flags().Changed("rcvhwm") {
			b.rcvhwm = 0
		}
	}
	bind := b.bind != ""
	ep := b.bind + b.connect
	for _, s := range strings.Split(ep, ",") {
		if s = strings.TrimSpace(s); strings.HasPrefix(s, "@") || strings.HasPrefix(s, ">") {
			return usagef("endpoint %q: no @ or > with --bind and --connect", s)
		}
	}
	eps := []string{ep}
	if b.mode == "lat" && b.pattern != "reqrep" {
		if eps = strings.Split(ep, ","); len(eps) != 2 {
			return usagef("bench lat --pattern %s needs two endpoints, OUT,BACK", b.pattern)
		}
	}
	for i := range eps {
		eps[i] = sided(eps[i], bind)
	}

	var res any
	var err error
	switch {
	case b.pattern == "reqrep" && bind:
		var r *thrResult
		if r, err = b.echoServer(ctx, eps[0]); r != nil {
			res = r // lat's echo server reports nothing
		}
	case b.pattern == "reqrep":
		res, err = b.reqrepClient(ctx, eps[0])
	case b.mode == "thr" && bind:
		res, err = b.thrReceiver(ctx, eps[0])
	case b.mode == "thr":
		err = b.thrSender(ctx, eps[0])
	case bind:
		err = b.latEcho(ctx, eps[0], eps[1])
	default:
		res, err = b.latTimer(ctx, eps[0], eps[1])
	}
	if err != nil {
		if stopped(ctx, err) {
			return errors.New("interrupted")
		}
		return err
	}
	if res == nil {
		return nil
	}
	return b.report(res)
}

// sided prefixes every endpoint of a list with @ (bind) or > (connect).
func sided(list string, bind bool) string {
	p := ">"
	if bind {
		p = "@"
	}
	parts := strings.Split(list, ",")
	for i, s := range parts {
		parts[i] = p + strings.TrimSpace(s)
	}
	return strings.Join(parts, ",")
}

// message returns a bench message of the given kind.
func (b *benchCmd) message(kind byte) []byte {
	m := make([]byte, b.size)
	for i := range m {
		m[i] = 'x'
	}
	m[0] = kind
	return m
}

func (b *benchCmd) checkSize(m []byte) error {
	if len(m) != b.size {
		return fmt.Errorf("got a message of %d bytes, want %d: give both sides the same --size", len(m), b.size)
	}
	return nil
}

// A stream is one direction of a pushpull or pubsub link.
type (
	sendFunc func(ctx context.Context, m []byte) error
	recvFunc func(ctx context.Context) ([]byte, error)
)

// A sender is the sending end of a stream. ready returns once a message
// sent next reaches the receiver: over pubsub, once the subscriber's
// subscription has arrived; a push waits for its puller by itself.
type sender struct {
	send  sendFunc
	ready func(ctx context.Context) error
	close func() error
}

// streamSender opens the sending end of a stream.
func (b *benchCmd) streamSender(ep string) (*sender, error) {
	opts, err := b.optionsFor(sends) // Publisher, PPPusher
	if err != nil {
		return nil, err
	}
	if b.pattern == "pubsub" {
		pub, err := zmqkit.NewPublisher(ep, opts...)
		if err != nil {
			return nil, err
		}
		b.printBound(ep, true, pub.Endpoints())
		return &sender{
			send: func(ctx context.Context, m []byte) error {
				return pub.PublishMessage(ctx, zmqkit.Message{ID: zmqkit.DefaultMsgID, Type: "bench", Body: m})
			},
			ready: func(ctx context.Context) error { return pub.WaitForSubscribers(ctx, 1) },
			close: func() error { b.log.Debug("publisher", "stats", pub.Stats()); return pub.Close() },
		}, nil
	}
	push, err := zmqkit.NewPPPusher(ep, opts...)
	if err != nil {
		return nil, err
	}
	b.printBound(ep, true, push.Endpoints())
	return &sender{
		send:  push.Push,
		ready: func(context.Context) error { return nil },
		close: func() error { b.log.Debug("pusher", "stats", push.Stats()); return push.Close() },
	}, nil
}

// streamReceiver opens the receiving end of a stream.
func (b *benchCmd) streamReceiver(ep string) (recvFunc, func() error, error) {
	opts, err := b.optionsFor(receives | reports) // Subscriber, PPPuller
	if err != nil {
		return nil, nil, err
	}
	if b.pattern == "pubsub" {
		sub, err := zmqkit.NewSubscriber(ep, opts...)
		if err != nil {
			return nil, nil, err
		}
		b.printBound(ep, false, sub.Endpoints())
		recv := func(ctx context.Context) ([]byte, error) {
			m, err := sub.Receive(ctx)
			return m.Body, err
		}
		return recv, func() error { b.log.Debug("subscriber", "stats", sub.Stats()); return sub.Close() }, nil
	}
	pull, err := zmqkit.NewPPPuller(ep, opts...)
	if err != nil {
		return nil, nil, err
	}
	b.printBound(ep, false, pull.Endpoints())
	return pull.Receive, func() error { b.log.Debug("puller", "stats", pull.Stats()); return pull.Close() }, nil
}

// thrResult is what bench thr reports.
type thrResult struct {
	Pattern    string  `json:"pattern"`
	Size       int     `json:"size"`
	Count      int     `json:"count"`
	Received   int     `json:"received"`
	Lost       int     `json:"lost"`
	ElapsedSec float64 `json:"elapsed_sec"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
}

func (b *benchCmd) thrResult(n int, elapsed time.Duration) *thrResult {
	r := &thrResult{Pattern: b.pattern, Size: b.size, Count: b.count, Received: n, Lost: b.count - n, ElapsedSec: elapsed.Seconds()}
	if r.Lost < 0 {
		r.Lost = 0
	}
	if elapsed > 0 {
		r.MsgsPerSec = float64(n) / elapsed.Seconds()
		r.MBPerSec = r.MsgsPerSec * float64(b.size) / 1e6
	}
	return r
}

// thrReceiver is local_thr: it receives the sender's messages, timing from
// the first to the last.
func (b *benchCmd) thrReceiver(ctx context.Context, ep string) (*thrResult, error) {
	recv, closeFn, err := b.streamReceiver(ep)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	prog := b.startProgress(b.count, "receiving")
	defer prog.finish()
	// Messages may be lost (pubsub drops; a sender that dies takes its
	// queue with it): end after --idle without one, and report the loss.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := prog.watchIdle(b.idle, cancel)
	defer stopWatch()
	var first, last time.Time
	n := 0
	for n < b.count {
		m, err := recv(rctx)
		if err != nil {
			if ctx.Err() == nil && rctx.Err() != nil && n > 0 {
				break // idle: the rest was lost
			}
			return nil, err
		}
		if err := b.checkSize(m); err != nil {
			return nil, err
		}
		if m[0] == kindEnd {
			break
		}
		if m[0] != kindData {
			continue
		}
		last = time.Now()
		if n == 0 {
			first = last
		}
		n++
		prog.add(1)
	}
	prog.finish()
	return b.thrResult(n, last.Sub(first)), closeFn()
}

// thrSender is remote_thr.
func (b *benchCmd) thrSender(ctx context.Context, ep string) error {
	out, err := b.streamSender(ep)
	if err != nil {
		return err
	}
	defer out.close()
	if err := out.ready(ctx); err != nil {
		return err
	}
	prog := b.startProgress(b.count, "sending")
	defer prog.finish()
	data := b.message(kindData)
	start := time.Now()
	for i := 0; i < b.count; i++ {
		if err := out.send(ctx, data); err != nil {
			return err
		}
		prog.add(1)
	}
	for i := 0; i < 3; i++ {
		if err := out.send(ctx, b.message(kindEnd)); err != nil {
			return err
		}
	}
	prog.finish()
	fmt.Fprintf(b.e.stderr, "sent %d messages of %d bytes in %v\n", b.count, b.size, time.Since(start).Round(time.Millisecond))
	b.settle(ctx, ep, false)
	return out.close()
}

// latEcho is local_lat for the streams: it sends back what it receives,
// until the end message.
func (b *benchCmd) latEcho(ctx context.Context, out, back string) error {
	recv, closeRecv, err := b.streamReceiver(out)
	if err != nil {
		return err
	}
	defer closeRecv()
	echo, err := b.streamSender(back)
	if err != nil {
		return err
	}
	defer echo.close()
	ready := false
	for {
		m, err := recv(ctx)
		if err != nil {
			return err
		}
		if err := b.checkSize(m); err != nil {
			return err
		}
		if m[0] == kindEnd {
			// Not echoed: the timing side may be gone, and a push to
			// nobody waits.
			break
		}
		if !ready {
			// The first echo waits for the timing side's subscription
			// (pubsub), which it may have sent after its first message.
			if err := echo.ready(ctx); err != nil {
				return err
			}
			ready = true
		}
		if err := echo.send(ctx, m); err != nil {
			return err
		}
	}
	if err := echo.close(); err != nil {
		return err
	}
	return closeRecv()
}

// latResult is what bench lat reports.
type latResult struct {
	Pattern    string  `json:"pattern"`
	Size       int     `json:"size"`
	Count      int     `json:"count"`
	P50us      float64 `json:"p50_us"`
	P90us      float64 `json:"p90_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	MaxUs      float64 `json:"max_us"`
	MeanUs     float64 `json:"mean_us"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
}

// latency times count round trips with rt, after one untimed warm-up round
// trip (warm, which waits for the connection), into an HDR histogram.
func (b *benchCmd) latency(ctx context.Context, warm func(context.Context) error, rt func(context.Context) error) (*latResult, error) {
	if err := warm(ctx); err != nil {
		return nil, err
	}
	// 1 ns to 60 s, three significant digits.
	h := hdrhistogram.New(1, int64(60*time.Second), 3)
	prog := b.startProgress(b.count, "round trips")
	defer prog.finish()
	start := time.Now()
	for i := 0; i < b.count; i++ {
		t0 := time.Now()
		if err := rt(ctx); err != nil {
			return nil, err
		}
		if err := h.RecordValue(int64(time.Since(t0))); err != nil {
			return nil, err
		}
		prog.add(1)
	}
	total := time.Since(start)
	prog.finish()
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return &latResult{
		Pattern: b.pattern, Size: b.size, Count: b.count,
		P50us: us(h.ValueAtQuantile(50)), P90us: us(h.ValueAtQuantile(90)),
		P99us: us(h.ValueAtQuantile(99)), P999us: us(h.ValueAtQuantile(99.9)),
		MaxUs: us(h.Max()), MeanUs: h.Mean() / 1e3,
		MsgsPerSec: float64(b.count) / total.Seconds(),
	}, nil
}

// latTimer is remote_lat for the streams.
func (b *benchCmd) latTimer(ctx context.Context, out, back string) (*latResult, error) {
	snd, err := b.streamSender(out)
	if err != nil {
		return nil, err
	}
	defer snd.close()
	send := snd.send
	recv, closeRecv, err := b.streamReceiver(back)
	if err != nil {
		return nil, err
	}
	defer closeRecv()
	data, sync := b.message(kindData), b.message(kindSync)
	roundTrip := func(ctx context.Context, m []byte) error {
		if err := send(ctx, m); err != nil {
			return err
		}
		reply, err := recv(ctx)
		if err != nil {
			return err
		}
		if err := b.checkSize(reply); err != nil {
			return err
		}
		if reply[0] != m[0] {
			return fmt.Errorf("got a %q message back, want %q: is another bench on this endpoint?", reply[0], m[0])
		}
		return nil
	}
	// The first round trip is not timed: it waits for the echo side's
	// subscription (pubsub) or connection (pushpull), and the echo side
	// waits for ours before it answers, so nothing is lost.
	warm := func(ctx context.Context) error {
		if err := snd.ready(ctx); err != nil {
			return err
		}
		return roundTrip(ctx, sync)
	}
	rt := func(ctx context.Context) error { return roundTrip(ctx, data) }
	res, err := b.latency(ctx, warm, rt)
	if err != nil {
		return nil, err
	}
	if err := send(ctx, b.message(kindEnd)); err != nil {
		return nil, err
	}
	// The echo side ends on the end message, which it does not echo.
	b.settle(ctx, out, false)
	return res, nil
}

// echoServer is the --bind side of reqrep: an RRServer that echoes. For
// thr it reports the requests it served a second.
func (b *benchCmd) echoServer(ctx context.Context, ep string) (*thrResult, error) {
	opts, err := b.options()
	if err != nil {
		return nil, err
	}
	var (
		mu          sync.Mutex
		first, last time.Time
		n           int
		sizeErr     error
	)
	done := make(chan struct{})
	var once sync.Once
	prog := &progress{}
	if b.mode == "thr" {
		prog = b.startProgress(b.count, "serving")
	}
	defer prog.finish()
	h := func(_ context.Context, req []byte) ([]byte, error) {
		if err := b.checkSize(req); err != nil {
			mu.Lock()
			sizeErr = err
			mu.Unlock()
			once.Do(func() { close(done) })
			return nil, err
		}
		switch req[0] {
		case kindData:
			mu.Lock()
			last = time.Now()
			if n == 0 {
				first = last
			}
			n++
			mu.Unlock()
			prog.add(1)
		case kindEnd:
			once.Do(func() { close(done) })
		}
		return req, nil
	}
	opts = append(opts, zmqkit.WithConcurrency(b.concurrency))
	srv, err := zmqkit.NewRRServer(ep, h, opts...)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	b.printBound(ep, true, srv.Endpoints())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(rctx) }()
	select {
	case <-done:
		cancel() // a graceful stop: the end message's reply is still sent
		if err := <-runErr; !errors.Is(err, context.Canceled) {
			return nil, err
		}
	case err := <-runErr:
		return nil, err
	}
	prog.finish()
	if err := srv.Close(); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if sizeErr != nil {
		return nil, sizeErr
	}
	if b.mode == "lat" {
		return nil, nil
	}
	return b.thrResult(n, last.Sub(first)), nil
}

// reqrepClient is the --connect side of reqrep: it sends --count requests,
// --inflight at a time for thr, one at a time and timed for lat.
func (b *benchCmd) reqrepClient(ctx context.Context, ep string) (any, error) {
	opts, err := b.options()
	if err != nil {
		return nil, err
	}
	cli, err := zmqkit.NewRRClient(ep, opts...)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	b.printBound(ep, false, cli.Endpoints())
	data := b.message(kindData)
	call := func(ctx context.Context, m []byte) error {
		rep, err := cli.Request(ctx, m)
		if err != nil {
			return err
		}
		return b.checkSize(rep)
	}
	var res any
	if b.mode == "lat" {
		lat, err := b.latency(ctx,
			func(ctx context.Context) error { return call(ctx, b.message(kindSync)) },
			func(ctx context.Context) error { return call(ctx, data) })
		if err != nil {
			return nil, err
		}
		res = lat
	} else {
		if err := call(ctx, b.message(kindSync)); err != nil {
			return nil, err
		}
		prog := b.startProgress(b.count, "requests")
		var next atomic.Int64
		errs := make(chan error, b.inflight)
		start := time.Now()
		for i := 0; i < b.inflight; i++ {
			go func() {
				var err error
				for next.Add(1) <= int64(b.count) && err == nil {
					if err = call(ctx, data); err == nil {
						prog.add(1)
					}
				}
				errs <- err
			}()
		}
		var firstErr error
		for i := 0; i < b.inflight; i++ {
			if err := <-errs; err != nil && firstErr == nil {
				firstErr = err
			}
		}
		prog.finish()
		if firstErr != nil {
			return nil, firstErr
		}
		fmt.Fprintf(b.e.stderr, "sent %d requests of %d bytes in %v\n", b.count, b.size, time.Since(start).Round(time.Millisecond))
	}
	if err := call(ctx, b.message(kindEnd)); err != nil {
		return nil, err
	}
	return res, cli.Close()
}

// report prints a result as a table or as JSON.
func (b *benchCmd) report(res any) error {
	if b.json {
		enc := json.NewEncoder(b.e.stdout)
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(b.e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	switch r := res.(type) {
	case *thrResult:
		fmt.Fprintln(tw, "pattern\tsize (B)\tcount\treceived\tlost\telapsed (s)\tmsgs/s\tMB/s\t")
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.3f\t%.0f\t%.1f\t\n", r.Pattern, r.Size, r.Count, r.Received, r.Lost, r.ElapsedSec, r.MsgsPerSec, r.MBPerSec)
	case *latResult:
		fmt.Fprintln(tw, "pattern\tsize (B)\tround trips\tp50 (µs)\tp90 (µs)\tp99 (µs)\tp99.9 (µs)\tmax (µs)\tmean (µs)\tmsgs/s\t")
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t\n", r.Pattern, r.Size, r.Count, r.P50us, r.P90us, r.P99us, r.P999us, r.MaxUs, r.MeanUs, r.MsgsPerSec)
	}
	return tw.Flush()
}

// progress counts messages and, when stderr is a terminal, shows a progress
// bar that a goroutine refreshes from the count (the hot loop only adds).
type progress struct {
	n        atomic.Int64
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func (b *benchCmd) startProgress(total int, what string) *progress {
	p := &progress{}
	f, ok := b.e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	bar := progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(fmt.Sprintf("%s %s %s", b.mode, b.pattern, what)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("msgs"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				bar.Set64(p.n.Load())
			case <-p.stop:
				bar.Set64(p.n.Load())
				bar.Finish()
				return
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.n.Add(n) }

// finish removes the bar; it may be called more than once.
func (p *progress) finish() {
	p.stopOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
			<-p.done
		}
	})
}

// watchIdle calls cancel once the count has stood still for idle, after it
// first moved. The returned func stops the watch.
func (p *progress) watchIdle(idle time.Duration, cancel func()) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(idle / 4)
		defer t.Stop()
		last, since := p.n.Load(), time.Now()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n := p.n.Load(); n != last {
					last, since = n, time.Now()
				} else if n > 0 && time.Since(since) >= idle {
					cancel()
					return
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}
