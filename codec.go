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
// is; anything else is marshalled to json. A negative id is an error.
func NewMessage(id int, v any) (Message, error) {
	if id < 0 {
		return Message{}, fmt.Errorf("zmqkit: msgid %d is negative", id)
	}
	switch x := v.(type) {
	case string:
		return Message{ID: id, Type: TypeText, Body: []byte(x)}, nil
	case []byte:
		return Message{ID: id, Type: TypeText, Body: x}, nil
	case json.RawMessage:
		if !json.Valid(x) {
			return Message{}, errors.New("zmqkit: json.RawMessage is not valid JSON")
		}
		return Message{ID: id, Type: TypeJSON, Body: x}, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return Message{}, fmt.Errorf("zmqkit: encode json: %w", err)
		}
		return Message{ID: id, Type: TypeJSON, Body: b}, nil
	}
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
		return err
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

func checkType(typ string) error {
	if typ == "" {
		return fmt.Errorf("%w: empty message type", ErrInvalidOption)
	}
	for i := 0; i < len(typ); i++ {
		if typ[i] <= ' ' || typ[i] >= 0x7f {
			return fmt.Errorf("%w: message type %q must be printable ASCII without spaces", ErrInvalidOption, typ)
		}
	}
	return nil
}

// Marshal builds a message of type typ from v: text takes a string or
// []byte, json marshals v, and other types use their registered BodyCodec.
func (c *Codec) Marshal(id int, typ string, v any) (Message, error) {
	if id < 0 {
		return Message{}, fmt.Errorf("zmqkit: msgid %d is negative", id)
	}
	name, bc, ok := c.body([]byte(typ))
	if !ok {
		return Message{}, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}
	if bc != nil {
		b, err := bc.Marshal(v)
		if err != nil {
			return Message{}, fmt.Errorf("zmqkit: encode %s: %w", name, err)
		}
		return Message{ID: id, Type: name, Body: b}, nil
	}
	if name == TypeText {
		switch x := v.(type) {
		case string:
			return Message{ID: id, Type: TypeText, Body: []byte(x)}, nil
		case []byte:
			return Message{ID: id, Type: TypeText, Body: x}, nil
		}
		return Message{}, fmt.Errorf("zmqkit: a text message takes a string or []byte, not %T", v)
	}
	if raw, ok := v.(json.RawMessage); ok {
		return NewMessage(id, raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Message{}, fmt.Errorf("zmqkit: encode json: %w", err)
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
	if m.ID < 0 {
		return dst, fmt.Errorf("zmqkit: msgid %d is negative", m.ID)
	}
	if err := checkType(m.Type); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, m.ID, m.Type)
	switch m.Type {
	case TypeText:
		return c.appendText(dst, m.Body)
	case TypeJSON:
		if !json.Valid(m.Body) {
			return dst, errors.New("zmqkit: json body is not valid JSON")
		}
		return c.appendText(dst, m.Body)
	}
	return append(dst, m.Body...), nil
}

// appendValue appends the frame for v under the Python module's rule; the
// hot path of Publish, free of allocations for strings and []byte in UTF-8.
func (c *Codec) appendValue(dst []byte, id int, v any) ([]byte, error) {
	if id < 0 {
		return dst, fmt.Errorf("zmqkit: msgid %d is negative", id)
	}
	switch x := v.(type) {
	case string:
		return c.appendText(appendHeader(dst, id, TypeText), unsafe.Slice(unsafe.StringData(x), len(x)))
	case []byte:
		return c.appendText(appendHeader(dst, id, TypeText), x)
	case Message:
		return c.AppendFrame(dst, x)
	}
	m, err := NewMessage(id, v)
	if err != nil {
		return dst, err
	}
	return c.appendText(appendHeader(dst, id, TypeJSON), m.Body)
}

func appendHeader(dst []byte, id int, typ string) []byte {
	dst = strconv.AppendInt(dst, int64(id), 10)
	dst = append(dst, ' ')
	dst = append(dst, typ...)
	return append(dst, ' ')
}

// appendText appends UTF-8 text in the codec's encoding.
func (c *Codec) appendText(dst, utf []byte) ([]byte, error) {
	if !utf8.Valid(utf) {
		return dst, errors.New("zmqkit: text is not valid UTF-8")
	}
	if c.enc == nil {
		return append(dst, utf...), nil
	}
	e, _ := c.encoders.Get().(*encoding.Encoder)
	if e == nil {
		e = c.enc.NewEncoder()
	}
	out, err := appendTransform(dst, e, utf)
	c.encoders.Put(e)
	if err != nil {
		return dst, fmt.Errorf("zmqkit: text not representable in %s: %w", c.charset, err)
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

// Decode parses one wire frame. Text and json bodies are converted to UTF-8
// and checked (valid in the encoding; valid JSON). Body may alias frame when
// the encoding is UTF-8. Any defect is a *MalformedError; Decode never panics.
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
		if len(rest) == 0 {
			return Message{}, malformed(frame, nil, "missing type")
		}
		return Message{}, malformed(frame, nil, "no space after type %q", clip(rest))
	}
	if sp == 0 {
		return Message{}, malformed(frame, nil, "missing type")
	}
	typ, _, ok := c.body(rest[:sp])
	if !ok {
		return Message{}, malformed(frame, ErrUnknownType, "unknown type %q", clip(rest[:sp]))
	}
	body := rest[sp+1:]
	if typ == TypeText || typ == TypeJSON {
		if body, err = c.decodeText(body); err != nil {
			return Message{}, malformed(frame, err, "%s body: %v", typ, err)
		}
		if typ == TypeJSON && !json.Valid(body) {
			var v any
			err := json.Unmarshal(body, &v) // for the position of the error
			return Message{}, malformed(frame, err, "invalid JSON: %v", err)
		}
	}
	return Message{ID: id, Type: typ, Body: body}, nil
}

func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func parseID(tok []byte) (int, error) {
	if len(tok) == 0 {
		return 0, errors.New("missing msgid")
	}
	if len(tok) > 1 && tok[0] == '0' {
		return 0, fmt.Errorf("bad msgid %q: leading zero", clip(tok))
	}
	n := 0
	for _, ch := range tok {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("bad msgid %q: not a decimal number", clip(tok))
		}
		d := int(ch - '0')
		if n > (math.MaxInt-d)/10 {
			return 0, fmt.Errorf("msgid %q out of range", clip(tok))
		}
		n = n*10 + d
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
