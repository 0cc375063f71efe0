package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/internal/tap"
)

// tapCmd is `herald tap`: a live tail of the events passing a stage.
func tapCmd() *cobra.Command {
	var cfgPath, stage, expr, natsURL string
	var count int
	c := &cobra.Command{
		Use:   "tap --stage STAGE [--filter EXPR]",
		Short: "Print the events passing a stage of a running herald, live, as JSON lines",
		Long: `tap subscribes with plain NATS (no JetStream consumer, no ack) to the subjects of one
stage's input and prints every event published there from now on, one JSON object per
line in the file sink's JSON form. It never takes an event away from the pipeline: the
stages' work-queue consumers get every message as before. A tap that cannot keep up
loses messages, says so on stderr, and the pipeline loses nothing.

Stages: raw (records from the receivers, before the classifier; shown with the record
as message), events (classified events and applications' events, before the resolver),
resolved (before the router), targets (every target's copies), target.<name> (one
target's copies, before its sinks) and dlq (dead letters, with fields dlq_reason,
dlq_detail, dlq_stage, dlq_subject).

--filter keeps the events an expression matches, in the language of the config's
filters and rules (docs/filters.md). tap connects to the config's bus: its urls, or the
embedded server's listen address. A line "tapping SUBJECT" on stderr says the
subscription is in place.`,
		Example: `  herald tap --stage resolved
  herald tap --stage target.log --filter 'severity <= 3'
  herald tap --stage raw --filter 'source == "edge"' --count 10
  herald tap --stage dlq | jq .dlq_reason`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, err := tap.Subject(stage)
			if err != nil {
				return &exitError{2, err}
			}
			var prog *filter.Program
			if expr != "" {
				if prog, err = filter.Compile(expr); err != nil {
					return &exitError{2, fmt.Errorf("--filter: %w", err)}
				}
			}
			if natsURL == "" {
				cfg, err := loadConfig(cmd, cfgPath, registry())
				if err != nil {
					return err
				}
				if natsURL, err = tap.ServerURL(cfg.Bus); err != nil {
					return &exitError{1, err}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			nc, err := tap.Connect(cctx, natsURL, "herald-tap")
			cancel()
			if err != nil {
				return &exitError{1, err}
			}
			defer nc.Close()
			t := &tap.Tap{
				Conn: nc, Subject: subject, Filter: prog, Count: count,
				Out: cmd.OutOrStdout(), Errs: cmd.ErrOrStderr(),
				Subscribed: func() { fmt.Fprintf(cmd.ErrOrStderr(), "tapping %s on %s\n", subject, nc.ConnectedUrlRedacted()) },
			}
			if err := t.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return &exitError{1, err}
			}
			if st := t.Stats(); st.Unjudgable > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "tap: %d event(s) the filter could not judge were left out\n", st.Unjudgable)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file of the herald to tap (for its bus)")
	c.Flags().StringVar(&stage, "stage", "", "stage to tap: raw, events, resolved, targets, target.<name> or dlq (required)")
	c.Flags().StringVar(&expr, "filter", "", "expression an event must match to be printed (docs/filters.md)")
	c.Flags().StringVar(&natsURL, "nats", "", "NATS URL (default: from the config's bus)")
	c.Flags().IntVar(&count, "count", 0, "exit after printing this many events (0: until interrupted)")
	_ = c.MarkFlagRequired("stage")
	return c
}
