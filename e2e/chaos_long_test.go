//go:build chaos

package e2e

import (
	"testing"
	"time"
)

// The full chaos run (`make chaos`): a million events sent as fast as the
// receiver takes them, so the kills fall on a deep backlog in every stream,
// and twenty kills.
func TestChaosLongKill9OfStageProcesses20TimesLosesNothing(t *testing.T) {
	r := runChaos(t, chaosParams{events: 1000000, kills: 20, rate: 0, deadline: 15 * time.Minute})
	t.Log(r)
}
