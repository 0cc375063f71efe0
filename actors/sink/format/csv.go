package format

import (
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// appendCSVRow writes one record per RFC 4180: a cell per item of the set,
// separated by commas, ended by a newline ("\n": every CSV reader takes it;
// RFC 4180 names CRLF). The "@" item is one cell holding the remaining
// fields as key=value pairs (kv's quoting). An absent item is an empty cell.
func (f *Formatter) appendCSVRow(b []byte, ev *schemas.Event) []byte {
	only := len(f.items) == 1
	for i := range f.items {
		it := &f.items[i]
		if i > 0 {
			b = append(b, ',')
		}
		if it.kind == itemRest {
			b = appendCSVCell(b, f.restKV(ev, it), only, i == 0)
			continue
		}
		t := f.itemText(ev, it)
		switch {
		case t.isSafe:
			b = append(b, t.safe...)
		case t.present:
			b = appendCSVCell(b, t.s, only, i == 0)
		case only:
			b = append(b, '"', '"')
		}
	}
	return append(b, '\n')
}

func appendCSVCell(b []byte, s string, only, first bool) []byte {
	if first && len(s) > 0 && s[0] == '#' {
		// A reader that skips "#" comment lines (launch markers) must not
		// skip a record: quoted, the line starts with a quote.
		return appendCSVQuoted(b, s)
	}
	return appendCSV(b, s, only)
}

// appendCSV writes s as one CSV field: quoted when it holds a comma, a
// double quote, CR or LF (inside, a quote is doubled), or when it is empty
// and the only field of its record (an empty line would be no record).
// Invalid UTF-8 becomes U+FFFD, byte by byte; everything else is written as
// it is, control characters included.
func appendCSV(b []byte, s string, only bool) []byte {
	quote := only && s == ""
	valid := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ',' || c == '"' || c == '\r' || c == '\n':
			quote = true
		case c >= utf8.RuneSelf:
			valid = false
		}
	}
	if !valid && utf8.ValidString(s) {
		valid = true
	}
	if !quote {
		if valid {
			return append(b, s...)
		}
		return appendValidUTF8(b, s)
	}
	return appendCSVQuoted(b, s)
}

func appendCSVQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c == '"' {
			b = append(b, s[start:i+1]...)
			b = append(b, '"')
			i++
			start = i
			continue
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendValidUTF8 appends s with each invalid byte replaced by U+FFFD.
func appendValidUTF8(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
