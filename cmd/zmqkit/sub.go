package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/zmqkit/zmqkit"
)

type subCmd struct {
	*common
	msgids   []int
	prefixes []string
	raw      bool
	json     bool
	count    int
}

func newSubCmd(e *env) *cobra.Command {
	s := &subCmd{}
	cmd := &cobra.Command{
		Use:   "sub ENDPOINTS [--msgid N ...] [--raw] [--json] [--count N]",
		Short: "Subscribe and print one line per message",
		Long: `sub connects (by default) to one or more publishers and prints each message
on stdout, one line each: "ID TYPE BODY" (1000 text hello). A json body is
printed compact; newlines and carriage returns in a text body are printed as
\n and \r, so that each message stays one line (--json is exact).

--json prints one JSON object per line instead, with keys id, type, body (a
string for text, the decoded value for json) and time (when it arrived,
RFC 3339). --raw prints messages as they came, undecoded, their frames
separated by a space (--json: {"frames": [...], "time": ...}), for
publishers that do not speak "<msgid> <type> <body>".

Without --msgid or --prefix, every message is received. --msgid matches a
msgid exactly (1000 does not match 10001); --prefix is a plain ZeroMQ prefix
subscription. Malformed messages are reported on stderr and skipped.
sub ends on Ctrl-C (status 0) or after --count messages.`,
		Example: `  zmqkit sub tcp://localhost:5555
  zmqkit sub tcp://localhost:5555 --msgid 1000 --msgid 2000 --json --count 10
  zmqkit sub tcp://localhost:5556 --raw --prefix "10001 "     # the ZeroMQ Guide's weather server`,
		Args: cobra.ExactArgs(1),
	}
	s.common = addCommon(cmd, e, receives|reports)
	f := cmd.Flags()
	f.IntSliceVar(&s.msgids, "msgid", nil, "receive only this msgid (repeatable, or comma-separated)")
	f.StringArrayVar(&s.prefixes, "prefix", nil, "subscribe to messages starting with this prefix (repeatable)")
	f.BoolVar(&s.raw, "raw", false, "print messages undecoded, as they came")
	f.BoolVar(&s.json, "json", false, "print JSON lines: id, type, body, time")
	f.IntVar(&s.count, "count", 0, "exit after this many messages (0: run until Ctrl-C)")
	cmd.RunE = runner("sub", s.wrap(s.run))
	return cmd
}

func (s *subCmd) run(ctx context.Context, args []string) error {
	if err := s.setup(); err != nil {
		return err
	}
	if s.count < 0 {
		return usagef("--count must not be negative")
	}
	for _, id := range s.msgids {
		if id < 0 {
			return usagef("--msgid %d: a msgid is not negative", id)
		}
	}
	if _, err := zmqkit.NewCodec(s.encoding); err != nil {
		return usagef("--encoding: %s", trimLibPrefix(err.Error()))
	}
	opts, err := s.options()
	if err != nil {
		return err
	}
	opts = append(opts, zmqkit.WithEncoding(s.encoding))
	if len(s.msgids) > 0 {
		opts = append(opts, zmqkit.WithMsgIDs(s.msgids...))
	}
	sub, err := zmqkit.NewSubscriber(args[0], opts...)
	if err != nil {
		return err
	}
	defer sub.Close()
	if len(s.prefixes) > 0 {
		for _, p := range s.prefixes {
			if err := sub.SubscribePrefix([]byte(p)); err != nil {
				return err
			}
		}
		if len(s.msgids) == 0 {
			// A Subscriber made without WithMsgIDs subscribes to everything,
			// and there is no option for "prefixes only": drop the catch-all
			// subscription again, and filter what slipped through meanwhile
			// (see the API notes in the README).
			if err := sub.UnsubscribePrefix(nil); err != nil {
				return err
			}
		}
	}
	s.printBound(args[0], false, sub.Endpoints())

	out := newLineWriter(s.e.stdout)
	tc, err := s.transcoder()
	if err != nil {
		return err
	}
	for n := 0; s.count == 0 || n < s.count; {
		var line []byte
		if s.raw {
			frames, err := sub.ReceiveFrames(ctx)
			if err != nil {
				if stopped(ctx, err) {
					return nil
				}
				return err
			}
			if !s.wanted(frames[0]) {
				continue
			}
			for i := range frames {
				frames[i] = tc.fromWire(frames[i])
			}
			line = s.rawLine(frames)
		} else {
			m, err := sub.Receive(ctx)
			if err != nil {
				if stopped(ctx, err) {
					return nil
				}
				if errors.Is(err, zmqkit.ErrMalformed) {
					fmt.Fprintf(s.e.stderr, "zmqkit sub: %s\n", oneLine(trimLibPrefix(err.Error())))
					continue
				}
				return err
			}
			if !s.wantedMsg(m) {
				continue
			}
			if line, err = s.msgLine(m); err != nil {
				return err
			}
		}
		if err := out.line(line); err != nil {
			return err
		}
		n++
	}
	return nil
}

