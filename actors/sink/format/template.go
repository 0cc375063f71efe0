package format

import "github.com/herald-router/herald/schemas"

// appendTemplate writes the template's text with each placeholder replaced
// by its item's text (empty when absent; "%(@)" is the remaining fields as
// key=value pairs), escaped by appendLine, then a newline.
func (f *Formatter) appendTemplate(b []byte, ev *schemas.Event) []byte {
	for i := range f.segments {
		sg := &f.segments[i]
		b = append(b, sg.text...)
		it := sg.item
		if it == nil {
			continue
		}
		if it.kind == itemRest {
			b = appendLine(b, f.restKV(ev, it))
			continue
		}
		if t := f.itemText(ev, it); t.isSafe {
			b = append(b, t.safe...)
		} else {
			b = appendLine(b, t.s)
		}
	}
	return append(b, '\n')
}
