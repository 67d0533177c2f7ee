package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"

	"github.com/zmqkit/zmqkit"
)

// What a command's socket does, for the flags and options that apply to it
// (the library refuses an option given to a type it does not apply to).
const (
	sends      = 1 << iota // --sndhwm
	receives               // --rcvhwm
	reports                // the type takes WithErrorHandler
	noEncoding             // no --encoding: bytes pass through untouched
)

// DefaultLinger is how long a command's sockets keep sending what is queued
// after it ends: longer than the library's 200 ms, because a command that
// pushes or publishes a file and exits wants it delivered.
const DefaultLinger = time.Second

// common holds the flags every messaging command has: encoding, logging,
// events, heartbeats, high-water marks, linger and CURVE.
type common struct {
	e     *env
	name  string
	cmd   *cobra.Command
	flags int

	encoding         string
	verbose          bool
	events           bool
	heartbeat        time.Duration
	heartbeatTimeout time.Duration
	sndhwm, rcvhwm   int
	linger           time.Duration

	curveServerKey string
	curveAllow     string
	curveAllowAny  bool
	curveClientKey string

	log  *slog.Logger
	zctx *zmqkit.Context

	// holdReports keeps the error callback's reports instead of printing
	// them, for a command that prints one line when it fails (req): the
	// last one is the reason it gives (heldReport).
	holdReports bool
	reportMu    sync.Mutex
	lastReport  string
}

// heldReport returns the last report held (holdReports), or "".
func (c *common) heldReport() string {
	c.reportMu.Lock()
	defer c.reportMu.Unlock()
	return c.lastReport
}

// addCommon registers the common flags on cmd.
func addCommon(cmd *cobra.Command, e *env, flags int) *common {
	c := &common{e: e, name: cmd.Name(), cmd: cmd, flags: flags, log: slog.New(slog.DiscardHandler)}
	f := cmd.Flags()
	if flags&noEncoding == 0 {
		f.StringVar(&c.encoding, "encoding", "utf-8", "character encoding of text on the wire (gbk, latin1, shift_jis, any WHATWG label); the terminal side is UTF-8")
	}
	f.BoolVarP(&c.verbose, "verbose", "v", false, "log what the sockets do, connection events included (log/slog, to stderr)")
	f.BoolVar(&c.events, "events", false, `print connection events on stderr, one line each: "event KIND ENDPOINT [peer ADDR][: REASON]"`)
	f.DurationVar(&c.heartbeat, "heartbeat", 0, "send ZMTP heartbeats this often and drop silent peers (0: off)")
	f.DurationVar(&c.heartbeatTimeout, "heartbeat-timeout", 0, "drop a peer silent this long (default 3 × --heartbeat)")
	if flags&sends != 0 {
		f.IntVar(&c.sndhwm, "sndhwm", zmqkit.DefaultHWM, "send high-water mark, messages per peer (0: no limit)")
	}
	if flags&receives != 0 {
		f.IntVar(&c.rcvhwm, "rcvhwm", zmqkit.DefaultHWM, "receive high-water mark, messages per peer (0: no limit)")
	}
	f.DurationVar(&c.linger, "linger", DefaultLinger, "how long queued messages may still leave after the command ends")
	f.StringVar(&c.curveServerKey, "curve-server-key", "", "CURVE: on a server its own NAME.key_secret; on a client (--curve-client-key) the server's NAME.key")
	f.StringVar(&c.curveAllow, "curve-allow", "", "CURVE server: admit only clients whose NAME.key certificate is in this directory")
	f.BoolVar(&c.curveAllowAny, "curve-allow-any", false, "CURVE server: admit any client with a valid key pair (encrypts, authenticates no client)")
	f.StringVar(&c.curveClientKey, "curve-client-key", "", "CURVE client: its own NAME.key_secret (makes this process a client; needs --curve-server-key)")
	return c
}

// wrap runs a command's body, then closes the command's Context, which
// waits up to --linger for queued messages to leave: closing an object
// alone hands them to libzmq's I/O thread, which dies with the process
// (see the API notes in the README).
func (c *common) wrap(f func(ctx context.Context, args []string) error) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		err := f(ctx, args)
		if c.zctx != nil {
			t0 := time.Now()
			if cerr := c.zctx.Close(); err == nil {
				err = cerr
			}
			c.log.Debug("context closed", "took", time.Since(t0))
		}
		return err
	}
}

