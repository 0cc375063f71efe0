package gen

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/providers"
)

// Generate returns the config JSON Schema and the Markdown config reference
// for herald as built with providers.Registry. It reads doc comments from the
// source tree of the module, found at or above the working directory.
func Generate() (schema []byte, doc []byte, err error) {
	module := strings.TrimSuffix(reflect.TypeFor[config.Config]().PkgPath(), "/config")
	root, err := moduleRoot(module)
	if err != nil {
		return nil, nil, err
	}
	m, err := build(&sources{root: root, module: module, pkgs: map[string]map[string]*typeDocs{}},
		providers.Kinds(providers.Registry()))
	if err != nil {
		return nil, nil, err
	}
	if schema, err = m.schema(); err != nil {
		return nil, nil, err
	}
	return schema, m.markdown(), nil
}

// nodeKind is the shape of a config value.
type nodeKind int

const (
	scalarNode nodeKind = iota
	listNode            // a YAML sequence of elem
	objectNode          // a mapping with fixed keys (a struct)
	namesNode           // a mapping of user-chosen names to elem
	kindedNode          // a mapping whose type key picks its other keys
)

// Scalar types.
const (
	tString   = "string"
	tBool     = "boolean"
	tInt      = "integer"
	tUint     = "unsigned integer"
	tDuration = "duration"
	tSize     = "size"
)

// node is the model of one config value, from which both outputs are drawn.
type node struct {
	kind   nodeKind
	scalar string   // scalarNode: one of the t* constants
	max    uint64   // tUint: the largest value, 0 for no limit below 2^64
	elem   *node    // listNode, namesNode
	fields []*field // objectNode
	name   string   // objectNode: the struct's name, lower case ("target")
	family string   // kindedNode: "receiver" or "sink"
	kinds  []*kind  // kindedNode, sorted by name
}

// field is one key of a struct.
type field struct {
	key      string
	path     string // dotted, <name> standing for map keys
	doc      string // user documentation, from the Go doc comment
	node     *node
	def      any // JSON value of the default; nil for none
	required bool
}

// kind is one receiver or sink type and its keys.
type kind struct {
	name   string
	fields []*field
}

// model is the whole config.
type model struct {
	root       *node
	kindFamily map[string]*node  // family -> its kinded node
	typeDocs   map[string]string // tDuration, tSize -> what the syntax is
}

var (
	durationType = reflect.TypeFor[config.Duration]()
	sizeType     = reflect.TypeFor[config.Size]()
	receiverType = reflect.TypeFor[config.Receiver]()
	sinkType     = reflect.TypeFor[config.Sink]()
)

type builder struct {
	src   *sources
	kinds config.Kinds
	m     *model
}

func build(src *sources, kinds config.Kinds) (*model, error) {
	b := &builder{src: src, kinds: kinds, m: &model{kindFamily: map[string]*node{}, typeDocs: map[string]string{}}}
	for name, t := range map[string]reflect.Type{tDuration: durationType, tSize: sizeType} {
		td, err := src.docs(t)
		if err != nil {
			return nil, err
		}
		// "Size is a byte count ..." -> "a byte count ...".
		b.m.typeDocs[name] = strings.TrimPrefix(td.doc, t.Name()+" is ")
	}
	root, err := b.node(reflect.TypeFor[config.Config](), reflect.ValueOf(config.Default()).Elem(), "")
	if err != nil {
		return nil, err
	}
	b.m.root = root
	return b.m, nil
}

