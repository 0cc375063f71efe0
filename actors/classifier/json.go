package classifier

import (
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// KeyArray holds a record that is a JSON array.
const KeyArray = "array"

// maxJSONDepth bounds the nesting a record may have, so that hostile input
// cannot exhaust the stack.
const maxJSONDepth = 64

// classifyJSON reads a JSON object (or array) record. The object's keys
// become the event's fields in the order of the record; the envelope comes
// from common keys (see envelope). A record that starts like an object but
// does not parse is json with CertaintyJSONBroken and no fields.
func classifyJSON(ev *schemas.Event, line []byte, now time.Time) bool {
	p := jsonParser{b: line}
	p.ws()
	if p.i >= len(line) || line[p.i] != '{' && line[p.i] != '[' {
		return false
	}
	env := newEnvelope()
	ok := false
	if line[p.i] == '{' {
		ev.Class, ev.Certainty = ClassJSON, CertaintyJSON
		ok = p.topObject(ev, &env, now.Location())
	} else {
		ev.Class, ev.Certainty = ClassJSON, CertaintyJSONArray
		f := newFieldWriter(1)
		defer f.done(ev)
		v := f.add(KeyArray, nil)
		ok = p.value(v)
	}
	if ok {
		p.ws()
		if p.i < len(line) {
			// more after the value: NDJSON glued together, or junk
			ev.Certainty = CertaintyJSONTrailing
		}
	}
	if !ok {
		if line[p.skipWS(0)] == '[' {
			return false // "[01/Mar/2021:12:00:19 +0000] ...": not JSON
		}
		ev.Fields = nil
		ev.Class, ev.Certainty = ClassJSON, CertaintyJSONBroken
		ev.Message = validString(line)
		return true
	}
	env.fill(ev)
	if env.msgR == noRank {
		ev.Message = validString(line)
	}
	return true
}

type jsonParser struct {
	b     []byte
	i     int
	depth int
}

func (p *jsonParser) skipWS(i int) int {
	for i < len(p.b) && (p.b[i] == ' ' || p.b[i] == '\t' || p.b[i] == '\n' || p.b[i] == '\r') {
		i++
	}
	return i
}

func (p *jsonParser) ws() { p.i = p.skipWS(p.i) }

// topObject parses the record's object into ev's fields and offers string
// and number members to env.
func (p *jsonParser) topObject(ev *schemas.Event, env *envelope, local *time.Location) bool {
	p.i++ // '{'
	f := newFieldWriter(16)
	defer f.done(ev)
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		v := f.add(key, nil)
		if !p.value(v) {
			return false
		}
		offer(env, key, v, local, 0)
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// offer gives env a member of the record. Objects under "host" or
// "service" offer their "name"; logstash's "@fields" object offers its
// members.
func offer(env *envelope, key string, v *schemas.Value, local *time.Location, depth int) {
	switch k := v.Kind.(type) {
	case *schemas.Value_Str:
		env.str(key, k.Str, local)
	case *schemas.Value_Int:
		env.num(key, k.Int, float64(k.Int), true)
	case *schemas.Value_Float:
		env.num(key, 0, k.Float, false)
	case *schemas.Value_Map:
		if depth > 0 {
			return
		}
		switch key {
		case "host", "service":
			for _, f := range k.Map.Fields {
				if f.Key == "name" || f.Key == "hostname" {
					if s, ok := f.Value.Kind.(*schemas.Value_Str); ok {
						env.str(key, s.Str, local)
					}
				}
			}
		case "@fields":
			for _, f := range k.Map.Fields {
				offer(env, f.Key, f.Value, local, depth+1)
			}
		}
	}
}

// value parses any JSON value into v.
func (p *jsonParser) value(v *schemas.Value) bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, ok := p.str()
		if !ok {
			return false
		}
		v.Kind = &schemas.Value_Str{Str: s}
		return true
	case c == '{':
		p.depth++
		if p.depth > maxJSONDepth {
			return false
		}
		m := &schemas.Map{}
		ok := p.object(m)
		p.depth--
		v.Kind = &schemas.Value_Map{Map: m}
		return ok
	case c == '[':
		p.depth++
		if p.depth > maxJSONDepth {
			return false
		}
		l := &schemas.List{}
		ok := p.array(l)
		p.depth--
		v.Kind = &schemas.Value_List{List: l}
		return ok
	case c == 't':
		return p.lit("true", v, &schemas.Value_Bool{Bool: true})
	case c == 'f':
		return p.lit("false", v, &schemas.Value_Bool{Bool: false})
	case c == 'n':
		return p.lit("null", v, nil)
	case c == '-' || isDigit(c):
		return p.number(v)
	}
	return false
}

func (p *jsonParser) lit(word string, v *schemas.Value, k *schemas.Value_Bool) bool {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return false
	}
	p.i += len(word)
	if k != nil {
		v.Kind = k
	}
	return true
}

func (p *jsonParser) object(m *schemas.Map) bool {
	p.i++ // '{'
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		f := &schemas.Field{Key: key, Value: &schemas.Value{}}
		m.Fields = append(m.Fields, f)
		if !p.value(f.Value) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

func (p *jsonParser) array(l *schemas.List) bool {
	p.i++ // '['
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		p.ws()
		v := &schemas.Value{}
		l.Values = append(l.Values, v)
		if !p.value(v) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

// number parses a JSON number: an Int when it is an integer that fits,
// the digits as a Str when an integer does not fit (so that nothing is
// rounded), a Float otherwise.
func (p *jsonParser) number(v *schemas.Value) bool {
	b, start := p.b, p.i
	i := start
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	isInt := true
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		s := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == s {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		s := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == s {
			return false
		}
	}
	p.i = i
	text := string(b[start:i])
	if isInt {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			v.Kind = &schemas.Value_Int{Int: n}
			return true
		}
		v.Kind = &schemas.Value_Str{Str: text}
		return true
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil { // out of range
		v.Kind = &schemas.Value_Str{Str: text}
		return true
	}
	v.Kind = &schemas.Value_Float{Float: f}
	return true
}

// str parses a JSON string. Invalid UTF-8 becomes U+FFFD; a lone surrogate
// escape too.
func (p *jsonParser) str() (string, bool) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	i := start
	for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
		i++
	}
	if i < len(b) && b[i] == '"' { // no escapes
		p.i = i + 1
		return validString(b[start:i]), true
	}
	out := make([]byte, 0, i-start+16)
	out = append(out, b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			p.i = i + 1
			return validString(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", false
		}
		i++
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, i+1)
			if !ok {
				return "", false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if x, ok := hex4(b, i+3); ok {
						r2 = x
					}
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
		i++
	}
	return "", false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
