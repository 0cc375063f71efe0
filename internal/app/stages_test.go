package app

import (
	"slices"
	"strings"
	"testing"
)

func TestParseStages(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      string
	}{
		{name: "an empty list means every stage", in: "", want: AllStages},
		{name: "all means every stage", in: "all", want: AllStages},
		{name: "none means no stage, only the embedded NATS server", in: "none", want: []string{}},
		{name: "a list keeps its order and drops repeats", in: "sink, resolver,sink", want: []string{"sink", "resolver"}},
		{name: "none with stages is refused", in: "none,sink", err: `unknown stage "none"`},
		{name: "an unknown stage is refused with the valid ones", in: "resolver,sorter", err: `unknown stage "sorter"; stages are receiver,classifier,resolver,router,sink, or all, or none alone`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStages(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseStages(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got == nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseStages(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
			}
		})
	}
}
