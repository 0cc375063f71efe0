package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// withTail completes a resolver section into a config Parse accepts
// otherwise, so that line numbers in cases count from the first line.
func withTail(resolver string) string {
	return resolver + `
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out.jsonl}
`
}

func TestResolverDefaults(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte(good), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Resolver
	if r.StampFormat != "%Y-%m-%dT%H:%M:%S%z" || r.Zone != "" || r.MissingKey != "empty" ||
		r.MaxMessageSize != 64<<10 || r.DefaultTemplate != "" || len(r.Templates) != 0 {
		t.Errorf("defaults = %+v", r)
	}
}

func TestResolverTemplatesKeepTheirFileOrder(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte(withTail(`resolver:
  default_template: web
  templates:
    web:
      base: common
      fields:
        zeta: z
        alpha: "a"
        R_message__: "%(user) in %(zeta)"
        mid: "8080"
    common:
      fields: {b: "1", a: x}
`)), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	web := cfg.Resolver.Templates["web"]
	if got := strings.Join(web.OrderedKeys(), ","); got != "zeta,alpha,R_message__,mid" {
		t.Errorf("web keys in order = %s", got)
	}
	if got := strings.Join(cfg.Resolver.Templates["common"].OrderedKeys(), ","); got != "b,a" {
		t.Errorf("common keys in order = %s", got)
	}
	if got := strings.Join((&Template{Fields: map[string]FieldText{"b": "", "a": ""}}).OrderedKeys(), ","); got != "a,b" {
		t.Errorf("a template made in code has its keys sorted: %s", got)
	}
}

// Each bad resolver section is refused with the position of the key at
// fault, as herald check and a reload report it.
func TestResolverConfigErrorsHaveTheirPosition(t *testing.T) {
	type at struct {
		field string
		line  int
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []at
	}{
		{"a template that is its own base", `resolver:
  templates:
    a:
      base: a
`, []at{{"resolver.templates.a.base", 4}}},
		{"templates that refer to each other are reported once, at the first by name", `resolver:
  templates:
    c: {base: a}
    b:
      base: c
    a:
      base: b
    d: {base: a}
`, []at{{"resolver.templates.a.base", 7}}},
		{"an unknown strftime verb", `resolver:
  stamp_format: "%Y %Q"
`, []at{{"resolver.stamp_format", 2}}},
		{"an empty strftime format", `resolver:
  stamp_format: ""
`, []at{{"resolver.stamp_format", 2}}},
		{"an unbalanced placeholder in a template's R_message__", `resolver:
  templates:
    web:
      fields:
        app: shop
        R_message__: "%(user did it"
`, []at{{"resolver.templates.web.fields.R_message__", 6}}},
		{"an empty placeholder in a template's R_message__", `resolver:
  templates:
    web: {fields: {R_message__: "a %() b"}}
`, []at{{"resolver.templates.web.fields.R_message__", 3}}},
		{"a reserved key in a template", `resolver:
  templates:
    web:
      fields:
        app: shop
        __host__: spoofed
        __new__: x
`, []at{{"resolver.templates.web.fields.__host__", 6}, {"resolver.templates.web.fields.__new__", 7}}},
		{"a base that is not defined", `resolver:
  templates:
    web:
      base: nosuch
`, []at{{"resolver.templates.web.base", 4}}},
		{"a default template that is not defined", `resolver:
  default_template: nosuch
`, []at{{"resolver.default_template", 2}}},
		{"an unknown zone", `resolver:
  zone: Mars/Olympus
`, []at{{"resolver.zone", 2}}},
		{"an unknown missing_key mode", `resolver:
  missing_key: drop
`, []at{{"resolver.missing_key", 2}}},
		{"a too small message cap", `resolver:
  max_message_size: 10B
`, []at{{"resolver.max_message_size", 2}}},
		{"a template name with a space", `resolver:
  templates:
    "my web":
      fields: {a: b}
`, []at{{"resolver.templates.my web", 4}}},
		{"a number as a template value must be quoted", `resolver:
  templates:
    web:
      fields:
        port: 8080
        tls: true
        list: [a]
`, []at{{"resolver.templates.web.fields.port", 5}, {"resolver.templates.web.fields.tls", 6}, {"resolver.templates.web.fields.list", 7}}},
		{"an unknown key in a template", `resolver:
  templates:
    web:
      feilds: {a: b}
`, []at{{"resolver.templates.web.feilds", 4}}},
		{"several problems are all reported, in file order", `resolver:
  stamp_format: "%Q"
  zone: nowhere
  templates:
    a: {base: a, fields: {__x__: y}}
`, []at{{"resolver.stamp_format", 2}, {"resolver.zone", 3}, {"resolver.templates.a.base", 5}, {"resolver.templates.a.fields.__x__", 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(withTail(tc.yaml)), testKinds)
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want *Errors", err)
			}
			var got []at
			for _, e := range ce.List {
				if e.File != "h.yaml" {
					t.Errorf("error names file %q: %v", e.File, e)
				}
				got = append(got, at{e.Field, e.Pos.Line})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors at %v, want %v:\n%v", got, tc.want, err)
			}
		})
	}
}
