//go:build chaos

package e2e

import (
	"testing"
	"time"
)

// The full chaos run (`make chaos`): a million events and twenty kills.
// The sender is paced at 20,000 lines/s, so the run lasts about 50 s and
// the kills, each at a random share of the ids delivered, spread over it:
// sent as fast as the receiver takes them, the pipeline delivered all of
// them in 14 s and the last kills fell on a finished run.
func TestChaosLongKill9OfStageProcesses20TimesLosesNothing(t *testing.T) {
	r := runChaos(t, chaosParams{events: 1000000, kills: 20, rate: 20000, deadline: 15 * time.Minute})
	t.Log(r)
}
