package gen

import (
	"testing"
	"time"
)

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Millisecond:               "5ms",
		10 * time.Second:                   "10s",
		2 * time.Minute:                    "2m",
		90 * time.Second:                   "1m30s",
		3 * time.Hour:                      "3h",
		time.Hour + 30*time.Minute:         "1h30m",
		time.Hour + 10*time.Second:         "1h0m10s",
		2*time.Hour + 500*time.Millisecond: "2h0m0.5s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSizeLabel(t *testing.T) {
	for n, want := range map[int64]string{
		512: "512", 1 << 10: "1KiB", 64 << 10: "64KiB", 1536: "1536", 170 << 20: "170MiB", 10 << 30: "10GiB",
	} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

// The doc comment of a field becomes user text: Go names of the struct's
// fields read as the keys a user writes.
func TestUserText(t *testing.T) {
	keys := map[string]string{"AckWait": "ack_wait", "URLs": "urls", "TCP": "tcp"}
	got := userText("AckWait must exceed linger; used when URLs is empty, not URLsX or TCPs.", keys)
	want := "ack_wait must exceed linger; used when urls is empty, not URLsX or TCPs."
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
