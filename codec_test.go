package zmqkit

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/encoding/htmlindex"
)

func TestNewMessageSeedRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want Message
	}{
		{"string is text", "Hello World", Message{ID: 1000, Type: "text", Body: []byte("Hello World")}},
		{"bytes are text", []byte("raw"), Message{ID: 1000, Type: "text", Body: []byte("raw")}},
		{"map is json", map[string]int{"data": 42}, Message{ID: 1000, Type: "json", Body: []byte(`{"data":42}`)}},
		{"number is json", 42, Message{ID: 1000, Type: "json", Body: []byte(`42`)}},
		{"raw json as is", json.RawMessage(`{"a": [1, 2]}`), Message{ID: 1000, Type: "json", Body: []byte(`{"a": [1, 2]}`)}},
		{"nil is json null", nil, Message{ID: 1000, Type: "json", Body: []byte(`null`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMessage(1000, tc.v)
			require.NoError(t, err)
			assert.Equal(t, tc.want, m)
		})
	}
	_, err := NewMessage(-1, "x")
	assert.Error(t, err)
	_, err = NewMessage(1, json.RawMessage(`{`))
	assert.Error(t, err)
	_, err = NewMessage(1, make(chan int))
	assert.ErrorContains(t, err, "encode json")
}

func TestCodecFrameMatchesSeed(t *testing.T) {
	c, err := NewCodec("")
	require.NoError(t, err)
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"Hello World", "1000 text Hello World"},
		{"", "1000 text "},
		{"with  spaces ", "1000 text with  spaces "},
		{map[string]int{"data": 42}, `1000 json {"data":42}`},
		{"你好", "1000 text 你好"},
	} {
		got, err := publishFrame(c, 1000, tc.v)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got))
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, enc := range []string{"", "utf-8", "gbk", "gb18030", "big5", "shift_jis", "windows-1252", "latin1", "euc-kr"} {
		t.Run("enc="+enc, func(t *testing.T) {
			c, err := NewCodec(enc)
			require.NoError(t, err)
			texts := []string{"plain ascii", "", "  leading and trailing  ", "a\nb\tc"}
			switch enc {
			case "gbk", "gb18030", "", "utf-8":
				texts = append(texts, "中文消息 with spaces")
			case "big5":
				texts = append(texts, "繁體中文")
			case "shift_jis":
				texts = append(texts, "日本語のテキスト")
			case "windows-1252", "latin1":
				texts = append(texts, "café €5")
			case "euc-kr":
				texts = append(texts, "한국어")
			}
			for _, text := range texts {
				frame, err := c.Frame(Message{ID: 42, Type: TypeText, Body: []byte(text)})
				require.NoError(t, err)
				m, err := c.Decode(frame)
				require.NoError(t, err)
				assert.Equal(t, Message{ID: 42, Type: TypeText, Body: []byte(text)}, m)

				jm, err := c.Marshal(7, TypeJSON, map[string]string{"k": text})
				require.NoError(t, err)
				frame, err = c.Frame(jm)
				require.NoError(t, err)
				m, err = c.Decode(frame)
				require.NoError(t, err)
				var got map[string]string
				require.NoError(t, m.JSON(&got))
				assert.Equal(t, text, got["k"])
			}
		})
	}
}

func TestCodecGBKBytesOnTheWire(t *testing.T) {
	c, err := NewCodec("gbk")
	require.NoError(t, err)
	assert.Equal(t, "gbk", c.Encoding())
	frame, err := publishFrame(c, 1000, "你好")
	require.NoError(t, err)
	assert.Equal(t, []byte("1000 text \xc4\xe3\xba\xc3"), frame)

	_, err = publishFrame(c, 1000, "emoji 😀 has no gbk form")
	assert.ErrorContains(t, err, "no form in gbk")
	assert.ErrorIs(t, err, ErrInvalidMessage)
}

func TestCodecEncodingNames(t *testing.T) {
	for _, name := range []string{"UTF-8", "utf8", "GBK", "latin-1", "Shift_JIS", "shift-jis", "windows-1252", "cp1252", "big5"} {
		_, err := NewCodec(name)
		assert.NoError(t, err, name)
	}
	for _, name := range []string{"klingon", "utf-16le", "utf-16"} {
		_, err := NewCodec(name)
		assert.ErrorIs(t, err, ErrUnknownEncoding, name)
	}
	_, err := htmlindex.Get("gbk")
	require.NoError(t, err)
}

