package config

import (
	"fmt"
	"strings"

	"github.com/herald-router/herald/internal/filter"
)

// Rule sets the target mask of records from receivers when its condition
// holds. Rules are tried in order; the first that matches applies.
// Application events (published onto NATS) carry their own mask and are
// never matched.
type Rule struct {
	// When is an expression over the event that must be true for the rule
	// to apply, such as 'severity <= 3' or 'host startsWith "db"' (names:
	// docs/filters.md). Required.
	When string `yaml:"when"`
	// Receiver limits the rule to records from the receiver of that name.
	// Default: any receiver.
	Receiver string `yaml:"receiver"`
	// Mask is the target mask the rule gives: every bit must belong to a
	// target. Required.
	Mask uint64 `yaml:"mask"`
	// Add ORs mask into the event's mask instead of replacing it. Default
	// false.
	Add bool `yaml:"add"`
}

// validateRouting checks the filters, rules and masks: every expression
// compiles and is type-correct, and no mask names a bit no target has.
func (d *decoder) validateRouting(c *Config) {
	var known uint64
	bitsOK := true
	for _, t := range c.Targets {
		known |= t.Bit
		bitsOK = bitsOK && t.Bit != 0 && t.Bit&(t.Bit-1) == 0
	}
	undefined := func(mask uint64) string {
		if !bitsOK { // a bad target bit is reported already; do not guess
			return ""
		}
		var bits []string
		for b := uint64(1); b != 0; b <<= 1 {
			if mask&b != 0 && known&b == 0 {
				bits = append(bits, fmt.Sprint(b))
			}
		}
		return strings.Join(bits, ", ")
	}
	for _, name := range sortedKeys(c.Targets) {
		if name == "router" {
			// Receipts name the router as the target of a copy it could not route.
			d.errorf("targets."+name, "the name router is reserved; choose another")
		}
		if f := c.Targets[name].Filter; f != "" {
			if _, err := filter.Compile(f); err != nil {
				d.errorf("targets."+name+".filter", "%s", exprError(err))
			}
		}
	}
	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if r.When == "" {
			d.errorf(p, "when is required: the condition of the rule")
		} else if _, err := filter.Compile(r.When); err != nil {
			d.errorf(p+".when", "%s", exprError(err))
		}
		if r.Receiver != "" && c.Receivers[r.Receiver] == nil {
			d.errorf(p+".receiver", "no receiver named %q is defined under receivers", r.Receiver)
		}
		if r.Mask == 0 {
			d.errorf(p+".mask", "required: the target mask to give")
		} else if u := undefined(r.Mask); u != "" {
			d.errorf(p+".mask", "bits %s belong to no target", u)
		}
	}
	for _, name := range sortedKeys(c.Receivers) {
		if s, ok := c.Receivers[name].Options.(Masked); ok {
			if u := undefined(s.Mask()); u != "" && len(c.Targets) > 0 {
				d.errorf("receivers."+name+".target_mask", "bits %s belong to no target", u)
			}
		}
	}
}

// exprError puts expr's multi-line message (with its caret under the
// problem) on one line.
func exprError(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	return "bad expression: " + lines[0]
}
