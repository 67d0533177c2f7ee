package zmqkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/transform"
)

// Built-in message types.
const (
	TypeText = "text" // a text body, in the codec's character encoding on the wire
	TypeJSON = "json" // a JSON body, in the codec's character encoding on the wire
)

// DefaultMsgID is the msgid Publisher uses unless WithMsgID says otherwise,
// as in the Python module.
const DefaultMsgID = 1000

// Message is one decoded "<msgid> <msgtype> <body>" frame.
//
// For the textual types (text and json) Body holds UTF-8 whatever the
// character encoding on the wire; for other types it holds the bytes as
// received. A Message returned by a receive owns its Body.
type Message struct {
	ID   int
	Type string
	Body []byte
}

// Text returns the body as a string.
func (m Message) Text() string { return string(m.Body) }

// JSON decodes a json body into v, as json.Unmarshal does.
func (m Message) JSON(v any) error {
	if m.Type != TypeJSON {
		return fmt.Errorf("zmqkit: message %d is of type %q, not json", m.ID, m.Type)
	}
	return json.Unmarshal(m.Body, v)
}

// Value returns the body as the Python module's subscribe() does: a string
// for text, the decoded JSON value (map[string]any, []any, float64, ...) for
// json, and the raw bytes for any other type.
func (m Message) Value() (any, error) {
	switch m.Type {
	case TypeText:
		return string(m.Body), nil
	case TypeJSON:
		var v any
		if err := json.Unmarshal(m.Body, &v); err != nil {
			return nil, err
		}
		return v, nil
	default:
		return m.Body, nil
	}
}

// String renders the message as its UTF-8 frame, for logs.
func (m Message) String() string {
	return strconv.Itoa(m.ID) + " " + m.Type + " " + string(m.Body)
}

// NewMessage builds a message by the Python module's rule: a string is text;
// a []byte is text too (UTF-8, not copied); a json.RawMessage is json as it
// is; a Message is itself with msgid id; anything else is marshalled to
// json. A negative id is an error.
func NewMessage(id int, v any) (Message, error) {
	if id < 0 {
		return Message{}, invalidHeader("msgid %d is negative", id)
	}
	typ, body, err := encodeValue(v)
	if err != nil {
		return Message{}, err
	}
	if s, ok := v.(string); ok {
		body = []byte(s) // the Message owns its Body; encodeValue aliased the string
	}
	return Message{ID: id, Type: typ, Body: body}, nil
}

// encodeValue is the Python module's rule, in one place: a string or a
// []byte is text, a json.RawMessage is json as it is (checked), a Message
// is its own type and body, anything else is json.Marshal'd. A string's
// body aliases it: use it before the string can change, and never write
// to it. Text is checked when it is framed (see Codec.encode).
func encodeValue(v any) (typ string, body []byte, err error) {
	switch x := v.(type) {
	case string:
		return TypeText, unsafe.Slice(unsafe.StringData(x), len(x)), nil
	case []byte:
		return TypeText, x, nil
	case json.RawMessage:
		if !json.Valid(x) {
			return "", nil, invalidMessage("json.RawMessage is not valid JSON")
		}
		return TypeJSON, x, nil
	case Message:
		return x.Type, x.Body, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", nil, fmt.Errorf("%w: encode json: %w", ErrInvalidMessage, err)
	}
	return TypeJSON, b, nil
}

// BodyCodec marshals values of one message type. Register one on a Codec
// (or with WithBodyCodec) to send and accept a type beyond text and json,
// such as msgpack or protobuf.
type BodyCodec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(body []byte, v any) error
}

// RawCodec is a BodyCodec that passes bytes through: Marshal takes []byte
// or string, Unmarshal fills a *[]byte. Register it for a type whose bodies
// an application handles itself.
type RawCodec struct{}

// Marshal returns v, which must be a []byte or a string.
func (RawCodec) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	}
	return nil, fmt.Errorf("zmqkit: RawCodec cannot marshal %T", v)
}

// Unmarshal copies body into v, which must be a *[]byte.
func (RawCodec) Unmarshal(body []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("zmqkit: RawCodec cannot unmarshal into %T", v)
	}
	*p = append((*p)[:0], body...)
	return nil
}

// Codec frames and parses "<msgid> <msgtype> <body>" frames in one character
// encoding. It is usable on its own, to carry framed messages over any
// pattern, and is safe for concurrent use once its types are registered.
type Codec struct {
	charset string
	enc     encoding.Encoding // nil for UTF-8

	mu     sync.RWMutex
	bodies map[string]BodyCodec

	encoders sync.Pool // *encoding.Encoder
	decoders sync.Pool // *encoding.Decoder
	bufs     sync.Pool // *[]byte
}