func TestCodecDecodeMalformed(t *testing.T) {
	utf, err := NewCodec("")
	require.NoError(t, err)
	gbk, err := NewCodec("gbk")
	require.NoError(t, err)
	for _, tc := range []struct {
		name, frame, reason string
		codec               *Codec
	}{
		{"empty", "", "empty frame", utf},
		{"no space", "1000", "no space after msgid", utf},
		{"missing msgid", " text hi", "missing msgid", utf},
		{"letters in msgid", "10a0 text hi", `bad msgid "10a0"`, utf},
		{"sign alone", "- text hi", `bad msgid "-"`, utf},
		{"double underscore", "1__0 text hi", `bad msgid "1__0"`, utf},
		{"trailing underscore", "10_ text hi", `bad msgid "10_"`, utf},
		{"msgid out of range", "99999999999999999999 text hi", "out of range", utf},
		{"missing type", "1000 ", `no space after type ""`, utf},
		{"no space after type", "1000 text", `no space after type "text"`, utf},
		{"invalid json", "1000 json {nope", "invalid JSON", utf},
		{"invalid utf-8", "1000 text \xff\xfe", "not valid utf-8", utf},
		{"invalid gbk", "1000 text \x81\x20", "not valid gbk", gbk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.codec.Decode([]byte(tc.frame))
			require.ErrorIs(t, err, ErrMalformed)
			var me *MalformedError
			require.ErrorAs(t, err, &me)
			assert.Contains(t, me.Reason, tc.reason)
			assert.Equal(t, tc.frame, string(me.Frame))
			assert.Contains(t, err.Error(), "zmqkit: malformed frame")
		})
	}
}

