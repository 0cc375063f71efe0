package classifier

import (
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// classifyLogfmt reads a logfmt / key=value line: space-separated
// key=value pairs, values optionally double-quoted with Go-style escapes,
// bare keys allowed. The pairs become fields in order (a bare key or
// "key=" without value: null); the envelope comes from common keys.
//
// A line is logfmt when at least half of its words are pairs. Syntax errors
// (an unterminated quote, "a==", a key of invalid UTF-8) lower the
// certainty; the pairs read so far are kept.
func classifyLogfmt(ev *schemas.Event, line []byte, now time.Time) bool {
	if bytes.IndexByte(line, '=') < 0 {
		return false
	}
	// First pass: count words and pairs without allocating.
	words, pairs, errs := 0, 0, 0
	scanLogfmt(line, func(key, val []byte, hasEq, quoted, bad bool) {
		words++
		if hasEq {
			pairs++
		}
		if bad {
			errs++
		}
	})
	if pairs == 0 || pairs*2 < words {
		return false
	}
	switch {
	case errs > 0:
		ev.Certainty = CertaintyLogfmtBroken
	case pairs == words && pairs >= 2:
		ev.Certainty = CertaintyLogfmt
	case pairs >= 2:
		ev.Certainty = CertaintyLogfmtBareWords
	default:
		ev.Certainty = CertaintyLogfmtOnePair
	}
	ev.Class = ClassLogfmt
	f := newFieldWriter(words)
	defer f.done(ev)
	env := newEnvelope()
	local := now.Location()
	scanLogfmt(line, func(key, val []byte, hasEq, quoted, bad bool) {
		if len(key) == 0 {
			return
		}
		k := validString(key)
		if !hasEq || len(val) == 0 && !quoted {
			f.add(k, nil)
			return
		}
		v := validString(val)
		if quoted {
			v = unquoteLogfmt(val)
		}
		f.strS(k, v)
		env.str(k, v, local)
	})
	env.fill(ev)
	if env.msgR == noRank {
		ev.Message = validString(line)
	}
	return true
}

// scanLogfmt walks the words of a logfmt line. val is the value as written
// (quoted: without the quotes, escapes unresolved); bad marks a syntax error.
func scanLogfmt(b []byte, word func(key, val []byte, hasEq, quoted, bad bool)) {
	i := 0
	for {
		for i < len(b) && b[i] <= ' ' {
			i++
		}
		if i >= len(b) {
			return
		}
		// key: up to '=', space or a quote
		s := i
		for i < len(b) && b[i] > ' ' && b[i] != '=' && b[i] != '"' {
			i++
		}
		key := b[s:i]
		bad := len(key) == 0 || !utf8.Valid(key)
		if i >= len(b) || b[i] != '=' {
			if i < len(b) && b[i] == '"' { // a quote where a key belongs
				bad = true
				for i < len(b) && b[i] > ' ' {
					i++
				}
			}
			word(key, nil, false, false, bad)
			continue
		}
		i++ // '='
		if i < len(b) && b[i] == '"' {
			i++
			vs := i
			closed := false
			for i < len(b) {
				if b[i] == '\\' {
					i += 2
					continue
				}
				if b[i] == '"' {
					closed = true
					break
				}
				i++
			}
			if i > len(b) {
				i = len(b)
			}
			val := b[vs:i]
			if closed {
				i++
				if unquoteLogfmtOK(val) == nil {
					bad = true
				}
			} else {
				bad = true
			}
			word(key, val, true, true, bad)
			continue
		}
		vs := i
		for i < len(b) && b[i] > ' ' {
			if b[i] == '=' || b[i] == '"' {
				bad = true
			}
			i++
		}
		word(key, b[vs:i], true, false, bad)
	}
}

// unquoteLogfmt resolves the escapes of a quoted value (those of Go and
// JSON strings); a value it cannot read stays as written.
func unquoteLogfmt(val []byte) string {
	if bytes.IndexByte(val, '\\') < 0 {
		return validString(val)
	}
	if out := unquoteLogfmtOK(val); out != nil {
		return validString(out)
	}
	return validString(val)
}

// unquoteLogfmtOK resolves escapes; nil when one is invalid.
func unquoteLogfmtOK(val []byte) []byte {
	if bytes.IndexByte(val, '\\') < 0 {
		return val
	}
	// The JSON string reader knows the escapes: give it the value quoted.
	buf := make([]byte, 0, len(val)+2)
	buf = append(buf, '"')
	buf = append(buf, val...)
	buf = append(buf, '"')
	p := jsonParser{b: buf}
	s, ok := p.str()
	if !ok || p.i != len(buf) {
		return nil
	}
	return []byte(s)
}
