package stage

import "testing"

func TestSubjectMatchesFollowsNATSWildcards(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"herald.resolved", "herald.resolved", true},
		{"herald.resolved", "herald.resolved.x", false},
		{"herald.events.>", "herald.events.rfc3164", true},
		{"herald.events.>", "herald.events", false},
		{"herald.*.rfc3164", "herald.events.rfc3164", true},
		{"herald.*", "herald.events.rfc3164", false},
		{"herald.events.rfc3164", "herald.events.rfc5424", false},
	} {
		if got := SubjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", c.pattern, c.subject, got, c.want)
		}
	}
}

func TestTapsForgetATapThatStoppedAnnouncing(t *testing.T) {
	var ts Taps
	if ts.Active("herald.resolved") {
		t.Fatal("no tap announced, yet active")
	}
	ts.Watch("herald.resolved")
	if !ts.Active("herald.resolved") || ts.Active("herald.events.json") {
		t.Fatal("the announced subject is not the only active one")
	}
	ts.until["herald.resolved"] = ts.until["herald.resolved"].Add(-2 * TapLease)
	if ts.Active("herald.resolved") {
		t.Fatal("an expired announcement still counts")
	}
}
