package format

import (
	"strconv"

	"github.com/herald-router/herald/schemas"
)

// appendJSONSet writes the JSON form restricted and ordered by the field
// set: one object per line, the named items in set order (absent ones left
// out, as AppendJSON leaves out empty envelope values), "@" expanding to
// the remaining fields. Values are typed as in AppendJSON.
func (f *Formatter) appendJSONSet(b []byte, ev *schemas.Event) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
	}
	for i := range f.items {
		it := &f.items[i]
		switch it.kind {
		case itemRest:
			f.remaining(ev, it, func(name string, fl *schemas.Field) {
				key(name)
				b = appendValue(b, fl.Value)
			})
		case itemField:
			if fl := fieldByKey(ev, it.key); fl != nil {
				key(it.name)
				b = appendValue(b, fl.Value)
			}
		case itemEnvelope:
			t := f.envText(ev, it.env)
			if !t.present {
				continue
			}
			key(it.name)
			switch it.env {
			case envCertainty:
				b = strconv.AppendFloat(b, float64(ev.Certainty), 'g', 3, 32)
			case envTime, envReceived:
				b = append(b, '"')
				b = append(b, t.safe...)
				b = append(b, '"')
			default:
				b = appendString(b, t.s)
			}
		}
	}
	return append(b, '}', '\n')
}
