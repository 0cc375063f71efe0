package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/internal/providers"
	"github.com/herald-router/herald/internal/replay"
)

// replayCmd is `herald replay`.
func replayCmd() *cobra.Command {
	var cfgPath, target, since, until, expr string
	var fromSeq uint64
	c := &cobra.Command{
		Use:   "replay --target T (--since TIME | --from-seq N) [--until TIME] [--filter EXPR]",
		Short: "Deliver archived events to a target again",
		Long: `Reads the archive of resolved events (the config's archive section must be on)
and publishes the chosen events to a target, whose fail-over chain writes them
again. Sinks idempotent on the event id (postgres) store nothing twice; files
get the events again.`,
		Example: `  herald replay --target log --since 2026-11-26T06:00:00Z
  herald replay --target audit --since 1h --filter 'severity <= 3'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, cfgPath, providers.Registry())
			if err != nil {
				return err
			}
			if _, ok := cfg.Targets[target]; !ok {
				return &exitError{2, fmt.Errorf("--target %q: no such target in %s", target, cfgPath)}
			}
			o := replay.Options{Target: target, FromSeq: fromSeq, MaxBytes: int(cfg.Batch.MaxBytes) * 4}
			parse := func(flag, v string) (time.Time, error) {
				if v == "" {
					return time.Time{}, nil
				}
				if d, err := time.ParseDuration(v); err == nil {
					return time.Now().Add(-d), nil
				}
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return time.Time{}, &exitError{2, fmt.Errorf("--%s %q: want RFC 3339 time or a duration ago such as 1h", flag, v)}
				}
				return t, nil
			}
			if o.Since, err = parse("since", since); err != nil {
				return err
			}
			if o.Until, err = parse("until", until); err != nil {
				return err
			}
			if o.Since.IsZero() && fromSeq == 0 {
				return &exitError{2, fmt.Errorf("give --since or --from-seq")}
			}
			if expr != "" {
				if o.Filter, err = filter.Compile(expr); err != nil {
					return &exitError{2, fmt.Errorf("--filter: %w", err)}
				}
			}
			nc, js, err := bus.Connect(cfg.Bus, "herald-replay")
			if err != nil {
				return &exitError{1, err}
			}
			defer nc.Close()
			errOut := cmd.ErrOrStderr()
			o.Progress = func(s replay.Summary) {
				fmt.Fprintf(errOut, "\rreplay: archive %d/%d, %d events read, %d replayed", s.LastSeq, s.EndSeq, s.Read, s.Replayed)
			}
			sum, err := replay.Run(cmd.Context(), js, o)
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d events to target %s (%d read in %d archived batches, %d filtered out)\n",
				sum.Replayed, target, sum.Read, sum.Batches, sum.Filtered)
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file")
	c.Flags().StringVar(&target, "target", "", "the target to deliver to (required)")
	c.Flags().StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (1h)")
	c.Flags().Uint64Var(&fromSeq, "from-seq", 0, "from this archive sequence number")
	c.Flags().StringVar(&until, "until", "", "up to this time (RFC 3339) or this long ago")
	c.Flags().StringVar(&expr, "filter", "", "only events this expression accepts (docs/filters.md)")
	_ = c.MarkFlagRequired("target")
	return c
}
