package format

import "github.com/herald-router/herald/schemas"

// AppendFieldsJSON appends an event's fields as one JSON object, keys in
// event order and each value encoded as AppendJSON encodes it (times as
// RFC 3339 strings, bytes as base64, NaN and infinities as strings,
// invalid UTF-8 as U+FFFD). Keys are written as they are: unlike
// AppendJSON there is no envelope beside them to collide with. No fields
// give {}. Nothing is appended after the closing brace.
func AppendFieldsJSON(b []byte, fields []*schemas.Field) []byte {
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Key)
		b = append(b, ':')
		b = appendValue(b, f.Value)
	}
	return append(b, '}')
}
