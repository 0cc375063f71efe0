package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/lease"
	"github.com/herald-router/herald/internal/top"
)

// statusCmd is `herald status`: the bus, its streams and consumers, and
// each sink's state and lease holder, once.
func statusCmd() *cobra.Command {
	var cfgPath, metricsURL string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the bus, each stream's size, each consumer's backlog and each sink's state and lease holder",
		Long: `status prints, once:

  bus        the NATS server herald's tools connect to (the config's bus.urls, or the
             embedded server's listen address), its cluster, the JetStream domain and
             the other servers the client knows of;
  streams    every JetStream stream: messages, bytes, consumers, replicas;
  consumers  every durable consumer: PENDING (not yet delivered), ACK-PENDING
             (delivered, not yet acknowledged), REDELIVERED;
  sinks      every sink of the config: STATE is up or suspended as the local herald's
             /metrics says (herald_sink_suspended), "-" when it does not run that sink
             or cannot be reached; HOLDER is the process holding the sink's lease
             (host:pid/instance) for single-writer sinks (file, stdout, xmpp), "-" for
             sinks without a lease or while nobody holds it.

Columns are separated by spaces and an empty value is "-", so each line splits on
whitespace. --json prints the same as one JSON object. Exit 1 when NATS cannot be
reached; an unreachable /metrics is reported and is not an error.`,
		Example: `  herald status --config deploy/herald.yaml
  herald status --json | jq '.sinks[] | select(.holder != null) | .holder.host'
  herald status --metrics http://10.0.0.5:9464/metrics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, cfgPath, registry())
			if err != nil {
				return err
			}
			if metricsURL == "" && cfg.Metrics.Listen != "" {
				metricsURL = "http://" + cfg.Metrics.Listen + "/metrics"
			}
			nc, js, err := bus.Connect(cfg.Bus, "herald-status")
			if err != nil {
				return &exitError{1, err}
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := collectStatus(ctx, nc, js, cfg, metricsURL)
			if err != nil {
				return &exitError{1, err}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.render(cmd.OutOrStdout())
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file (for the NATS address, the sinks and metrics.listen)")
	c.Flags().StringVar(&metricsURL, "metrics", "", "herald's /metrics URL (default: from metrics.listen of the config)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return c
}

// status is what `herald status` prints; its JSON form is --json.
type status struct {
	Bus       busStatus        `json:"bus"`
	Streams   []streamStatus   `json:"streams"`
	Consumers []consumerStatus `json:"consumers"`
	Sinks     []sinkStatus     `json:"sinks"`
	// MetricsError says why the local herald's /metrics was not read.
	MetricsError string `json:"metrics_error,omitempty"`
}

type busStatus struct {
	URL      string `json:"url"`
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	Version  string `json:"version"`
	Cluster  string `json:"cluster,omitempty"`
	Domain   string `json:"domain,omitempty"`
	// Servers are every server URL the client knows of (the configured
	// ones and those the cluster announced).
	Servers []string `json:"servers"`
}

type streamStatus struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	// MaxBytes is the stream's size limit (the work streams' share of
	// bus.embedded.max_store); 0: none of its own.
	MaxBytes  int64 `json:"max_bytes"`
	Consumers int   `json:"consumers"`
	Replicas  int   `json:"replicas"`
	// Cluster is the cluster the stream's replicas are in (bus.placement).
	Cluster string `json:"cluster,omitempty"`
	Leader  string `json:"leader,omitempty"`
}

type consumerStatus struct {
	Stream      string `json:"stream"`
	Name        string `json:"name"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
}

type sinkStatus struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
	// Suspended is null when unknown (the local herald does not run the
	// sink or its /metrics cannot be read).
	Suspended *bool `json:"suspended"`
	// Holder is the process holding the sink's lease; null for a sink
	// without a lease or while nobody holds it.
	Holder *lease.Holder `json:"holder"`
}

