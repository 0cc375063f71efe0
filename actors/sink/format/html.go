package format

import (
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// htmlHead opens a document with one table; the header adds its <th> cells.
// pre-wrap keeps a message's newlines and indentation visible.
const htmlHead = `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>herald events</title>
<style>table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 4px;vertical-align:top;white-space:pre-wrap;font-family:monospace}tr.marker td{background:#eee}</style>
</head>
<body>
<table>
<thead><tr>`

const htmlFoot = "</tbody>\n</table>\n</body>\n</html>\n"

// appendHTMLRow writes one table row: a <td> per item of the set, the "@"
// item holding the remaining fields as key=value pairs.
func (f *Formatter) appendHTMLRow(b []byte, ev *schemas.Event) []byte {
	b = append(b, "<tr>"...)
	for i := range f.items {
		it := &f.items[i]
		b = append(b, "<td>"...)
		if it.kind == itemRest {
			b = appendHTML(b, f.restKV(ev, it))
		} else if t := f.itemText(ev, it); t.isSafe {
			b = append(b, t.safe...)
		} else {
			b = appendHTML(b, t.s)
		}
		b = append(b, "</td>"...)
	}
	return append(b, "</tr>\n"...)
}

// appendHTML escapes s for HTML text and attribute values: & < > " ' as
// &amp; &lt; &gt; &quot; &#39;, LF as &#10; (one row per line), CR and the
// C0 controls other than tab (and DEL) as numeric references (&#x0d;), NUL and invalid UTF-8 as
// U+FFFD, which is all HTML can hold of them.
func appendHTML(b []byte, s string) []byte {
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
			esc = "&#39;"
		case c == 0:
			esc = "\uFFFD"
		case c == '\n':
			esc = "&#10;"
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			b = append(b, s[start:i]...)
			b = append(b, '&', '#', 'x', hex[c>>4], hex[c&0xf], ';')
			i++
			start = i
			continue
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			esc = "\uFFFD"
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
