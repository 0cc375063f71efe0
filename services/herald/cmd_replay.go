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
	var cfgPath, target, sinkName, since, until, expr string
	var fromSeq uint64
	c := &cobra.Command{
		Use:   "replay --target T (--since TIME | --from-seq N) [--until TIME] [--sink S] [--filter EXPR]",
		Short: "Deliver archived events to a target again",
		Long: `Reads the archive of resolved events (the config's archive section must be on)
and publishes the chosen events to a target, whose fail-over chain writes them
again. With --sink, only that sink of the target's chain gets them (no
fail-over to the others; while it is suspended the target waits for it).
Sinks idempotent on the event id (postgres) store nothing twice; files get
the events again.`,
		Example: `  herald replay --target log --since 2026-11-26T06:00:00Z
  herald replay --target audit --since 1h --filter 'severity <= 3'
  herald replay --target log --since 2h --until 1h --sink archive-db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, cfgPath, providers.Registry())
			if err != nil {
				return err
			}
			if _, ok := cfg.Targets[target]; !ok {
				return &exitError{2, fmt.Errorf("--target %q: no such target in %s", target, cfgPath)}
			}
			if sinkName != "" {
				if err := replay.CheckSink(target, cfg.Targets[target].Sinks, sinkName); err != nil {
					return &exitError{2, fmt.Errorf("--sink: %w", err)}
				}
			}
			o := replay.Options{Target: target, Sink: sinkName, FromSeq: fromSeq, MaxBytes: int(cfg.Batch.MaxBytes) * 4}
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
			progressed := false
			o.Progress = func(s replay.Summary) {
				progressed = true
				fmt.Fprintf(errOut, "\rreplay: archive %d/%d, %d events read, %d replayed", s.LastSeq, s.EndSeq, s.Read, s.Replayed)
			}
			sum, err := replay.Run(cmd.Context(), js, o)
			if progressed {
				fmt.Fprintln(errOut)
			}
			to := "target " + target
			if sinkName != "" {
				to += " sink " + sinkName
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d events to %s (%d read in %d archived batches, %d filtered out)\n",
				sum.Replayed, to, sum.Read, sum.Batches, sum.Filtered)
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file")
	c.Flags().StringVar(&target, "target", "", "the target to deliver to (required)")
	c.Flags().StringVar(&sinkName, "sink", "", "only this sink of the target's chain, no fail-over")
	c.Flags().StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (1h)")
	c.Flags().Uint64Var(&fromSeq, "from-seq", 0, "from this archive sequence number")
	c.Flags().StringVar(&until, "until", "", "up to this time (RFC 3339) or this long ago")
	c.Flags().StringVar(&expr, "filter", "", "only events this expression accepts (docs/filters.md)")
	_ = c.MarkFlagRequired("target")
	return c
}
