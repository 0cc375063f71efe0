package xmpp

import (
	"strings"
	"unicode/utf8"
)

// Namespace of herald's elements: the event payload of PubSub items and
// the metadata element of message stanzas.
const Namespace = "urn:herald:event:0"

// XML 1.0 escaping. Nothing from an event, a config or a server goes into
// a stanza without passing through appendEscaped: go-xmpp escapes only
// the fields of its Chat type, and a single raw control character makes
// the server close the stream (not-well-formed), taking every unconfirmed
// stanza with it.

// carries reports whether XML 1.0 can hold every character of s as it
// is: valid UTF-8 with no C0 control other than tab, LF and CR, and
// neither U+FFFE nor U+FFFF. (Valid UTF-8 holds no surrogates.)
func carries(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
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

// appendEscaped appends s as XML character data, or with attr as an
// attribute value (quoted by the caller with ' or "). The five markup
// characters become entities; CR becomes &#13; (a parser turns a raw CR
// into LF); in attributes tab and LF become references too (a parser
// turns them into spaces). Characters XML 1.0 cannot carry (C0 controls
// other than tab, LF and CR; U+FFFE, U+FFFF; each byte of invalid UTF-8)
// become U+FFFD.
func appendEscaped(b []byte, s string, attr bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		switch {
		case c >= 0x20 && c < utf8.RuneSelf:
			switch c {
			case '&':
				esc = "&amp;"
			case '<':
				esc = "&lt;"
			case '>':
				esc = "&gt;"
			case '"':
				esc = "&quot;"
			case '\'':
				esc = "&apos;"
			default:
				i++
				continue
			}
		case c == '\r':
			esc = "&#13;"
		case c == '\n':
			if !attr {
				i++
				continue
			}
			esc = "&#10;"
		case c == '\t':
			if !attr {
				i++
				continue
			}
			esc = "&#9;"
		case c < 0x20:
			esc = "\uFFFD"
		default:
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
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		i++
		start = i
	}
	return append(b, s[start:]...)
}

// Readable is what a message body delivers of s: the text a receiver gets
// after the server and its XML parser are done, with every character XML
// 1.0 cannot carry replaced by U+FFFD, and CR LF and lone CR as LF (the
// server writes a CR it parsed raw, and XML parsers normalise line ends).
// Tests and consumers compare with it.
func Readable(s string) string {
	if carries(s) && strings.IndexByte(s, '\r') < 0 {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// cutPoint is the largest n ≤ max such that e[:n] ends neither inside an
// entity or character reference nor inside a UTF-8 sequence, so that
// e[:n] and e[n:] are both well-formed escaped text.
func cutPoint(e []byte, max int) int {
	if max >= len(e) {
		return len(e)
	}
	n := max
	// Inside a UTF-8 sequence: back up to its first byte.
	for n > 0 && e[n]&0xC0 == 0x80 {
		n--
	}
	// Inside an entity: an '&' within the last few bytes with no ';'
	// after it before n.
	for k := n - 1; k >= 0 && k >= n-8; k-- {
		if e[k] == ';' {
			break
		}
		if e[k] == '&' {
			n = k
			break
		}
	}
	return n
}
