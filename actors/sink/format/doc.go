// Package format serializes events for the sinks that write text: ELAPI's
// providers that serialize apart from writing. The formats are json (one
// object per line, AppendJSON), csv (RFC 4180), html (a table), xml (one
// <event> element per line inside a root element), kv (key=value, logfmt
// style) and template (free text with %(name) placeholders). A Spec names
// the format, the field set (which items, in which order, with "@" and
// "@n" for the remaining fields) and whether to write headers and footers;
// Compile checks it once, when the config is loaded, and returns the
// Formatter a provider keeps.
//
// Escaping is exact and documented on each format's writer: appendCSV,
// appendHTML, appendXMLEvent, appendKV and appendLine (template). The
// golden files in testdata pin every format's output; go test -update
// rewrites them.
package format
