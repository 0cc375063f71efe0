package ids

import (
	"testing"
	"time"
)

func TestIDsSortByTimeAndDerivedIDsAreStable(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	a, b := New(t0), New(t0.Add(time.Millisecond))
	if len(a) != 26 || len(b) != 26 {
		t.Fatalf("want 26 characters, got %q %q", a, b)
	}
	if !(a < b) {
		t.Errorf("a later id must sort after an earlier one: %s !< %s", a, b)
	}
	if New(t0) == New(t0) {
		t.Error("two fresh ids with the same time must differ")
	}
	if Derived(t0, "batch-1", 3) != Derived(t0, "batch-1", 3) {
		t.Error("a derived id must be the same for the same inputs")
	}
	if Derived(t0, "batch-1", 3) == Derived(t0, "batch-1", 4) || Derived(t0, "batch-1", 3) == Derived(t0, "batch-2", 3) {
		t.Error("derived ids of different inputs must differ")
	}
}