// NewCodec returns a codec for the named character encoding, a WHATWG label
// such as "utf-8" (the default when name is ""), "gbk", "gb18030", "big5",
// "shift_jis", "windows-1252" or "latin1". Encodings whose bytes for ASCII
// differ from ASCII (UTF-16) are refused: the frame header must stay ASCII.
func NewCodec(name string) (*Codec, error) {
	c := &Codec{charset: "utf-8", bodies: map[string]BodyCodec{}}
	if name != "" {
		enc, canonical, err := lookupEncoding(name)
		if err != nil {
			return nil, err
		}
		c.charset, c.enc = canonical, enc
	}
	return c, nil
}

func lookupEncoding(name string) (encoding.Encoding, string, error) {
	label := strings.ToLower(strings.TrimSpace(name))
	enc, err := htmlindex.Get(label)
	if err != nil {
		// Python spellings: latin-1, utf_8, shift-jis.
		enc, err = htmlindex.Get(strings.NewReplacer("-", "", "_", "").Replace(label))
		if err != nil {
			enc, err = htmlindex.Get(strings.ReplaceAll(label, "-", "_"))
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w %q (want a WHATWG label such as utf-8, gbk, big5, shift_jis, windows-1252)", ErrUnknownEncoding, name)
	}
	canonical, err := htmlindex.Name(enc)
	if err != nil {
		canonical = label
	}
	canonical = strings.ToLower(canonical)
	if canonical == "utf-8" {
		return nil, canonical, nil
	}
	// The header "<digits> <type> " must read the same in the encoding.
	probe := "0123456789 abcdefghijklmnopqrstuvwxyz"
	got, err := enc.NewEncoder().String(probe)
	if err != nil || got != probe {
		return nil, "", fmt.Errorf("%w %q: not ASCII-compatible, so the frame header could not be read", ErrUnknownEncoding, name)
	}
	return enc, canonical, nil
}

// Encoding returns the canonical name of the codec's character encoding.
func (c *Codec) Encoding() string { return c.charset }

// Register adds a body codec for type typ, a token of printable ASCII
// without spaces. text and json are built in, as the Python module defines
// them, and cannot be replaced: registering either is an error.
func (c *Codec) Register(typ string, bc BodyCodec) error {
	if err := checkType(typ); err != nil {
		return invalidBy("Codec.Register", err)
	}
	if typ == TypeText || typ == TypeJSON {
		return fmt.Errorf("%w: message type %q is built in and cannot be replaced", ErrInvalidOption, typ)
	}
	if bc == nil {
		return fmt.Errorf("%w: nil BodyCodec for %q", ErrInvalidOption, typ)
	}
	c.mu.Lock()
	c.bodies[typ] = bc
	c.mu.Unlock()
	return nil
}

func (c *Codec) body(typ []byte) (string, BodyCodec, bool) {
	switch string(typ) {
	case TypeText:
		return TypeText, nil, true
	case TypeJSON:
		return TypeJSON, nil, true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, bc := range c.bodies { // few entries; returns the interned name
		if name == string(typ) {
			return name, bc, true
		}
	}
	return "", nil, false
}

// checkType refuses a type token that would break the frame: it must be
// printable ASCII without spaces. The error wraps ErrInvalidMessage; a
// message's encoder makes it a header error (also ErrInvalidArgument),
// an option's setter an option error.
func checkType(typ string) error {
	if typ == "" {
		return invalidMessage("empty message type")
	}
	for i := 0; i < len(typ); i++ {
		if typ[i] <= ' ' || typ[i] >= 0x7f {
			return invalidMessage("message type %q must be printable ASCII without spaces", typ)
		}
	}
	return nil
}

// Marshal builds a message of type typ from v: text takes a string or
// []byte, json marshals v (a json.RawMessage as it is), and other types use
// their registered BodyCodec.
func (c *Codec) Marshal(id int, typ string, v any) (Message, error) {
	if id < 0 {
		return Message{}, invalidHeader("msgid %d is negative", id)
	}
	name, bc, ok := c.body([]byte(typ))
	if !ok {
		return Message{}, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}
	if bc != nil {
		b, err := bc.Marshal(v)
		if err != nil {
			return Message{}, fmt.Errorf("%w: encode %s: %w", ErrInvalidMessage, name, err)
		}
		return Message{ID: id, Type: name, Body: b}, nil
	}
	switch v.(type) {
	case string, []byte:
		if name == TypeText {
			return NewMessage(id, v)
		}
	case json.RawMessage:
		if name == TypeJSON {
			return NewMessage(id, v)
		}
	default:
		if name == TypeText {
			return Message{}, invalidMessage("a text message takes a string or []byte, not %T", v)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Message{}, fmt.Errorf("%w: encode json: %w", ErrInvalidMessage, err)
	}
	return Message{ID: id, Type: TypeJSON, Body: b}, nil
}

// Unmarshal decodes m's body into v by m's type: text into a *string or
// *[]byte, json by json.Unmarshal, other types by their BodyCodec.
func (c *Codec) Unmarshal(m Message, v any) error {
	_, bc, ok := c.body([]byte(m.Type))
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownType, m.Type)
	}
	switch {
	case bc != nil:
		return bc.Unmarshal(m.Body, v)
	case m.Type == TypeJSON:
		return json.Unmarshal(m.Body, v)
	}
	switch p := v.(type) {
	case *string:
		*p = string(m.Body)
	case *[]byte:
		*p = append((*p)[:0], m.Body...)
	default:
		return fmt.Errorf("zmqkit: a text message decodes into *string or *[]byte, not %T", v)
	}
	return nil
}

// Frame returns m as one wire frame.
func (c *Codec) Frame(m Message) ([]byte, error) { return c.AppendFrame(nil, m) }

// AppendFrame appends m's wire frame to dst. Text and json bodies are
// converted from UTF-8 to the codec's encoding; other bodies go as they are.
func (c *Codec) AppendFrame(dst []byte, m Message) ([]byte, error) {
	hdr, body, err := c.encode(dst, m.ID, m.Type, m.Body, false)
	if err != nil {
		return dst, err
	}
	return append(hdr, body...), nil
}

// appendValue is Publisher.Publish's encoding: v by the Python module's
// rule (encodeValue) under msgid id, or a Message under its own. It returns
// the header and the wire body as encode does.
func (c *Codec) appendValue(dst []byte, id int, v any) (hdr, wire []byte, err error) {
	typ, body, err := encodeValue(v)
	if err != nil {
		return dst, nil, err
	}
	// encodeValue made or checked any json body, except a Message's.
	jsonOK := typ == TypeJSON
	if m, ok := v.(Message); ok {
		id, jsonOK = m.ID, false
	}
	return c.encode(dst, id, typ, body, jsonOK)
}

// encode is the one encoder of the wire format: it appends the frame
// header "<id> <typ> " to hdr and returns it with the body as it goes on
// the wire, after it, in the same frame. Text and json bodies are checked
// (UTF-8; JSON unless jsonOK says the body came from json.Marshal) and, in
// an encoding other than UTF-8, converted into hdr's spare capacity (or a
// new buffer); any other body is returned as it is.
func (c *Codec) encode(hdr []byte, id int, typ string, body []byte, jsonOK bool) (header, wire []byte, err error) {
	if id < 0 {
		return hdr, nil, invalidHeader("msgid %d is negative", id)
	}
	if err := checkType(typ); err != nil {
		return hdr, nil, headerError{err}
	}
	hdr = strconv.AppendInt(hdr, int64(id), 10)
	hdr = append(append(append(hdr, ' '), typ...), ' ')
	switch typ {
	case TypeJSON:
		if !jsonOK && !json.Valid(body) {
			return hdr, nil, invalidMessage("json body is not valid JSON")
		}
		fallthrough
	case TypeText:
		if !utf8.Valid(body) {
			return hdr, nil, invalidMessage("%s body is not valid UTF-8", typ)
		}
		if c.enc != nil {
			if body, err = c.appendText(hdr[len(hdr):], body); err != nil {
				return hdr, nil, err
			}
		}
	}
	return hdr, body, nil
}

// appendText appends valid UTF-8 text in the codec's (non-UTF-8) encoding.
func (c *Codec) appendText(dst, utf []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*encoding.Encoder)
	if e == nil {
		e = c.enc.NewEncoder()
	}
	out, err := appendTransform(dst, e, utf)
	c.encoders.Put(e)
	if err != nil {
		return dst, fmt.Errorf("%w: text has no form in %s: %w", ErrInvalidMessage, c.charset, err)
	}
	return out, nil
}