// setup checks the common flags, prepares the logger and makes the
// command's Context. It runs first in every command's body.
func (c *common) setup() error {
	if c.verbose {
		c.log = slog.New(slog.NewTextHandler(c.e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if c.heartbeat < 0 || c.heartbeatTimeout < 0 {
		return usagef("--heartbeat and --heartbeat-timeout must not be negative")
	}
	if c.heartbeatTimeout > 0 && c.heartbeat == 0 {
		return usagef("--heartbeat-timeout needs --heartbeat")
	}
	switch {
	case c.curveClientKey != "":
		if c.curveServerKey == "" {
			return usagef("--curve-client-key needs --curve-server-key (the server's NAME.key)")
		}
		if c.curveAllow != "" || c.curveAllowAny {
			return usagef("--curve-allow and --curve-allow-any are for a server; this process is a client (--curve-client-key)")
		}
	case c.curveServerKey != "":
		if c.curveAllow == "" && !c.curveAllowAny {
			return usagef("a CURVE server needs --curve-allow DIR (the clients it admits) or --curve-allow-any")
		}
		if c.curveAllow != "" && c.curveAllowAny {
			return usagef("give --curve-allow or --curve-allow-any, not both")
		}
	case c.curveAllow != "" || c.curveAllowAny:
		return usagef("--curve-allow and --curve-allow-any need --curve-server-key (the server's NAME.key_secret)")
	}
	zctx, err := zmqkit.NewContext()
	if err != nil {
		return err
	}
	c.zctx = zctx
	return nil
}

// options returns the library options the common flags ask for, for the
// command's own socket type.
func (c *common) options() ([]zmqkit.Option, error) { return c.optionsFor(c.flags) }

// optionsFor returns the options for a socket type that sends, receives or
// reports as flags says. Options are opaque, and the library refuses one
// given to a type it does not apply to, so the command keeps its own copy
// of the library's applies-to table (see the API notes in the README).
func (c *common) optionsFor(flags int) ([]zmqkit.Option, error) {
	opts := []zmqkit.Option{zmqkit.WithZMQContext(c.zctx), zmqkit.WithLogger(c.log), zmqkit.WithLinger(c.linger)}
	if c.heartbeat > 0 {
		timeout := c.heartbeatTimeout
		if timeout == 0 {
			timeout = 3 * c.heartbeat
		}
		opts = append(opts, zmqkit.WithHeartbeat(c.heartbeat, timeout))
	}
	if flags&sends != 0 && c.flags&sends != 0 {
		opts = append(opts, zmqkit.WithSendHWM(c.sndhwm))
	}
	if flags&receives != 0 && c.flags&receives != 0 {
		opts = append(opts, zmqkit.WithRecvHWM(c.rcvhwm))
	}
	if c.events || c.verbose {
		opts = append(opts, zmqkit.WithEvents(c.printEvent))
	}
	if flags&reports != 0 {
		opts = append(opts, zmqkit.WithErrorHandler(func(err error) {
			line := oneLine(trimLibPrefix(err.Error()))
			if c.holdReports {
				c.reportMu.Lock()
				c.lastReport = line
				c.reportMu.Unlock()
				c.log.Debug("held report", "err", line)
				return
			}
			fmt.Fprintf(c.e.stderr, "zmqkit %s: %s\n", c.name, line)
		}))
	}
	curve, err := c.curveOption()
	if err != nil {
		return nil, err
	}
	if curve != nil {
		opts = append(opts, *curve)
	}
	return opts, nil
}

// printEvent reports one connection event: with --events as a line on
// stderr ("event accepted tcp://127.0.0.1:5555 peer 127.0.0.1:50312",
// "event handshake failed tcp://127.0.0.1:5555 peer ...: REASON"), else
// (--verbose) to the log. The library calls it from one goroutine per
// object, in order, and delivers every queued event before Close returns,
// so no line comes after the command's own last one.
func (c *common) printEvent(ev zmqkit.Event) {
	if !c.events {
		attrs := []any{"kind", ev.Kind.String(), "endpoint", ev.Endpoint}
		if ev.Peer != "" {
			attrs = append(attrs, "peer", ev.Peer)
		}
		if ev.Err != nil {
			attrs = append(attrs, "err", ev.Err)
		}
		c.log.Debug("event", attrs...)
		return
	}
	fmt.Fprintf(c.e.stderr, "event %s\n", oneLine(trimLibPrefix(ev.String())))
}

// curveOption reads the key files the CURVE flags name.
func (c *common) curveOption() (*zmqkit.Option, error) {
	switch {
	case c.curveClientKey != "":
		keys, err := zmqkit.LoadKeyPair(c.curveClientKey)
		if err != nil {
			return nil, flagErr("--curve-client-key", err)
		}
		server, err := zmqkit.LoadPublicKey(c.curveServerKey)
		if err != nil {
			return nil, flagErr("--curve-server-key", err)
		}
		o := zmqkit.WithCurveClient(keys, server)
		return &o, nil
	case c.curveServerKey != "":
		keys, err := zmqkit.LoadKeyPair(c.curveServerKey)
		if err != nil {
			return nil, flagErr("--curve-server-key", err)
		}
		policy := zmqkit.AllowAnyClient()
		if c.curveAllow != "" {
			allowed, err := zmqkit.LoadPublicKeys(c.curveAllow)
			if err != nil {
				return nil, flagErr("--curve-allow", err)
			}
			policy = zmqkit.AllowKeys(allowed...)
		}
		o := zmqkit.WithCurveServer(keys, policy)
		return &o, nil
	}
	return nil, nil
}

// flagErr is err, about the file a flag names, prefixed with the flag. The
// library's own "zmqkit: " prefix is dropped, as at the start of a line,
// since the command prints its own "zmqkit CMD: " first.
func flagErr(flag string, err error) error { return &flagError{flag: flag, err: err} }

type flagError struct {
	flag string
	err  error
}

func (f *flagError) Error() string { return f.flag + ": " + trimLibPrefix(f.err.Error()) }
func (f *flagError) Unwrap() error { return f.err }

// settle gives a sender that connected time to hand libzmq's queue to the
// network before it closes: libzmq 4.3 drops part of a connecting socket's
// queue at close with a finite ZMQ_LINGER (an infinite one, which the
// library rightly refuses, does not), so "push >ep < file" would lose the
// end of the file. It waits min(--linger, 100 ms), and not at all after
// Ctrl-C. TODO(library): remove once Close (or a Drain) delivers the queue
// of a connecting socket; see the API notes in the README.
func (c *common) settle(ctx context.Context, endpoints string, defaultBind bool) {
	connects := false
	for _, raw := range strings.Split(endpoints, ",") {
		s := strings.TrimSpace(raw)
		connects = connects || strings.HasPrefix(s, ">") || (!defaultBind && !strings.HasPrefix(s, "@"))
	}
	if !connects || ctx.Err() != nil {
		return
	}
	d := min(c.linger, 100*time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// printBound writes "bound ENDPOINT" on stderr for each endpoint the object
// bound, with ephemeral ports resolved, so that a script (or a test) can
// bind tcp://127.0.0.1:* and learn the port.
//
// Endpoints() lists bound endpoints first, then connected ones, without
// saying which is which: the command counts the binds in its own argument
// by the library's prefix rule (see the API notes in the README).
func (c *common) printBound(endpoints string, defaultBind bool, got []string) {
	n := 0
	for _, raw := range strings.Split(endpoints, ",") {
		s := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(s, "@"):
			n++
		case strings.HasPrefix(s, ">"):
		case defaultBind:
			n++
		}
	}
	for i := 0; i < n && i < len(got); i++ {
		fmt.Fprintf(c.e.stderr, "bound %s\n", got[i])
	}
	c.log.Debug("endpoints", "cmd", c.name, "endpoints", got)
}

// transcoder converts text between UTF-8 (the terminal) and --encoding (the
// wire) for the commands that carry raw bodies; pub and sub leave it to
// the library's codec.
type transcoder struct{ enc encoding.Encoding }

func (c *common) transcoder() (*transcoder, error) {
	// The library knows the encoding names and their aliases, but only
	// applies them inside "<msgid> <type> <body>" frames; a raw body has to
	// go through x/text here (see the API notes in the README).
	codec, err := zmqkit.NewCodec(c.encoding)
	if err != nil {
		return nil, usagef("--encoding: %s", trimLibPrefix(err.Error()))
	}
	if codec.Encoding() == "utf-8" {
		return &transcoder{}, nil
	}
	enc, err := htmlindex.Get(codec.Encoding())
	if err != nil {
		return nil, usagef("--encoding: %v", err)
	}
	return &transcoder{enc: enc}, nil
}

// toWire converts UTF-8 text to the wire's encoding.
func (t *transcoder) toWire(b []byte) ([]byte, error) {
	if t == nil || t.enc == nil {
		return b, nil
	}
	out, err := t.enc.NewEncoder().Bytes(b)
	if err != nil {
		return nil, fmt.Errorf("text has no form in the wire encoding: %w", err)
	}
	return out, nil
}

// fromWire converts the wire's encoding to UTF-8 text.
func (t *transcoder) fromWire(b []byte) []byte {
	if t == nil || t.enc == nil {
		return b
	}
	out, err := t.enc.NewDecoder().Bytes(b)
	if err != nil {
		return b
	}
	return out
}

// lineReader reads lines from r in a goroutine, so that a command waiting
// for input still ends on Ctrl-C. The goroutine may stay blocked in a read
// of a terminal until the process exits, which is the only way to stop a
// read of standard input.
type lineReader struct {
	lines chan []byte
	err   error // set before lines is closed
}

func readLines(ctx context.Context, r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan []byte, 64)}
	go func() {
		defer close(lr.lines)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				line = bytes.TrimSuffix(line, []byte("\n"))
				line = bytes.TrimSuffix(line, []byte("\r"))
				select {
				case lr.lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					lr.err = err
				}
				return
			}
		}
	}()
	return lr
}

