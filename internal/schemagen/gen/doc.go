// Package gen builds herald's config JSON Schema (schemas/config.schema.json)
// and config reference (docs/config.md) from the one place the config is
// declared: the Go types of package config and of each receiver kind's and
// sink provider's option struct, their yaml tags, their doc comments and
// their default constructors.
//
// The walk mirrors config's strict decoder: a struct is a mapping whose keys
// are the yaml tags (no others allowed); a map of *Receiver or *Sink holds
// mappings whose type key picks the option struct the other keys belong to;
// config.Duration and config.Size are scalars with their own syntax; any key
// may be left empty (null) to keep its default.
//
// Descriptions are the fields' doc comments, read from the Go source with
// go/parser, so the source tree must be present (go run, go test). A field
// whose doc says "Required." is required. A field that has a default must
// say so in its doc ("Default ..."); Generate fails otherwise, as it does for
// a yaml-tagged field without a doc comment.
//
// The output is deterministic: the same source gives the same bytes.
package gen
