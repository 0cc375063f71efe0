//go:build chaos

package e2e

import (
	"testing"
	"time"
)

// The long sink-outage run (`make chaos`): twice the rate, and every
// destination down three times for 15 s, long enough for the sinks'
// back-off to grow to several seconds, the outages overlapping.
func TestChaosLongSinkOutagesUnderLoadLoseNothing(t *testing.T) {
	runSinkChaos(t, sinkChaosParams{rate: 5000, minSend: 90 * time.Second, tail: 5 * time.Second,
		hold: 15 * time.Second, stagger: 5 * time.Second, rounds: 3})
}
