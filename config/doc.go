// Package config loads herald's YAML configuration strictly: unknown keys,
// wrong types and invalid values are all reported together, each with the
// file, line, column and the key's dotted path, before anything starts.
//
// Relative paths in the file resolve against the folder the file is in.
package config
