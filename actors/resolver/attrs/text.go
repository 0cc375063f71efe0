package attrs

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The %(key) syntax of R_message__ texts:
//
//	%(key)   the text of the value of key; the key runs to the matching
//	         ")", so parentheses nest: %(f(x)) names the key "f(x)"
//	%%       one "%"
//	%        followed by anything else (or at the end) is itself: "100% done"
//
// A "%(" without its matching ")" and an empty "%()" are syntax errors:
// Check reports them (a template with one is a config error), and Expand
// writes them as they are (an event with one still resolves).

// SyntaxError is a problem of a %(key) text at a byte offset.
type SyntaxError struct {
	Offset int
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at byte %d", e.Reason, e.Offset)
}

// Check returns a *SyntaxError for the first problem of text, or nil.
func Check(text string) error {
	for i := 0; i < len(text); i++ {
		if text[i] != '%' || i+1 == len(text) {
			continue
		}
		switch text[i+1] {
		case '%':
			i++
		case '(':
			end := closing(text, i+2)
			if end < 0 {
				return &SyntaxError{Offset: i, Reason: `unbalanced "%(": no matching ")"`}
			}
			if end == i+2 {
				return &SyntaxError{Offset: i, Reason: `empty placeholder "%()"`}
			}
			i = end
		}
	}
	return nil
}

// closing returns the index of the ")" that closes a "(" just before from,
// counting nested parentheses, or -1.
func closing(text string, from int) int {
	depth := 1
	for k := from; k < len(text); k++ {
		switch text[k] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return -1
}

// Lookup appends the text of key's value to dst and reports whether the
// key exists. When it does not, it must return dst unchanged.
type Lookup func(dst []byte, key string) ([]byte, bool)

// Result says what Expand could not do.
type Result struct {
	// Missing lists the keys Lookup did not find, first occurrence order,
	// without repeats.
	Missing []string
	// Truncated is set when the rendering was cut at the limit.
	Truncated bool
}

// Expand appends text to dst with its placeholders filled by lookup; a
// missing key renders as mode says. limit > 0 caps what Expand appends, in
// bytes: the rendering is cut there (at a UTF-8 boundary) and Truncated
// set, so a text repeating a huge value cannot grow without bound.
func Expand(dst []byte, text string, lookup Lookup, mode Missing, limit int) ([]byte, Result) {
	var r Result
	start := len(dst)
	over := func() bool { return limit > 0 && len(dst)-start > limit }
	for i := 0; i < len(text) && !over(); {
		j := strings.IndexByte(text[i:], '%')
		if j < 0 {
			dst = append(dst, text[i:]...)
			break
		}
		dst = append(dst, text[i:i+j]...)
		i += j
		if i+1 == len(text) {
			dst = append(dst, '%')
			break
		}
		switch text[i+1] {
		case '%':
			dst = append(dst, '%')
			i += 2
		case '(':
			end := closing(text, i+2)
			if end < 0 { // unbalanced: the rest is text
				dst = append(dst, text[i:]...)
				i = len(text)
				continue
			}
			if key := text[i+2 : end]; key != "" {
				var found bool
				if dst, found = lookup(dst, key); !found {
					if !contains(r.Missing, key) {
						r.Missing = append(r.Missing, key)
					}
					if mode != MissingEmpty {
						dst = append(dst, text[i:end+1]...)
					}
				}
			} else {
				dst = append(dst, "%()"...)
			}
			i = end + 1
		default:
			dst = append(dst, '%')
			i++
		}
	}
	if over() {
		n := start + limit
		for n > start && !utf8.RuneStart(dst[n]) {
			n--
		}
		dst, r.Truncated = dst[:n], true
	}
	return dst, r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
