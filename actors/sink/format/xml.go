package format

import (
	"encoding/base64"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

const (
	xmlHead = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<events>\n"
	xmlFoot = "</events>\n"
)

// appendXMLEvent writes one <event> element on one line: an element per
// envelope item of the set (<host>web1</host>), a <field name="key">
// element per named or remaining field, absent items left out.
//
// Text is escaped with the predefined entities (&amp; &lt; &gt; &quot;
// &apos;), LF as &#10; (so one event is one line, which is also what lets
// a file's footer be found and cut) and CR as &#13; (a parser would turn a
// raw CR into LF); a tab is written as it is. A value
// XML 1.0 cannot carry (invalid UTF-8, a C0 control other than tab, LF and
// CR, U+FFFE, U+FFFF) is written whole as base64 of its exact bytes, with
// the attribute encoding="base64"; so are bytes values. Nothing is lost or
// changed: a reader decodes an element with that attribute from base64.
func (f *Formatter) appendXMLEvent(b []byte, ev *schemas.Event) []byte {
	b = append(b, "<event>"...)
	for i := range f.items {
		it := &f.items[i]
		switch it.kind {
		case itemRest:
			f.remaining(ev, it, func(name string, fl *schemas.Field) {
				b = appendXMLField(b, name, f.valueText(fl.Value))
			})
		case itemField:
			if t := f.itemText(ev, it); t.present {
				b = appendXMLField(b, it.name, t)
			}
		case itemEnvelope:
			t := f.envText(ev, it.env)
			if !t.present {
				continue
			}
			b = append(b, '<')
			b = append(b, it.name...)
			b = appendXMLValue(b, t)
			b = append(b, '<', '/')
			b = append(b, it.name...)
			b = append(b, '>')
		}
	}
	return append(b, "</event>\n"...)
}

func appendXMLField(b []byte, name string, t text) []byte {
	b = append(b, `<field name="`...)
	b = appendXMLEscaped(b, name, true)
	b = append(b, '"')
	b = appendXMLValue(b, t)
	return append(b, "</field>"...)
}

// appendXMLValue ends the start tag and writes the content.
func appendXMLValue(b []byte, t text) []byte {
	switch {
	case t.isSafe:
		b = append(b, '>')
		return append(b, t.safe...)
	case t.binary:
		b = append(b, ` encoding="base64">`...)
		return append(b, t.s...)
	case !xmlCarries(t.s):
		b = append(b, ` encoding="base64">`...)
		return base64.StdEncoding.AppendEncode(b, []byte(t.s))
	}
	b = append(b, '>')
	return appendXMLEscaped(b, t.s, false)
}

// xmlCarries reports whether every character of s is allowed in XML 1.0.
func xmlCarries(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if markupPlain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
			return false
		}
		i += size
	}
	return true
}

// appendXMLEscaped escapes s for XML text, or with attr for an attribute
// value (where tab is a reference too, since parsers normalise it to a
// space). Characters XML cannot carry become U+FFFD: only attribute
// values (field names) can reach this with them, since text that holds
// them is written as base64.
func appendXMLEscaped(b []byte, s string, attr bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if markupPlain[c] {
			i++
			continue
		}
		var esc string
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '"':
			esc = "&quot;"
		case c == '\'':
			esc = "&apos;"
		case c == '\r':
			esc = "&#13;"
		case c == '\n':
			esc = "&#10;"
		case c == '\t':
			if attr {
				esc = "&#9;"
			}
		case c < 0x20:
			esc = "\uFFFD"
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
				b = append(b, s[start:i]...)
				b = append(b, "\uFFFD"...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if esc == "" {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		i++
		start = i
	}
	return append(b, s[start:]...)
}

// appendXMLComment writes s as the body of a comment: "--" cannot appear
// in one, so each "-" after a "-" is preceded by a space; characters XML
// cannot carry become U+FFFD.
func appendXMLComment(b []byte, s string) []byte {
	prevDash := false
	for _, r := range s {
		switch {
		case r == '-' && prevDash:
			b = append(b, ' ', '-')
			continue
		case r == utf8.RuneError || r == 0xFFFE || r == 0xFFFF || r < 0x20 && r != '\t' && r != '\n' && r != '\r':
			r = utf8.RuneError
		}
		prevDash = r == '-'
		b = utf8.AppendRune(b, r)
	}
	return b
}

// markupPlain holds the bytes that XML and HTML text take as they are:
// printable ASCII other than & < > " '. The escapers skip them in a tight
// loop and look closer at the rest.
var markupPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range "&<>\"'" {
		t[c] = false
	}
	return t
}()
