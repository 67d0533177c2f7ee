package cert

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxFileSize is the largest certificate, in bytes, that Parse and the
// Load functions accept. Real ones are about 400 bytes.
const MaxFileSize = 64 << 10

// Property is one "name = value" entry of a certificate's metadata section.
type Property struct {
	Name  string
	Value string
}

// Certificate is the content of one certificate file.
type Certificate struct {
	// Public is the Z85 public key.
	Public string
	// Secret is the Z85 secret key, or empty in a public certificate.
	Secret string
	// Metadata holds the metadata section's entries in file order. Names
	// are unique and made of ZPL name characters.
	Metadata []Property
}

// KeyPair returns c's keys.
func (c Certificate) KeyPair() KeyPair {
	return KeyPair{Public: c.Public, Secret: c.Secret}
}

// Parse reads one certificate in the format described in the package doc.
// name is used in error messages only (a file name, or "" for none).
//
// It accepts the files pyzmq and CZMQ write, and ZPL written by hand:
// comments, blank lines, indentation by any consistent run of spaces or
// tabs, values in double, single or no quotes, CRLF, CR or LF line ends, no
// final line end, a UTF-8 byte order mark. It refuses, with an *Error
// wrapping ErrMalformed that gives the line: bad syntax, more than
// MaxFileSize bytes, invalid UTF-8 or control characters, a missing
// public-key, a key outside the curve section, a duplicated key or
// metadata name, an invalid key (also wrapping ErrInvalidKey), and a
// secret-key that does not belong to the public-key. Checking that needs
// libzmq's CURVE support: without it a certificate with a secret key fails
// with ErrNoCurve. Other sections and deeper levels are checked for syntax
// and otherwise ignored.
func Parse(data []byte, name string) (Certificate, error) {
	p := parser{file: name}
	return p.parse(data)
}

// parser holds the state of one Parse.
type parser struct {
	file string
	// indents holds the indentation of each open level, from the top
	// level (""), and path the name of the property open at each level.
	indents []string
	path    []string
	// pub and sec are the curve section's keys; line 0 means absent.
	pub, sec keyLine
	metaLine map[string]int
	cert     Certificate
}

// keyLine is a key as found in the file.
type keyLine struct {
	value
	line int
}

// value is a property's value as read from a line.
type value struct {
	text string
	// unclosed: the value starts with a quote but is not one quoted
	// string (ZPL then takes it as unquoted text).
	unclosed bool
}

func (p *parser) fail(line int, format string, args ...any) error {
	return &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...), Err: ErrMalformed}
}

