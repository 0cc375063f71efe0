package top_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/herald-router/herald/internal/metrics"
)

// exported returns the names of every series herald's metrics package
// exposes, with each labelled family touched once so that it appears.
func exported(t *testing.T) []string {
	t.Helper()
	m := metrics.New()
	s := m.Stage("x")
	s.Rejected("r", 1)
	s.DeadLettered("r", 1)
	m.SinkSuspended.WithLabelValues("s").Set(0)
	m.Connections.WithLabelValues("r").Set(0)
	m.SinkCommitted.WithLabelValues("s").Add(0)
	m.SinkRestarts.WithLabelValues("s").Add(0)
	m.TargetBacklog.WithLabelValues("t").Set(0)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	return names
}

// The example dashboard and herald top name metrics by text: a renamed
// metric must fail here, not leave an empty panel.
func TestTheDashboardAndTopUseOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "herald.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/herald.json: %v", err)
	}
	metric := regexp.MustCompile(`\b(herald|process|go)_[a-z_]+\b`)
	used := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				used++
				if !slices.Contains(names, name) {
					t.Errorf("panel %q uses %s, which herald does not export", p.Title, name)
				}
			}
		}
	}
	if used == 0 {
		t.Fatal("the dashboard queries no metric")
	}
	src, err := os.ReadFile("sample.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`"(herald_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		if !slices.Contains(names, name[1]) {
			t.Errorf("top reads %s, which herald does not export", name[1])
		}
	}
}
