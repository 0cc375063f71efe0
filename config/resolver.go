package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/herald-router/herald/actors/resolver/attrs"
)

// Resolver configures the resolver stage, which makes each event final once
// for every sink: it merges templates, fills the resolvable attributes
// (R_stamp__, R_time__, R_loco__, R_message__) and gives the event its id.
type Resolver struct {
	// StampFormat is the strftime format of R_stamp__ and __stamp__: C verbs
	// (%Y %m %d %H %M %S %z %Z %F %T %j %a %b ...) plus %L milliseconds, %f
	// microseconds and %s Unix seconds. An unknown verb is a config error.
	// Default %Y-%m-%dT%H:%M:%S%z.
	StampFormat string `yaml:"stamp_format"`
	// Zone is the IANA time zone (Europe/Paris, UTC) of R_stamp__, __stamp__,
	// R_loco__ and __loco__. Default: empty, herald's local zone.
	Zone string `yaml:"zone"`
	// MissingKey says how a %(key) placeholder of R_message__ renders when
	// the event has no such key: empty (nothing), keep (the placeholder as
	// written) or error (the placeholder as written, and the field R_error__
	// names the missing keys). Default empty.
	MissingKey string `yaml:"missing_key"`
	// MaxMessageSize caps a rendered R_message__; a longer one is cut and
	// R_error__ says so. Default 64KiB.
	MaxMessageSize Size `yaml:"max_message_size"`
	// DefaultTemplate names the template merged into every event that names
	// none in its __template__ field (or names an unknown one). Default:
	// empty, none.
	DefaultTemplate string `yaml:"default_template"`
	// Templates are named sets of common attributes merged into the events
	// that name them (field __template__) or, for default_template, into
	// every event. Default: none.
	Templates map[string]*Template `yaml:"templates"`
}

// Template is one named set of attributes.
type Template struct {
	// Base names another template this one extends: the base's fields come
	// first, this template's values win and its new keys follow. A chain of
	// bases that comes back to a template is a config error. Default: none.
	Base string `yaml:"base"`
	// Fields are the attributes, merged after an event's own fields in the
	// order written here; an event's own value of a key wins. Values are
	// text: quote a number or true/false ("8080"). Keys may not be reserved
	// names (__host__, __x__); an R_message__ value is a %(key) text and
	// must be well formed. Default: none.
	Fields map[string]FieldText `yaml:"fields"`

	// Keys lists Fields' keys in the order of the file (set by Parse;
	// sorted when empty, as for a Template made in code).
	Keys []string `yaml:"-"`
}

// FieldText is a template field's value: a YAML string. A number or a
// boolean is refused rather than turned into text, so that herald and the
// config schema (which says string) agree on what a file may hold.
type FieldText string

// UnmarshalYAML accepts a string scalar only.
func (t *FieldText) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		if n.Kind == yaml.ScalarNode {
			return fmt.Errorf("want text; quote it: %q", n.Value)
		}
		return fmt.Errorf("want text, got %s", kindName(n.Kind))
	}
	*t = FieldText(n.Value)
	return nil
}

// OrderedKeys returns the keys of Fields in template order: Keys when it
// lists them, else sorted.
func (t *Template) OrderedKeys() []string {
	if len(t.Keys) == len(t.Fields) {
		return t.Keys
	}
	return sortedKeys(t.Fields)
}

// defaultResolver is the resolver config of Default.
func defaultResolver() Resolver {
	return Resolver{StampFormat: "%Y-%m-%dT%H:%M:%S%z", MissingKey: "empty", MaxMessageSize: 64 << 10}
}

// validateResolver checks the resolver section and records the file order
// of each template's keys.
func (d *decoder) validateResolver(c *Config) {
	r := &c.Resolver
	if r.StampFormat == "" {
		d.errorf("resolver.stamp_format", "must not be empty")
	} else if _, err := attrs.CompileStamp(r.StampFormat); err != nil {
		d.errorf("resolver.stamp_format", "%v", err)
	}
	if _, err := attrs.LoadZone(r.Zone); err != nil {
		d.errorf("resolver.zone", "%v", err)
	}
	if _, ok := attrs.ParseMissing(r.MissingKey); !ok {
		d.errorf("resolver.missing_key", "want %s, got %q", attrs.MissingModesText, r.MissingKey)
	}
	if r.MaxMessageSize < 256 || r.MaxMessageSize > 1<<20 {
		d.errorf("resolver.max_message_size", "want 256B to 1MiB, got %d", r.MaxMessageSize)
	}
	if r.DefaultTemplate != "" && r.Templates[r.DefaultTemplate] == nil {
		d.errorf("resolver.default_template", "no template named %q is defined under resolver.templates", r.DefaultTemplate)
	}
	for _, name := range sortedKeys(r.Templates) {
		t := r.Templates[name]
		p := "resolver.templates." + name
		if !nameOK(name) {
			d.errorf(p, "name %q: use letters, digits, _ and -", name)
		}
		if t.Base != "" && r.Templates[t.Base] == nil {
			d.errorf(p+".base", "no template named %q is defined under resolver.templates", t.Base)
		}
		t.Keys = d.fileOrder(p+".fields.", t.Fields)
		for _, k := range t.Keys {
			fp := p + ".fields." + k
			switch {
			case k == "":
				d.errorf(fp, "a field key may not be empty")
			case attrs.IsReserved(k):
				d.errorf(fp, "%q is a reserved name (herald's __x__ attributes); rename the field", k)
			case k == attrs.RMessage:
				if err := attrs.Check(string(t.Fields[k])); err != nil {
					d.errorf(fp, "%%(key) text: %v", err)
				}
			}
		}
	}
	d.checkTemplateCycles(r.Templates)
}

// fileOrder returns the keys of m in the order they were written, from the
// positions the decoder recorded under prefix; keys without one go last,
// sorted.
func (d *decoder) fileOrder(prefix string, m map[string]FieldText) []string {
	keys := sortedKeys(m)
	sort.SliceStable(keys, func(i, j int) bool {
		a, aok := d.pos[prefix+keys[i]]
		b, bok := d.pos[prefix+keys[j]]
		if aok != bok {
			return aok
		}
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
	return keys
}

// checkTemplateCycles reports each chain of bases that loops, once, at the
// base key of the loop's first template by name.
func (d *decoder) checkTemplateCycles(ts map[string]*Template) {
	reported := map[string]bool{}
	for _, name := range sortedKeys(ts) {
		var chain []string
		at := map[string]int{}
		for n := name; n != "" && ts[n] != nil; n = ts[n].Base {
			if i, seen := at[n]; seen {
				loop := chain[i:]
				if !slices.ContainsFunc(loop, func(x string) bool { return reported[x] }) {
					// Report at the loop's first template by name, and show
					// the loop from there.
					k := slices.Index(loop, slices.Min(loop))
					loop = append(append([]string(nil), loop[k:]...), loop[:k]...)
					for _, x := range loop {
						reported[x] = true
					}
					if len(loop) == 1 {
						d.errorf("resolver.templates."+loop[0]+".base", "template %s has itself as base", loop[0])
					} else {
						d.errorf("resolver.templates."+loop[0]+".base", "templates refer to themselves through base: %s → %s",
							strings.Join(loop, " → "), loop[0])
					}
				}
				break
			}
			at[n] = len(chain)
			chain = append(chain, n)
		}
	}
}
