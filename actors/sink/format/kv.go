package format

import (
	"unicode"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// appendKVLine writes one line of key=value pairs separated by spaces, in
// set order, "@" expanding to the remaining fields; absent items are left
// out. Keys and values are quoted when needed (see appendKV).
func (f *Formatter) appendKVLine(b []byte, ev *schemas.Event) []byte {
	first := true
	pair := func(name string, t text) {
		if !first {
			b = append(b, ' ')
		}
		first = false
		b = appendKV(b, name)
		b = append(b, '=')
		if t.isSafe {
			b = append(b, t.safe...)
		} else {
			b = appendKV(b, t.s)
		}
	}
	for i := range f.items {
		it := &f.items[i]
		if it.kind == itemRest {
			f.remaining(ev, it, func(name string, fl *schemas.Field) { pair(name, f.valueText(fl.Value)) })
			continue
		}
		if t := f.itemText(ev, it); t.present {
			pair(it.name, t)
		}
	}
	return append(b, '\n')
}

// appendKV writes a key or value of the kv format (logfmt): as it is when
// that is unambiguous, else as a JSON string (double quotes, backslash
// escapes, invalid UTF-8 as \ufffd). Quoted are: the empty string, and any
// string holding a space or other white space, '=', '"', a control
// character or invalid UTF-8.
func appendKV(b []byte, s string) []byte {
	if kvNeedsQuote(s) {
		return appendString(b, s)
	}
	return append(b, s...)
}

func kvNeedsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return true
		}
		i += size
	}
	return false
}
