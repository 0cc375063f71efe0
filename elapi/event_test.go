package elapi_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/herald-router/herald/elapi"
)

func TestBuildingAnEventRefusesBadKeysAndNamesThem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field elapi.Field
		key   string
		err   error
	}{
		{"a key in herald's reserved name space is refused", elapi.String("__user__", "x"), "__user__", elapi.ErrReservedKey},
		{"a derived reserved attribute cannot be set", elapi.String(elapi.AttrStamp, "x"), elapi.AttrStamp, elapi.ErrReservedKey},
		{"the host must be text", elapi.Int(elapi.AttrHost, 1), elapi.AttrHost, elapi.ErrValueType},
		{"the time must be a time", elapi.String(elapi.AttrTime, "now"), elapi.AttrTime, elapi.ErrValueType},
		{"the pid must be an integer", elapi.String(elapi.AttrPid, "77"), elapi.AttrPid, elapi.ErrValueType},
		{"an unknown resolvable attribute is refused", elapi.Null("R_user__"), "R_user__", elapi.ErrResolvableKey},
		{"herald's R_error__ is refused", elapi.String(elapi.ResError, "x"), elapi.ResError, elapi.ErrResolvableKey},
		{"R_time__ takes no value: an integer would mark the event resolved", elapi.Int(elapi.ResTime, 5), elapi.ResTime, elapi.ErrValueType},
		{"R_message__ must be text", elapi.Int(elapi.ResMessage, 5), elapi.ResMessage, elapi.ErrValueType},
		{"an empty key is refused", elapi.String("", "x"), "", elapi.ErrInvalidKey},
		{"a key that is not UTF-8 is refused", elapi.String("k\xff", "x"), "k\xff", elapi.ErrInvalidKey},
		{"text that is not UTF-8 is refused", elapi.String("note", "\xff"), "note", elapi.ErrInvalidText},
		{"a bad map key is named by its path", elapi.Map("req", elapi.Map("headers", elapi.String("", "x"))), "req.headers.", elapi.ErrInvalidKey},
		{"a map key given twice is named by its path", elapi.Map("req", elapi.Int("a", 1), elapi.Int("a", 2)), "req.a", elapi.ErrDuplicateKey},
		{"bad text inside a list is named by its index", elapi.List("tags", elapi.StringValue("ok"), elapi.StringValue("\xfe")), "tags[1]", elapi.ErrInvalidText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := elapi.NewEvent(elapi.Message("m"), tc.field)
			var ke *elapi.KeyError
			if !errors.As(err, &ke) || !errors.Is(err, tc.err) || ke.Key != tc.key {
				t.Fatalf("got %v, want a *KeyError for key %q wrapping %v", err, tc.key, tc.err)
			}
			if _, err := elapi.NewTemplate(tc.field); !errors.Is(err, tc.err) {
				t.Errorf("a template must apply the same rules, got %v", err)
			}
		})
	}
}

func TestAKeyGivenTwiceInOneEventIsAnError(t *testing.T) {
	_, err := elapi.NewEvent(elapi.Int("n", 1), elapi.Int("n", 2))
	if !errors.Is(err, elapi.ErrDuplicateKey) {
		t.Fatalf("got %v, want ErrDuplicateKey", err)
	}
}

func TestSettableReservedAttributesFillTheEnvelopeAndResolvableOnesStayFields(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev, err := elapi.NewEvent(elapi.Host("db1"), elapi.App("billing"), elapi.Message("hi"), elapi.At(when),
		elapi.Pid(77), elapi.UseTemplate("web"), elapi.Resolve(elapi.ResStamp), elapi.String(elapi.ResMessage, "%(pid)"), elapi.String("_ok__", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := ev.Get(elapi.AttrHost); v.Str() != "db1" {
		t.Errorf("host %q", v.Str())
	}
	if v, _ := ev.Get(elapi.AttrTime); !v.Time().Equal(when) {
		t.Errorf("time %v", v.Time())
	}
	if v, ok := ev.Get(elapi.AttrPid); !ok || v.Int64() != 77 {
		t.Errorf("pid %v", v)
	}
	if got, want := keys(ev.Fields()), []string{"pid", elapi.AttrTemplate, elapi.ResStamp, elapi.ResMessage, "_ok__"}; !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
}

func TestAnEventFromATemplateKeepsTemplateOrderAndItsOwnValuesWin(t *testing.T) {
	tpl, err := elapi.NewTemplate(elapi.Host("web1"), elapi.String("service", "shop"), elapi.String("env", "prod"), elapi.Int("version", 3))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := elapi.FromTemplate(tpl, elapi.String("user", "bob"), elapi.String("env", "staging"), elapi.Host("web2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(ev.Fields()), []string{"service", "env", "version", "user"}; !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	if v, _ := ev.Get("env"); v.Str() != "staging" {
		t.Errorf("env %q: the event's own value must win", v.Str())
	}
	if v, _ := ev.Get(elapi.AttrHost); v.Str() != "web2" {
		t.Errorf("host %q: the event's own value must win", v.Str())
	}
	// The template is unchanged and shared safely.
	again, _ := elapi.FromTemplate(tpl)
	if v, _ := again.Get("env"); v.Str() != "prod" {
		t.Errorf("template changed: env %q", v.Str())
	}
	if _, err := elapi.FromTemplate(tpl, elapi.Int("n", 1), elapi.Int("n", 2)); !errors.Is(err, elapi.ErrDuplicateKey) {
		t.Errorf("a key given twice beside a template: got %v", err)
	}
}

func TestSetReplacesAValueInPlace(t *testing.T) {
	ev, _ := elapi.NewEvent(elapi.Int("a", 1), elapi.Int("b", 2))
	if err := ev.Set(elapi.Int("a", 10), elapi.Int("c", 3)); err != nil {
		t.Fatal(err)
	}
	if got := keys(ev.Fields()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("fields %v", got)
	}
	if v, _ := ev.Get("a"); v.Int64() != 10 {
		t.Errorf("a = %d", v.Int64())
	}
	if err := ev.Set(elapi.String("__x__", "y")); !errors.Is(err, elapi.ErrReservedKey) {
		t.Errorf("Set must check keys too, got %v", err)
	}
}

func keys(fs []elapi.Field) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Key)
	}
	return out
}