func appendTransform(dst []byte, t transform.Transformer, src []byte) ([]byte, error) {
	t.Reset()
	for {
		if cap(dst)-len(dst) < len(src)+16 {
			dst = append(dst[:cap(dst)], make([]byte, len(src)+16)...)[:len(dst)]
		}
		nDst, nSrc, err := t.Transform(dst[len(dst):cap(dst)], src, true)
		dst, src = dst[:len(dst)+nDst], src[nSrc:]
		if errors.Is(err, transform.ErrShortDst) {
			dst = append(dst[:cap(dst)], make([]byte, cap(dst)+16)...)[:len(dst)]
			continue
		}
		return dst, err
	}
}

// Decode parses one wire frame as the Python module's subscribe() does: it
// splits the frame at its first two spaces, reads the msgid as Python's
// int() would (leading zeros, a sign and digit-separating underscores
// allowed), and takes any type token. Text and json bodies are converted
// to UTF-8 and checked (valid in the encoding; valid JSON), where the
// Python module would fail on them; the body of any other type is returned
// as it came, with Type set. Body may alias frame when the encoding is
// UTF-8 or the type is neither text nor json. Any defect is a
// *MalformedError; Decode never panics.
func (c *Codec) Decode(frame []byte) (Message, error) {
	sp := bytes.IndexByte(frame, ' ')
	if sp < 0 {
		if len(frame) == 0 {
			return Message{}, malformed(frame, nil, "empty frame")
		}
		return Message{}, malformed(frame, nil, "no space after msgid")
	}
	id, err := parseID(frame[:sp])
	if err != nil {
		return Message{}, malformed(frame, nil, "%s", err)
	}
	rest := frame[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return Message{}, malformed(frame, nil, "no space after type %q", clip(rest))
	}
	typ, body := rest[:sp], rest[sp+1:]
	name, _, known := c.body(typ)
	if !known {
		name = string(typ)
	}
	if name == TypeText || name == TypeJSON {
		if body, err = c.decodeText(body); err != nil {
			return Message{}, malformed(frame, err, "%s body: %v", name, err)
		}
		if name == TypeJSON && !json.Valid(body) {
			var v any
			err := json.Unmarshal(body, &v) // for the position of the error
			return Message{}, malformed(frame, err, "invalid JSON: %v", err)
		}
	}
	return Message{ID: id, Type: name, Body: body}, nil
}

