package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a position in the config file.
type Pos struct{ Line, Column int }

// Error is one problem in a config file.
type Error struct {
	File   string
	Pos    Pos
	Field  string // dotted key path, e.g. sinks.events.path
	Reason string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Pos.Line, e.Pos.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in one config file, in file order.
type Errors struct{ List []Error }

func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// decoder walks the YAML tree and the Go value together, so that every
// problem is reported with its position and the decoding goes on after it.
type decoder struct {
	file  string
	kinds Kinds
	pos   map[string]Pos
	errs  []Error
	// failed holds the paths that could not be decoded; checks of meaning
	// say nothing more about them (their value is only the default).
	failed map[string]bool
	// syntax is set when the file is not YAML at all.
	syntax bool
}

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	e := Error{File: d.file, Field: path, Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Pos = Pos{n.Line, n.Column}
	}
	if d.failed == nil {
		d.failed = map[string]bool{}
	}
	d.failed[path] = true
	d.errs = append(d.errs, e)
}

// errorf reports a semantic problem at the position recorded for path, or
// the nearest recorded parent.
func (d *decoder) errorf(path, format string, args ...any) {
	for p := path; p != ""; p = parentPath(p) {
		if d.failed[p] {
			return
		}
	}
	e := Error{File: d.file, Field: path, Reason: fmt.Sprintf(format, args...)}
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := d.pos[p]; ok {
			e.Pos = pos
			break
		}
	}
	d.errs = append(d.errs, e)
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func (d *decoder) decodeFile(data []byte, cfg *Config) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		pos := yamlErrPos(err)
		reason := strings.TrimPrefix(err.Error(), "yaml: ")
		reason = strings.TrimPrefix(reason, fmt.Sprintf("line %d: ", pos.Line))
		d.errs = append(d.errs, Error{File: d.file, Pos: pos, Reason: reason})
		d.syntax = true
		return
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		d.errs = append(d.errs, Error{File: d.file, Reason: "the file is empty"})
		return
	}
	d.value(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

// sortErrors puts the problems in file order.
func (d *decoder) sortErrors() {
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i].Pos, d.errs[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
}

// yamlErrPos digs the line out of a yaml.v3 syntax error ("yaml: line 3: ...").
func yamlErrPos(err error) Pos {
	var line int
	if _, e := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); e == nil {
		return Pos{Line: line, Column: 1}
	}
	return Pos{}
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	receiverType    = reflect.TypeOf(Receiver{})
	sinkType        = reflect.TypeOf(Sink{})
)

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// value decodes n into v (settable), recording positions and problems.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.pos[path] = Pos{n.Line, n.Column}
	}
	if n.Tag == "!!null" {
		return // an empty key keeps its default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.add(n, path, "%s", cleanYAMLErr(err))
		}
		return
	}
	switch v.Type() {
	case receiverType:
		d.kinded(n, v, path, d.kinds.Receivers)
		return
	case sinkType:
		d.kinded(n, v, path, d.kinds.Sinks)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structFields(n, v, path, nil)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, "want a mapping of names, got %s", kindName(n.Kind))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if val.Tag == "!!null" && v.Type().Elem().Kind() == reflect.Pointer {
				d.add(k, join(path, k.Value), "empty: give its keys")
				continue
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			d.value(val, elem, join(path, k.Value))
			if _, ok := d.pos[join(path, k.Value)]; !ok {
				d.pos[join(path, k.Value)] = Pos{k.Line, k.Column}
			}
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, "want a list, got %s", kindName(n.Kind))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.add(n, path, "want a single value, got %s", kindName(n.Kind))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.add(n, path, "%s", cleanYAMLErr(err))
		}
	}
}

// structFields decodes a mapping into a struct's yaml-tagged fields; keys in
// skip are handled by the caller.
func (d *decoder) structFields(n *yaml.Node, v reflect.Value, path string, skip map[string]bool) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "want a mapping, got %s", kindName(n.Kind))
		return
	}
	fields := map[string]int{}
	var names []string
	for i := 0; i < v.NumField(); i++ {
		tag := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		if seen[k.Value] {
			d.add(k, kp, "key given twice")
			continue
		}
		seen[k.Value] = true
		if skip[k.Value] {
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.add(k, kp, "unknown key%s", suggest(k.Value, names))
			continue
		}
		d.value(val, v.Field(idx), kp)
	}
}

// kinded decodes a receiver or sink: its type picks the option struct that
// every other key decodes into.
func (d *decoder) kinded(n *yaml.Node, v reflect.Value, path string, kinds map[string]func() any) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "want a mapping, got %s", kindName(n.Kind))
		return
	}
	var typ *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typ = n.Content[i+1]
		}
	}
	known := make([]string, 0, len(kinds))
	for k := range kinds {
		known = append(known, k)
	}
	sort.Strings(known)
	if typ == nil {
		d.add(n, join(path, "type"), "missing; want one of %s", strings.Join(known, ", "))
		return
	}
	d.pos[join(path, "type")] = Pos{typ.Line, typ.Column}
	newOpts, ok := kinds[typ.Value]
	if !ok {
		d.add(typ, join(path, "type"), "unknown type %q; want one of %s", typ.Value, strings.Join(known, ", "))
		return
	}
	v.FieldByName("Type").SetString(typ.Value)
	opts := newOpts()
	d.structFields(n, reflect.ValueOf(opts).Elem(), path, map[string]bool{"type": true})
	v.FieldByName("Options").Set(reflect.ValueOf(opts))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// cleanYAMLErr drops yaml.v3's "yaml: unmarshal errors:\n  line N: " prefix,
// since the position is reported separately.
func cleanYAMLErr(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	return err.Error()
}

// suggest proposes the known key closest to an unknown one.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	if best == "" {
		sort.Strings(known)
		return "; known keys: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