// wanted filters what slipped through before the catch-all subscription
// was dropped (--prefix without --msgid).
func (s *subCmd) wanted(frame []byte) bool {
	if len(s.prefixes) == 0 || len(s.msgids) > 0 {
		return true
	}
	for _, p := range s.prefixes {
		if bytes.HasPrefix(frame, []byte(p)) {
			return true
		}
	}
	return false
}

func (s *subCmd) wantedMsg(m zmqkit.Message) bool {
	if len(s.prefixes) == 0 || len(s.msgids) > 0 {
		return true
	}
	// The prefix applies to the frame as it came; its header is ASCII in
	// every encoding the library accepts.
	frame := append([]byte(strconv.Itoa(m.ID)+" "+m.Type+" "), m.Body...)
	for _, p := range s.prefixes {
		if bytes.HasPrefix(frame, []byte(p)) {
			return true
		}
	}
	return false
}

// jsonLine is one --json output line.
type jsonLine struct {
	ID           int    `json:"id"`
	Type         string `json:"type"`
	Body         any    `json:"body"`
	BodyEncoding string `json:"body_encoding,omitempty"` // "base64" for a body that is not UTF-8
	Time         string `json:"time"`
}

type rawJSONLine struct {
	Frames         []string `json:"frames"`
	FramesEncoding string   `json:"frames_encoding,omitempty"`
	Time           string   `json:"time"`
}

func now() string { return time.Now().Format(time.RFC3339Nano) }

func (s *subCmd) msgLine(m zmqkit.Message) ([]byte, error) {
	if !s.json {
		body := m.Body
		if m.Type == zmqkit.TypeJSON {
			var buf bytes.Buffer
			if json.Compact(&buf, m.Body) == nil {
				body = buf.Bytes()
			}
		}
		line := append([]byte(strconv.Itoa(m.ID)+" "+m.Type+" "), escapeNewlines(body)...)
		return line, nil
	}
	l := jsonLine{ID: m.ID, Type: m.Type, Time: now()}
	switch {
	case m.Type == zmqkit.TypeJSON:
		l.Body = json.RawMessage(m.Body)
	case utf8.Valid(m.Body):
		l.Body = string(m.Body)
	default:
		l.Body, l.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
	}
	return json.Marshal(l)
}

func (s *subCmd) rawLine(frames [][]byte) []byte {
	if !s.json {
		var line []byte
		for i, f := range frames {
			if i > 0 {
				line = append(line, ' ')
			}
			line = append(line, escapeNewlines(f)...)
		}
		return line
	}
	l := rawJSONLine{Frames: make([]string, len(frames)), Time: now()}
	valid := true
	for _, f := range frames {
		valid = valid && utf8.Valid(f)
	}
	for i, f := range frames {
		if valid {
			l.Frames[i] = string(f)
		} else {
			l.Frames[i] = base64.StdEncoding.EncodeToString(f)
		}
	}
	if !valid {
		l.FramesEncoding = "base64"
	}
	b, _ := json.Marshal(l) // strings only: cannot fail
	return b
}

// escapeNewlines keeps a message on one output line.
func escapeNewlines(b []byte) []byte {
	if !bytes.ContainsAny(b, "\r\n") {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\n"), []byte(`\n`))
	return bytes.ReplaceAll(b, []byte("\r"), []byte(`\r`))
}
