package app

import (
	"context"
	"testing"
	"time"
)

func TestDrainContextKeepsAReserveForClosingWithinTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration // 0: no deadline
		reserve time.Duration // how much sooner than ctx the drain must end
	}{
		{"a 5s stop keeps a tenth for closing", 5 * time.Second, 500 * time.Millisecond},
		{"a 60s stop keeps at most 2s for closing", 60 * time.Second, 2 * time.Second},
		{"a stop without a deadline gets none", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			dctx, cancel := drainContext(ctx)
			defer cancel()
			dl, ok := dctx.Deadline()
			if tc.timeout == 0 {
				if ok {
					t.Fatalf("drain deadline %s from a context without one", dl)
				}
				return
			}
			outer, _ := ctx.Deadline()
			// The reserve is taken from the time left when drainContext ran,
			// a little less than timeout: allow 50ms of scheduling.
			if got := outer.Sub(dl); got > tc.reserve || got < tc.reserve-50*time.Millisecond {
				t.Errorf("the drain ends %s before the stop's deadline, want about %s", got, tc.reserve)
			}
		})
	}
}