func (p *parser) parse(data []byte) (Certificate, error) {
	if len(data) > MaxFileSize {
		return Certificate{}, p.fail(0, "larger than %d bytes", MaxFileSize)
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	p.indents = []string{""}
	p.metaLine = map[string]int{}
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexAny(data, "\r\n"); i < 0 {
			line, data = data, nil
		} else {
			line = data[:i]
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
		if err := p.line(n, line); err != nil {
			return Certificate{}, err
		}
	}
	if err := p.finish(); err != nil {
		return Certificate{}, err
	}
	return p.cert, nil
}

// line parses line number n. Its errors quote nothing of the line but a
// metadata name, because the line may hold a secret key.
func (p *parser) line(n int, raw []byte) error {
	if !utf8.Valid(raw) {
		return p.fail(n, "not valid UTF-8")
	}
	for i, r := range string(raw) {
		if r != '\t' && (r < 0x20 || r == 0x7f) {
			return p.fail(n, "control character at column %d", i+1)
		}
	}
	s := strings.TrimRight(string(raw), " \t")
	body := strings.TrimLeft(s, " \t")
	if body == "" || body[0] == '#' {
		return nil // blank line or comment
	}
	indent := s[:len(s)-len(body)]
	col := len(indent) + 1

	// name [ws] [= value] [# comment]
	j := 0
	for j < len(body) && isNameChar(body[j]) {
		j++
	}
	if j == 0 {
		return p.fail(n, "expected a name at column %d", col)
	}
	name := body[:j]
	if name[0] == '/' || name[len(name)-1] == '/' {
		return p.fail(n, "a name must not begin or end with '/' (column %d)", col)
	}
	rest := strings.TrimLeft(body[j:], " \t")
	var v value
	hasValue := false
	switch {
	case rest == "" || rest[0] == '#':
	case rest[0] == '=':
		hasValue = true
		v = parseValue(rest[1:])
	default:
		return p.fail(n, "expected '=' or the end of the line after the name, at column %d", len(s)-len(rest)+1)
	}

	// The level is the open level with this indentation, or one deeper
	// than the last property's if the indentation extends its.
	depth := -1
	for d := len(p.indents) - 1; d >= 0; d-- {
		if p.indents[d] == indent {
			depth = d
			break
		}
	}
	if depth < 0 {
		last := p.indents[len(p.indents)-1]
		if len(p.path) == 0 || !strings.HasPrefix(indent, last) {
			return p.fail(n, "indentation matches no enclosing level (indent each level 4 spaces more than its parent)")
		}
		depth = len(p.indents)
		p.indents = append(p.indents, indent)
	}
	p.indents = p.indents[:depth+1]
	p.path = append(p.path[:depth], name)
	section := p.path[0]

	// pyzmq's loader takes any line that starts with "public-key" or
	// "secret-key", wherever it is: refuse what it would read differently.
	isKey := name == "public-key" || name == "secret-key"
	if !isKey && (strings.HasPrefix(name, "public-key") || strings.HasPrefix(name, "secret-key")) {
		// Not quoted: with its " = " lost, a key line is one long name.
		return p.fail(n, "a name that begins with %q but is longer (column %d): pyzmq would read it as that key", name[:10], col)
	}
	if isKey && (depth != 1 || section != "curve") {
		return p.fail(n, "%s must be one level inside the top-level curve section", name)
	}

	switch {
	case isKey:
		k := &p.pub
		if name == "secret-key" {
			k = &p.sec
		}
		if k.line != 0 {
			return p.fail(n, "duplicate %s (first on line %d)", name, k.line)
		}
		if !hasValue {
			return p.fail(n, "%s has no value (want %s = \"<%d Z85 characters>\")", name, name, KeyLen)
		}
		*k = keyLine{value: v, line: n}
	case depth == 1 && section == "metadata":
		if first, dup := p.metaLine[name]; dup {
			return p.fail(n, "duplicate metadata name %q (first on line %d)", name, first)
		}
		p.metaLine[name] = n
		p.cert.Metadata = append(p.cert.Metadata, Property{Name: name, Value: v.text})
	}
	return nil
}

// finish checks the keys once the whole file is read.
func (p *parser) finish() error {
	if p.pub.line == 0 {
		return p.fail(0, "no public-key in a curve section")
	}
	if err := p.checkKey(p.pub, "public-key", false); err != nil {
		return err
	}
	p.cert.Public = p.pub.text
	if p.sec.line == 0 {
		return nil
	}
	if err := p.checkKey(p.sec, "secret-key", true); err != nil {
		return err
	}
	pub, err := derivePublic(p.sec.text)
	if err != nil {
		msg := "cannot check the secret-key: " + strings.TrimPrefix(err.Error(), "zmqkit: ")
		return &Error{File: p.file, Line: p.sec.line, Msg: msg, Err: err}
	}
	if pub != p.pub.text {
		return &Error{File: p.file, Line: p.sec.line, Err: ErrMalformed, invalidKey: true,
			Msg: fmt.Sprintf("secret-key does not belong to the public-key on line %d", p.pub.line)}
	}
	p.cert.Secret = p.sec.text
	return nil
}

// checkKey validates a key read from the file.
func (p *parser) checkKey(k keyLine, name string, secret bool) error {
	var msg string
	switch {
	case k.unclosed:
		msg = name + " has an unclosed quote, or text after its closing quote"
	default:
		if prob := keyProblem(k.text, secret); prob != "" {
			msg = name + " " + prob
		}
	}
	if msg == "" {
		return nil
	}
	return &Error{File: p.file, Line: k.line, Msg: msg, Err: ErrMalformed, invalidKey: true}
}

// parseValue reads what follows a name's '='. A value in double or single
// quotes runs to the next such quote, with only white space or a comment
// after it (ZPL has no escapes). Otherwise the value is the text up to a
// comment, trimmed; a '#' starts a comment only at the start of the value
// or after white space, because '#' is a Z85 digit. (No Z85 key starts
// with '#' or holds white space, so this never cuts a valid key.)
func parseValue(s string) value {
	var v value
	s = strings.TrimLeft(s, " \t")
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		if end := strings.IndexByte(s[1:], s[0]); end >= 0 {
			tail := strings.TrimLeft(s[end+2:], " \t")
			if tail == "" || tail[0] == '#' {
				return value{text: s[1 : end+1]}
			}
		}
		v.unclosed = true // ZPL: "treated as unquoted"
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	v.text = strings.TrimRight(s, " \t")
	return v
}

// isNameChar reports whether c may appear in a ZPL name.
func isNameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("$-_@.&+/", c) >= 0
}