func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// parseID reads a msgid as Python's int() reads a str: white space around
// it, an optional sign, decimal digits with single underscores between
// them, leading zeros allowed. Values beyond int are refused.
func parseID(tok []byte) (int, error) {
	t := bytes.Trim(tok, "\t\n\v\f\r")
	if len(t) == 0 {
		return 0, errors.New("missing msgid")
	}
	neg := t[0] == '-'
	if t[0] == '+' || t[0] == '-' {
		t = t[1:]
	}
	if len(t) == 0 || t[0] == '_' || t[len(t)-1] == '_' {
		return 0, fmt.Errorf("bad msgid %q: not a decimal number", clip(tok))
	}
	n := 0
	for i, ch := range t {
		if ch == '_' {
			if t[i-1] == '_' {
				return 0, fmt.Errorf("bad msgid %q: not a decimal number", clip(tok))
			}
			continue
		}
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("bad msgid %q: not a decimal number", clip(tok))
		}
		d := int(ch - '0')
		if n > (math.MaxInt-d)/10 {
			return 0, fmt.Errorf("msgid %q out of range", clip(tok))
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, nil
}

// decodeText converts a body from the codec's encoding to UTF-8, refusing
// bytes that are not valid in it.
func (c *Codec) decodeText(body []byte) ([]byte, error) {
	if c.enc == nil {
		if !utf8.Valid(body) {
			return nil, errors.New("not valid utf-8")
		}
		return body, nil
	}
	d, _ := c.decoders.Get().(*encoding.Decoder)
	if d == nil {
		d = c.enc.NewDecoder()
	}
	out, err := appendTransform(make([]byte, 0, len(body)*3/2+4), d, body)
	c.decoders.Put(d)
	if err != nil {
		return nil, fmt.Errorf("not valid %s: %w", c.charset, err)
	}
	// x/text decoders replace bad input with U+FFFD rather than failing; a
	// U+FFFD that does not encode back to the input marks bad input.
	if bytes.ContainsRune(out, utf8.RuneError) {
		back, err := c.enc.NewEncoder().Bytes(out)
		if err != nil || !bytes.Equal(back, body) {
			return nil, fmt.Errorf("not valid %s", c.charset)
		}
	}
	return out, nil
}

// getBuf and putBuf recycle frame buffers for senders.
func (c *Codec) getBuf() *[]byte {
	if p, ok := c.bufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, 256)
	return &b
}

func (c *Codec) putBuf(p *[]byte) {
	if cap(*p) > 64<<10 {
		return // let large buffers go
	}
	*p = (*p)[:0]
	c.bufs.Put(p)
}
