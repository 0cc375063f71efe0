package bus_test

import (
	"path/filepath"
	"testing"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/providers"
)

// The example configs of deploy/nats are checked as herald check would,
// so that they cannot rot as the config changes.
func TestTheNATSTopologyExamplesAreValidConfigs(t *testing.T) {
	files, err := filepath.Glob("../deploy/nats/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../deploy/nats/*/*/*.yaml")
	files = append(files, more...)
	if len(files) < 7 {
		t.Fatalf("found %d example configs under deploy/nats, want the cluster, supercluster and leafnode ones: %v", len(files), files)
	}
	kinds := providers.Kinds(providers.Registry())
	for _, f := range files {
		t.Run(filepath.ToSlash(f), func(t *testing.T) {
			if _, err := config.Load(f, kinds); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}