// The banners follow pyzmq's (zmq/auth/certs.py), which follow CZMQ's
// (zcert.c), with "by zmqkit".
const (
	generatedLine = "#   ****  Generated on %s by zmqkit  ****\n"
	publicBanner  = "#   ZeroMQ CURVE Public Certificate\n" +
		"#   Exchange securely, or use a secure mechanism to verify the contents\n" +
		"#   of this file after exchange. Store public certificates in your home\n" +
		"#   directory, in the .curve subdirectory.\n\n"
	secretBanner = "#   ZeroMQ CURVE **Secret** Certificate\n" +
		"#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
)

// MarshalPublic returns c as a public certificate (a <name>.key file): a
// comment banner, the metadata section and a curve section with the public
// key. It checks the public key and the metadata (ErrInvalidKey,
// ErrMalformed).
func (c Certificate) MarshalPublic() ([]byte, error) {
	return c.marshal(false, time.Now())
}

// MarshalSecret returns c as a secret certificate (a <name>.key_secret
// file), which has the secret key too. It checks that the keys are valid
// and belong together, which needs libzmq's CURVE support.
func (c Certificate) MarshalSecret() ([]byte, error) {
	return c.marshal(true, time.Now())
}

func (c Certificate) marshal(secret bool, now time.Time) ([]byte, error) {
	if secret {
		if err := c.KeyPair().Check(); err != nil {
			return nil, err
		}
	} else if err := CheckPublicKey(c.Public); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, generatedLine, now.Format("2006-01-02 15:04:05"))
	if secret {
		b.WriteString(secretBanner)
	} else {
		b.WriteString(publicBanner)
	}
	b.WriteString("metadata\n")
	seen := make(map[string]bool, len(c.Metadata))
	for _, m := range c.Metadata {
		if seen[m.Name] {
			return nil, &Error{Msg: fmt.Sprintf("duplicate metadata name %q", m.Name), Err: ErrMalformed}
		}
		seen[m.Name] = true
		v, err := formatProperty(m)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "    %s = %s\n", m.Name, v)
	}
	fmt.Fprintf(&b, "curve\n    public-key = \"%s\"\n", c.Public)
	if secret {
		fmt.Fprintf(&b, "    secret-key = \"%s\"\n", c.Secret)
	}
	return b.Bytes(), nil
}

// formatProperty checks a metadata entry and returns its value as written:
// in double quotes, in single quotes if it holds a double one, bare if it
// holds both and reads back unchanged.
func formatProperty(m Property) (string, error) {
	bad := func(format string, args ...any) error {
		return &Error{Msg: fmt.Sprintf("metadata %q: ", m.Name) + fmt.Sprintf(format, args...), Err: ErrMalformed}
	}
	if m.Name == "" {
		return "", &Error{Msg: "metadata name is empty", Err: ErrMalformed}
	}
	for i := 0; i < len(m.Name); i++ {
		if !isNameChar(m.Name[i]) {
			return "", bad("name has a character at position %d that ZPL names cannot hold (letters, digits, $-_@.&+/)", i+1)
		}
	}
	if m.Name[0] == '/' || m.Name[len(m.Name)-1] == '/' {
		return "", bad("name must not begin or end with '/'")
	}
	if strings.HasPrefix(m.Name, "public-key") || strings.HasPrefix(m.Name, "secret-key") {
		return "", bad("name begins like a key, which pyzmq's loader would take for one")
	}
	if !utf8.ValidString(m.Value) {
		return "", bad("value is not valid UTF-8")
	}
	for i, r := range m.Value {
		if r != '\t' && (r < 0x20 || r == 0x7f) {
			return "", bad("value has a control character at position %d", i+1)
		}
	}
	switch {
	case !strings.Contains(m.Value, `"`):
		return `"` + m.Value + `"`, nil
	case !strings.Contains(m.Value, `'`):
		return `'` + m.Value + `'`, nil
	case parseValue(m.Value).text == m.Value:
		return m.Value, nil
	}
	return "", bad("value holds both quote characters and cannot be written in ZPL")
}