// Frames the Python module's subscribe() reads are read too: it splits at
// the first two spaces, int()s the msgid and returns any type's body.
func TestCodecDecodesWhatPythonReads(t *testing.T) {
	c, err := NewCodec("")
	require.NoError(t, err)
	for _, tc := range []struct {
		frame string
		want  Message
	}{
		{"02815 34 65", Message{ID: 2815, Type: "34", Body: []byte("65")}}, // the Guide's weather server
		{"10001 23 45", Message{ID: 10001, Type: "23", Body: []byte("45")}},
		{"0 text zero", Message{ID: 0, Type: "text", Body: []byte("zero")}},
		{"-1 text hi", Message{ID: -1, Type: "text", Body: []byte("hi")}},
		{"+7 text hi", Message{ID: 7, Type: "text", Body: []byte("hi")}},
		{"1_000 text hi", Message{ID: 1000, Type: "text", Body: []byte("hi")}},
		{"1000\t text tab", Message{ID: 1000, Type: "text", Body: []byte("tab")}},
		{"1000  empty type", Message{ID: 1000, Type: "", Body: []byte("empty type")}},
		{"1000 xml <a/> b", Message{ID: 1000, Type: "xml", Body: []byte("<a/> b")}},
		{"1000 bin \xff\x00", Message{ID: 1000, Type: "bin", Body: []byte("\xff\x00")}},
	} {
		t.Run(tc.frame, func(t *testing.T) {
			got, err := c.Decode([]byte(tc.frame))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	// Python's own reading of the same frames, when it is here.
	if _, err := exec.LookPath(pythonPath); err == nil {
		out, err := exec.Command(pythonPath, "-c", `
for f in ["02815 34 65", "-1 text hi", "+7 text hi", "1_000 text hi", "1000\t text tab", "1000  empty type"]:
    msgid, msgtype, body = f.split(' ', 2)
    print(int(msgid), repr(msgtype), body)
`).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "2815 '34' 65\n-1 'text' hi\n7 'text' hi\n1000 'text' hi\n1000 'text' tab\n1000 '' empty type\n", string(out))
	}
}

func TestMalformedErrorQuotesABoundedExcerpt(t *testing.T) {
	c, err := NewCodec("")
	require.NoError(t, err)
	frame := []byte("bad" + strings.Repeat("x", 10000))
	_, err = c.Decode(frame)
	var me *MalformedError
	require.ErrorAs(t, err, &me)
	assert.Len(t, me.Frame, MalformedExcerptLen)
	assert.Equal(t, len(frame), me.Len)
	assert.Less(t, len(err.Error()), 200)
	assert.Contains(t, err.Error(), "(10003 bytes)")
}

type upperCodec struct{}

func (upperCodec) Marshal(v any) ([]byte, error) { return []byte(strings.ToUpper(v.(string))), nil }
func (upperCodec) Unmarshal(b []byte, v any) error {
	*(v.(*string)) = strings.ToLower(string(b))
	return nil
}

func TestCodecRegistry(t *testing.T) {
	c, err := NewCodec("")
	require.NoError(t, err)
	_, err = c.Marshal(1, "upper", "x")
	require.ErrorIs(t, err, ErrUnknownType)
	m, err := c.Decode([]byte("1 upper X")) // read as Python would: raw
	require.NoError(t, err)
	assert.Equal(t, Message{ID: 1, Type: "upper", Body: []byte("X")}, m)
	var up string
	require.ErrorIs(t, c.Unmarshal(m, &up), ErrUnknownType)

	require.NoError(t, c.Register("upper", upperCodec{}))
	require.ErrorIs(t, c.Register("has space", upperCodec{}), ErrInvalidOption)
	require.ErrorIs(t, c.Register("x", nil), ErrInvalidOption)
	m, err = c.Marshal(1, "upper", "hello")
	require.NoError(t, err)
	frame, err := c.Frame(m)
	require.NoError(t, err)
	assert.Equal(t, "1 upper HELLO", string(frame))
	got, err := c.Decode(frame)
	require.NoError(t, err)
	var s string
	require.NoError(t, c.Unmarshal(got, &s))
	assert.Equal(t, "hello", s)

	// text and json are the wire format itself: replacing them is refused,
	// not silently ignored.
	for _, typ := range []string{TypeText, TypeJSON} {
		err := c.Register(typ, upperCodec{})
		require.ErrorIs(t, err, ErrInvalidOption, typ)
		assert.Contains(t, err.Error(), "built in")
		_, err = NewPublisher("inproc://codec-"+typ, WithBodyCodec(typ, upperCodec{}))
		require.ErrorIs(t, err, ErrInvalidOption, typ)
		assert.Contains(t, err.Error(), "WithBodyCodec")
	}

	require.NoError(t, c.Register("raw", RawCodec{}))
	m, err = c.Marshal(2, "raw", []byte{0, 1, 2})
	require.NoError(t, err)
	frame, err = c.Frame(m)
	require.NoError(t, err)
	got, err = c.Decode(frame)
	require.NoError(t, err)
	var raw []byte
	require.NoError(t, c.Unmarshal(got, &raw))
	assert.Equal(t, []byte{0, 1, 2}, raw)
}

func TestMessageHelpers(t *testing.T) {
	m := Message{ID: 1, Type: TypeJSON, Body: []byte(`{"a":1,"b":[true]}`)}
	v, err := m.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": 1.0, "b": []any{true}}, v)
	assert.Equal(t, `1 json {"a":1,"b":[true]}`, m.String())

	tm := Message{ID: 1, Type: TypeText, Body: []byte("hi")}
	v, err = tm.Value()
	require.NoError(t, err)
	assert.Equal(t, "hi", v)
	assert.Error(t, tm.JSON(&v), "text is not json")

	c, err := NewCodec("")
	require.NoError(t, err)
	var s string
	require.NoError(t, c.Unmarshal(tm, &s))
	assert.Equal(t, "hi", s)
	var n int
	assert.Error(t, c.Unmarshal(tm, &n))
	// Every input the encoder refuses matches ErrInvalidMessage.
	for _, m := range []Message{
		{ID: 1, Type: TypeJSON, Body: []byte("{")},
		{ID: -3, Type: TypeText},
		{ID: 3, Type: "a b"},
		{ID: 3, Type: ""},
		{ID: 3, Type: TypeText, Body: []byte{0xff}},
	} {
		_, err = c.Frame(m)
		assert.ErrorIs(t, err, ErrInvalidMessage, "%+v", m)
	}
	_, err = c.Frame(Message{ID: 3, Type: TypeText, Body: []byte{0xff}})
	assert.ErrorContains(t, err, "not valid UTF-8")
	_, err = c.Marshal(3, TypeText, 42)
	assert.ErrorIs(t, err, ErrInvalidMessage)
	_, err = NewMessage(3, make(chan int))
	assert.ErrorIs(t, err, ErrInvalidMessage)
}

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// frames back to a frame that decodes to the same message, unless Frame
// refuses its type token or msgid as unfit to send.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"1000 text Hello World", `1000 json {"data": 42}`, "10001 text x", "1000 text ",
		"", " ", "1000", "1000 ", "a b c", "01 text x", "1 json [1,2", "1 text \xff",
		"99999999999999999999 text x", "1000 text 中文",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	utf, err := NewCodec("")
	require.NoError(f, err)
	gbk, err := NewCodec("gbk")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, frame []byte, useGBK bool) {
		c := utf
		if useGBK {
			c = gbk
		}
		m, err := c.Decode(frame)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		again, err := c.Frame(m)
		if checkType(m.Type) != nil || m.ID < 0 {
			// Decode takes any type token and msgid, as Python does;
			// zmqkit sends only what every reader can split.
			require.ErrorIs(t, err, ErrInvalidMessage)
			return
		}
		require.NoError(t, err)
		m2, err := c.Decode(again)
		require.NoError(t, err)
		require.Equal(t, m.ID, m2.ID)
		require.Equal(t, m.Type, m2.Type)
		require.Equal(t, string(m.Body), string(m2.Body))
	})
}

// publishFrame is the frame Publisher.Publish sends for v under msgid id.
func publishFrame(c *Codec, id int, v any) ([]byte, error) {
	hdr, wire, err := c.appendValue(nil, id, v)
	if err != nil {
		return nil, err
	}
	return append(hdr, wire...), nil
}
