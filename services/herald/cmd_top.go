package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/herald-router/herald/internal/tap"
	"github.com/herald-router/herald/internal/top"
)

// topCmd is `herald top`: a live view of every stage and sink.
func topCmd() *cobra.Command {
	var cfgPath, metricsURL, natsURL string
	var every time.Duration
	var once bool
	c := &cobra.Command{
		Use:   "top",
		Short: "Show every stage and sink of a running herald, live: rates, pending, redeliveries, suspended sinks, dead letters",
		Long: `top samples a running herald every --interval and shows, per stage (receiver.<name>,
classifier, resolver, router, target.<name>): events in and out per second and in total,
the messages waiting for it (PENDING) and delivered but not yet acknowledged
(ACK-PENDING) in its JetStream consumer, redeliveries, dead letters, rejections and actor
restarts; per sink: up or SUSPENDED and commits per second; and the dead-letter stream's
size. It reads herald's /metrics (metrics.listen of the config) and JetStream's consumer
info (the config's bus: urls, or the embedded server's listen address); reading info
takes nothing from the consumers.

Keys: q, Esc or Ctrl-C quit; p or space pauses. --once prints one snapshot as plain
text (rates over one --interval) and exits: 0, or 1 when /metrics could not be read.`,
		Example: `  herald top --config deploy/herald.yaml
  herald top --once --interval 2s                 # one snapshot, for scripts
  herald top --metrics http://10.0.0.5:9464/metrics --nats nats://10.0.0.5:4222`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg := registry()
			cfg, err := loadConfig(cmd, cfgPath, reg)
			if err != nil {
				return err
			}
			if metricsURL == "" && cfg.Metrics.Listen != "" {
				metricsURL = "http://" + cfg.Metrics.Listen + "/metrics"
			}
			if natsURL == "" {
				natsURL, _ = tap.ServerURL(cfg.Bus) // no address: top shows the metrics alone
			}
			col := &top.Collector{MetricsURL: metricsURL, HTTP: &http.Client{Timeout: 5 * time.Second}}
			if natsURL != "" {
				cctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				nc, err := tap.Connect(cctx, natsURL, "herald-top")
				cancel()
				if err != nil {
					return &exitError{1, err}
				}
				defer nc.Close()
				if col.JS, err = jetstream.New(nc); err != nil {
					return &exitError{1, fmt.Errorf("jetstream: %w", err)}
				}
			}
			src := top.Source{MetricsURL: metricsURL, NATSURL: natsURL}
			if once {
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				first := col.Sample(ctx)
				select {
				case <-ctx.Done():
					return &exitError{1, ctx.Err()}
				case <-time.After(every):
				}
				second := col.Sample(ctx)
				fmt.Fprint(cmd.OutOrStdout(), top.Render(src, first, second, 0))
				if second.MetricsErr != "" {
					return &exitError{1, fmt.Errorf("metrics could not be read")}
				}
				return nil
			}
			p := tea.NewProgram(top.NewModel(col, src, every), tea.WithAltScreen(),
				tea.WithInput(cmd.InOrStdin()), tea.WithOutput(os.Stdout))
			if _, err := p.Run(); err != nil {
				return &exitError{1, fmt.Errorf("top: %w", err)}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file of the herald to watch (for metrics.listen and bus)")
	c.Flags().StringVar(&metricsURL, "metrics", "", "URL of herald's /metrics (default: from the config's metrics.listen)")
	c.Flags().StringVar(&natsURL, "nats", "", "NATS URL for JetStream consumer info (default: from the config's bus)")
	c.Flags().DurationVar(&every, "interval", top.DefaultInterval, "time between samples; rates are over it")
	c.Flags().BoolVar(&once, "once", false, "print one snapshot as plain text and exit")
	return c
}
