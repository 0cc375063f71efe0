package attrs

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestIsReserved(t *testing.T) {
	for key, want := range map[string]bool{
		"__host__": true, "__x__": true, "__template__": true, "__a_b__": true,
		"___host__": false, "__": false, "____": false, "_____": false, "__x_": false,
		"_x__": false, "host": false, "R_time__": false, "__x__ ": false,
	} {
		if got := IsReserved(key); got != want {
			t.Errorf("IsReserved(%q) = %v, want %v", key, got, want)
		}
		if want && IsReserved("_"+key) {
			t.Errorf("renaming %q to %q must leave the reserved space", key, "_"+key)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		offset     int // -1: no error
	}{
		{"plain text is fine", "hello", -1},
		{"a placeholder is fine", "%(user) did %(what)", -1},
		{"percent signs are fine", "100% %% %", -1},
		{"nested parentheses are fine", "%(f(x)) %((a))", -1},
		{"an escaped open is no placeholder", "%%(user", -1},
		{"an unbalanced placeholder is an error", "user %(name", 5},
		{"an unbalanced nested placeholder is an error", "%(f(x)", 0},
		{"an open at the end is an error", "x %(", 2},
		{"an empty placeholder is an error", "a %()", 2},
		{"the first problem is reported", "%(ok) %() %(", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.text)
			var se *SyntaxError
			switch {
			case tc.offset < 0 && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tc.offset >= 0 && !errors.As(err, &se):
				t.Errorf("Check = %v, want a *SyntaxError", err)
			case tc.offset >= 0 && se.Offset != tc.offset:
				t.Errorf("offset %d, want %d (%v)", se.Offset, tc.offset, err)
			}
		})
	}
}

func lookupIn(m map[string]string) Lookup {
	return func(dst []byte, key string) ([]byte, bool) {
		v, ok := m[key]
		if !ok {
			return dst, false
		}
		return append(dst, v...), true
	}
}

func TestExpand(t *testing.T) {
	values := lookupIn(map[string]string{"user": "ann", "f(x)": "fx", "pct": "%(user)", "big": strings.Repeat("é", 10)})
	for _, tc := range []struct {
		name, text string
		mode       Missing
		limit      int
		want       string
		missing    []string
		truncated  bool
	}{
		{"a key is replaced", "hi %(user)!", MissingEmpty, 0, "hi ann!", nil, false},
		{"a missing key renders empty", "[%(nope)]", MissingEmpty, 0, "[]", []string{"nope"}, false},
		{"a missing key is kept", "[%(nope)]", MissingKeep, 0, "[%(nope)]", []string{"nope"}, false},
		{"a missing key is kept in error mode", "[%(nope)] %(nope) %(x)", MissingError, 0, "[%(nope)] %(nope) %(x)", []string{"nope", "x"}, false},
		{"%% is one percent", "100%% %%(user)", MissingEmpty, 0, "100% %(user)", nil, false},
		{"a lone percent is itself", "5% off, end %", MissingEmpty, 0, "5% off, end %", nil, false},
		{"parentheses nest", "%(f(x))", MissingEmpty, 0, "fx", nil, false},
		{"unbalanced renders as written", "a %(user b %(user)", MissingEmpty, 0, "a %(user b %(user)", nil, false},
		{"an empty placeholder renders as written", "%()%(user)", MissingEmpty, 0, "%()ann", nil, false},
		{"values are not expanded again", "%(pct)", MissingEmpty, 0, "%(user)", nil, false},
		{"the limit cuts at a rune boundary", "%(big)", MissingEmpty, 5, "éé", nil, true},
		{"the limit stops repeats early", strings.Repeat("%(big)", 1000), MissingEmpty, 30, strings.Repeat("é", 15), nil, true},
		{"a text at the limit is whole", "abcde", MissingEmpty, 5, "abcde", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, r := Expand([]byte(">"), tc.text, values, tc.mode, tc.limit)
			if string(got) != ">"+tc.want {
				t.Errorf("Expand = %q, want %q", got, ">"+tc.want)
			}
			if strings.Join(r.Missing, ",") != strings.Join(tc.missing, ",") || r.Truncated != tc.truncated {
				t.Errorf("result %+v, want missing %v truncated %v", r, tc.missing, tc.truncated)
			}
		})
	}
}

func TestCompileStamp(t *testing.T) {
	when := time.Date(2026, 7, 14, 10, 20, 30, 123456789, time.UTC)
	for _, tc := range []struct{ format, want string }{
		{"%Y-%m-%dT%H:%M:%S%z", "2026-07-14T10:20:30+0000"},
		{"%F %T.%L", "2026-07-14 10:20:30.123"},
		{"%T.%f", "10:20:30.123456"},
		{"%s", "1784024430"},
		{"%% %j %a %b", "% 195 Tue Jul"},
	} {
		f, err := CompileStamp(tc.format)
		if err != nil {
			t.Errorf("%q: %v", tc.format, err)
			continue
		}
		if got := f.FormatString(when); got != tc.want {
			t.Errorf("%q = %q, want %q", tc.format, got, tc.want)
		}
	}
	for _, bad := range []string{"%Q", "%Y %", "%E"} {
		if _, err := CompileStamp(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestLoadZone(t *testing.T) {
	if z, err := LoadZone(""); err != nil || z != time.Local {
		t.Errorf("empty = %v %v, want Local", z, err)
	}
	if _, err := LoadZone("Europe/Paris"); err != nil {
		t.Errorf("Europe/Paris: %v (time/tzdata is embedded)", err)
	}
	if _, err := LoadZone("Nowhere/Land"); err == nil {
		t.Error("Nowhere/Land: want an error")
	}
}

// Expand never panics, never exceeds its limit, keeps UTF-8 valid, and
// agrees with Check: a text Check accepts renders only its placeholders.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "%", "%%", "%(", "%()", "%(a)", "%(f(x))", "a %(b %(c)", "100% %(user) %%(x)", "é%(big)é"} {
		f.Add(s, 16)
	}
	values := lookupIn(map[string]string{"a": "A", "user": "ann", "big": strings.Repeat("€", 20)})
	f.Fuzz(func(t *testing.T, text string, limit int) {
		for _, mode := range []Missing{MissingEmpty, MissingKeep, MissingError} {
			out, r := Expand(nil, text, values, mode, limit)
			if limit > 0 && len(out) > limit {
				t.Fatalf("%d bytes over the limit %d", len(out), limit)
			}
			if utf8.ValidString(text) && !utf8.Valid(out) {
				t.Fatalf("invalid UTF-8 from %q: %q", text, out)
			}
			if mode == MissingKeep && limit <= 0 && Check(text) == nil && len(r.Missing) == 0 &&
				!strings.Contains(text, "%") && string(out) != text {
				t.Fatalf("a text without %% changed: %q -> %q", text, out)
			}
		}
		_ = Check(text)
	})
}