// next returns the next line, or ok false at the end of the input (err says
// why, nil at EOF) or of ctx.
func (lr *lineReader) next(ctx context.Context) (line []byte, ok bool, err error) {
	select {
	case l, ok := <-lr.lines:
		if !ok {
			return nil, false, lr.err
		}
		return l, true, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// source yields the messages a sending command sends: its arguments, or
// one per line of standard input when it has none. With count > 0 it stops
// after count messages, cycling through the arguments as often as needed.
type source struct {
	args  []string
	count int
	n     int
	lines *lineReader
}

func newSource(ctx context.Context, e *env, args []string, count int) *source {
	s := &source{args: args, count: count}
	if len(args) == 0 {
		s.lines = readLines(ctx, e.stdin)
	}
	return s
}

// next returns the next message, or ok false when there are no more (err
// nil) or input failed or ctx ended (err set).
func (s *source) next(ctx context.Context) (msg []byte, ok bool, err error) {
	if s.count > 0 && s.n >= s.count {
		return nil, false, nil
	}
	if s.lines == nil {
		if s.count == 0 && s.n >= len(s.args) {
			return nil, false, nil
		}
		msg = []byte(s.args[s.n%len(s.args)])
	} else {
		var ok bool
		if msg, ok, err = s.lines.next(ctx); !ok {
			return nil, false, err
		}
	}
	s.n++
	return msg, true, nil
}

// pacer spaces sends to a rate, in messages per second (0: no limit).
type pacer struct {
	ivl  time.Duration
	next time.Time
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	return &pacer{ivl: time.Duration(float64(time.Second) / rate)}
}

func (p *pacer) wait(ctx context.Context) error {
	if p.ivl == 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.IsZero() || p.next.Before(now) {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	p.next = p.next.Add(p.ivl)
	return nil
}

// lineWriter writes one message per line to stdout and flushes each, so a
// reader sees it at once (a pipe to grep, a test).
type lineWriter struct {
	w *bufio.Writer
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{w: bufio.NewWriter(w)} }

func (l *lineWriter) line(parts ...[]byte) error {
	for i, p := range parts {
		if i > 0 {
			l.w.WriteByte(' ')
		}
		l.w.Write(p)
	}
	l.w.WriteByte('\n')
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
