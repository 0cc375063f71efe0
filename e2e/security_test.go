package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTheMetricsEndpointCanRequireAToken(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort := freePort(t), freePort(t)
	if err := os.WriteFile(filepath.Join(dir, "metrics.token"), []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d, token_file: metrics.token, pprof: true}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl}
`, natsPort, metricsPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second) // /readyz stays open for probes
	get := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, path), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", 401},
		{"/metrics", "wrong", 401},
		{"/metrics", "s3cret-token", 200},
		{"/debug/pprof/", "", 401},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		if got := get(tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
	data, _ := os.ReadFile(h.logPath)
	if strings.Contains(string(data), "s3cret-token") {
		t.Error("the token appears in herald's log")
	}
}
