// Package kinds is the bookkeeping both registries of pluggable types
// (receivers and sink providers) share: names to kinds, each registered
// once, listed in order.
package kinds

import "sort"

// Set maps type names to kinds of one sort ("receiver", "sink").
type Set[K any] struct {
	what string
	m    map[string]K
}

// NewSet returns an empty set; what names the sort in panics.
func NewSet[K any](what string) Set[K] { return Set[K]{what: what, m: map[string]K{}} }

// MustAdd registers a kind; a duplicate name is a programming error.
func (s *Set[K]) MustAdd(name string, k K) {
	if _, dup := s.m[name]; dup {
		panic(s.what + ": kind " + name + " registered twice")
	}
	s.m[name] = k
}

// Get returns the kind of name.
func (s *Set[K]) Get(name string) (K, bool) {
	k, ok := s.m[name]
	return k, ok
}

// Names returns the registered names, sorted.
func (s *Set[K]) Names() []string {
	names := make([]string, 0, len(s.m))
	for n := range s.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Options returns, by name, the constructor of each kind's default options
// (what config.Kinds wants), taken from a kind by options.
func (s *Set[K]) Options(options func(K) func() any) map[string]func() any {
	m := make(map[string]func() any, len(s.m))
	for n, k := range s.m {
		m[n] = options(k)
	}
	return m
}