// node models a value of type t; def holds its default when there is one.
func (b *builder) node(t reflect.Type, def reflect.Value, path string) (*node, error) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
		if def.IsValid() {
			if def.IsNil() {
				def = reflect.Value{}
			} else {
				def = def.Elem()
			}
		}
	}
	switch t {
	case durationType:
		return &node{kind: scalarNode, scalar: tDuration}, nil
	case sizeType:
		return &node{kind: scalarNode, scalar: tSize}, nil
	case receiverType:
		return b.kinded("receiver", b.kinds.Receivers, path)
	case sinkType:
		return b.kinded("sink", b.kinds.Sinks, path)
	}
	switch t.Kind() {
	case reflect.String:
		return &node{kind: scalarNode, scalar: tString}, nil
	case reflect.Bool:
		return &node{kind: scalarNode, scalar: tBool}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &node{kind: scalarNode, scalar: tInt}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := &node{kind: scalarNode, scalar: tUint}
		if t.Bits() < 64 {
			n.max = 1<<t.Bits() - 1
		}
		return n, nil
	case reflect.Slice:
		elem, err := b.node(t.Elem(), reflect.Value{}, path+"[]")
		if err != nil {
			return nil, err
		}
		return &node{kind: listNode, elem: elem}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: map key %s is not a string", path, t.Key())
		}
		elem, err := b.node(t.Elem(), reflect.Value{}, join(path, "<name>"))
		if err != nil {
			return nil, err
		}
		return &node{kind: namesNode, elem: elem}, nil
	case reflect.Struct:
		fields, err := b.fields(t, def, path)
		if err != nil {
			return nil, err
		}
		return &node{kind: objectNode, name: strings.ToLower(t.Name()), fields: fields}, nil
	}
	return nil, fmt.Errorf("%s: type %s has no schema", path, t)
}

// kinded models a receiver or sink: one set of keys per registered kind,
// with the kind's constructor giving the defaults.
func (b *builder) kinded(family string, ctors map[string]func() any, path string) (*node, error) {
	n := &node{kind: kindedNode, family: family}
	names := make([]string, 0, len(ctors))
	for name := range ctors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := reflect.ValueOf(ctors[name]())
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return nil, fmt.Errorf("%s type %s: options are %s, want a pointer to a struct", family, name, v.Type())
		}
		fields, err := b.fields(v.Elem().Type(), v.Elem(), path)
		if err != nil {
			return nil, fmt.Errorf("%s type %s: %w", family, name, err)
		}
		for _, f := range fields {
			if f.key == "type" {
				return nil, fmt.Errorf("%s type %s: key type is taken by the kind", family, name)
			}
		}
		n.kinds = append(n.kinds, &kind{name: name, fields: fields})
	}
	if len(n.kinds) == 0 {
		return nil, fmt.Errorf("%s: no %s types are registered", path, family)
	}
	b.m.kindFamily[family] = n
	return n, nil
}

// fields models the yaml-tagged fields of struct t, in declaration order.
func (b *builder) fields(t reflect.Type, def reflect.Value, path string) ([]*field, error) {
	td, err := b.src.docs(t)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for i := range t.NumField() {
		if key := yamlKey(t.Field(i)); key != "" {
			keys[t.Field(i).Name] = key
		}
	}
	var fields []*field
	for i := range t.NumField() {
		sf := t.Field(i)
		key := yamlKey(sf)
		if key == "" {
			continue
		}
		f := &field{key: key, path: join(path, key)}
		goDoc := td.fields[sf.Name]
		if goDoc == "" {
			return nil, fmt.Errorf("%s (%s.%s): no doc comment; every key needs one", f.path, t, sf.Name)
		}
		f.doc = userText(goDoc, keys)
		f.required = isRequired(goDoc)
		var fv reflect.Value
		if def.IsValid() {
			fv = def.Field(i)
		}
		if f.node, err = b.node(sf.Type, fv, f.path); err != nil {
			return nil, err
		}
		if f.node.kind == scalarNode || f.node.kind == listNode {
			f.def = defaultValue(fv)
		}
		if f.def != nil && !strings.Contains(strings.ToLower(goDoc), "default") {
			return nil, fmt.Errorf("%s (%s.%s): has default %v but its doc does not state it", f.path, t, sf.Name, f.def)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// yamlKey is the key a struct field decodes from, "" for none.
func yamlKey(sf reflect.StructField) string {
	key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if key == "-" || !sf.IsExported() {
		return ""
	}
	return key
}

// defaultValue is v as a JSON value, or nil when v is the zero value of a
// non-boolean (empty means "none" or "disabled", which the doc says).
func defaultValue(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch v.Type() {
	case durationType:
		if v.Int() == 0 {
			return nil
		}
		return shortDuration(time.Duration(v.Int()))
	case sizeType:
		if v.Int() == 0 {
			return nil
		}
		return v.Int()
	}
	switch v.Kind() {
	case reflect.Bool:
		return v.Bool()
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return v.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Int() == 0 {
			return nil
		}
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() == 0 {
			return nil
		}
		return v.Uint()
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = defaultValue(v.Index(i))
		}
		return out
	}
	return nil
}

// shortDuration writes d as time.Duration does, without zero trailing
// units: 2m rather than 2m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