func collectStatus(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg *config.Config, metricsURL string) (*status, error) {
	st := &status{Bus: busStatus{
		URL: nc.ConnectedUrlRedacted(), Server: nc.ConnectedServerName(), ServerID: nc.ConnectedServerId(),
		Version: nc.ConnectedServerVersion(), Cluster: nc.ConnectedClusterName(), Servers: nc.Servers(),
	}, Streams: []streamStatus{}, Consumers: []consumerStatus{}, Sinks: []sinkStatus{}}
	for i, s := range st.Bus.Servers {
		st.Bus.Servers[i] = redact(s)
	}
	sort.Strings(st.Bus.Servers)
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("jetstream account info: %w", err)
	}
	st.Bus.Domain = ai.Domain

	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		ss := streamStatus{Name: si.Config.Name, Messages: si.State.Msgs, Bytes: si.State.Bytes,
			MaxBytes: max(si.Config.MaxBytes, 0), Consumers: si.State.Consumers, Replicas: si.Config.Replicas}
		if si.Cluster != nil {
			ss.Cluster, ss.Leader = si.Cluster.Name, si.Cluster.Leader
		}
		st.Streams = append(st.Streams, ss)
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].Name < st.Streams[j].Name })
	for _, ss := range st.Streams {
		if ss.Consumers == 0 {
			continue
		}
		s, err := js.Stream(ctx, ss.Name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", ss.Name, err)
		}
		cons := s.ListConsumers(ctx)
		var list []consumerStatus
		for ci := range cons.Info() {
			list = append(list, consumerStatus{Stream: ss.Name, Name: ci.Name, Pending: ci.NumPending,
				AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered})
		}
		if err := cons.Err(); err != nil {
			return nil, fmt.Errorf("list consumers of %s: %w", ss.Name, err)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		st.Consumers = append(st.Consumers, list...)
	}

	holders, err := lease.Holders(ctx, js)
	if err != nil {
		return nil, err
	}
	sample := top.NewSample(time.Now())
	if metricsURL == "" {
		st.MetricsError = "no metrics address (metrics.listen is empty and --metrics not given)"
	} else if err := scrapeMetrics(ctx, cfg, metricsURL, sample); err != nil {
		st.MetricsError = err.Error()
	}
	names := make([]string, 0, len(cfg.Sinks))
	for n := range cfg.Sinks {
		names = append(names, n)
	}
	for key := range holders { // leased by a process running another config
		if n, ok := lease.SinkOf(key); ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		ss := sinkStatus{Name: n}
		if s := cfg.Sinks[n]; s != nil {
			ss.Type = s.Type
		}
		if sc := sample.Sinks[n]; sc != nil {
			ss.Suspended = &sc.Suspended
		}
		if h, ok := holders[lease.SinkKey(n)]; ok {
			ss.Holder = &h
		}
		st.Sinks = append(st.Sinks, ss)
	}
	return st, nil
}

// scrapeMetrics reads the local herald's /metrics into s, with the
// metrics token when the config sets one.
func scrapeMetrics(ctx context.Context, cfg *config.Config, url string, s *top.Sample) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("metrics %s: %w", url, err)
	}
	token, err := statusMetricsToken(cfg)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("metrics %s: %s", url, resp.Status)
	}
	return top.ParseMetrics(resp.Body, s)
}

// statusMetricsToken reads metrics.token_file or metrics.token_env.
func statusMetricsToken(cfg *config.Config) (string, error) {
	switch {
	case cfg.Metrics.TokenFile != "":
		b, err := os.ReadFile(cfg.Abs(cfg.Metrics.TokenFile))
		if err != nil {
			return "", fmt.Errorf("metrics.token_file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case cfg.Metrics.TokenEnv != "":
		return strings.TrimSpace(os.Getenv(cfg.Metrics.TokenEnv)), nil
	}
	return "", nil
}

// redact drops a password or token from a server URL.
func redact(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if i := strings.Index(u, "://"); i >= 0 && i < at {
			return u[:i+3] + "***" + u[at:]
		}
	}
	return u
}

// render writes the plain-text form: four sections, each a header line and
// space-aligned columns, "-" for an empty value.
func (st *status) render(w io.Writer) error {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(cols ...string) { fmt.Fprintln(tw, "  "+strings.Join(cols, "\t")) }
	fmt.Fprintln(tw, "bus")
	p("url", dash(st.Bus.URL))
	p("server", dash(st.Bus.Server), dash(st.Bus.ServerID), dash(st.Bus.Version))
	p("cluster", dash(st.Bus.Cluster))
	p("domain", dash(st.Bus.Domain))
	p("servers", dash(strings.Join(st.Bus.Servers, ",")))
	if err := tw.Flush(); err != nil {
		return err
	}
	u := strconv.FormatUint
	fmt.Fprintln(tw, "streams")
	p("STREAM", "MESSAGES", "BYTES", "LIMIT", "CONSUMERS", "REPLICAS", "CLUSTER", "LEADER")
	for _, s := range st.Streams {
		limit := "-"
		if s.MaxBytes > 0 {
			limit = strconv.FormatInt(s.MaxBytes, 10)
		}
		p(s.Name, u(s.Messages, 10), u(s.Bytes, 10), limit, strconv.Itoa(s.Consumers), strconv.Itoa(s.Replicas), dash(s.Cluster), dash(s.Leader))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(tw, "consumers")
	p("STREAM", "CONSUMER", "PENDING", "ACK-PENDING", "REDELIVERED")
	for _, c := range st.Consumers {
		p(c.Stream, c.Name, u(c.Pending, 10), strconv.Itoa(c.AckPending), strconv.Itoa(c.Redelivered))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(tw, "sinks")
	p("SINK", "TYPE", "STATE", "HOLDER", "SINCE")
	for _, s := range st.Sinks {
		state := "-"
		if s.Suspended != nil {
			state = map[bool]string{false: "up", true: "suspended"}[*s.Suspended]
		}
		holder, since := "-", "-"
		if h := s.Holder; h != nil {
			holder = fmt.Sprintf("%s:%d/%s", h.Host, h.PID, h.Instance)
			since = h.Since.UTC().Format(time.RFC3339)
		}
		p(s.Name, dash(s.Type), state, holder, since)
	}
	if st.MetricsError != "" {
		fmt.Fprintln(tw, "# STATE unknown: "+st.MetricsError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return nil
}
