package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/dlq"
	"github.com/herald-router/herald/internal/providers"
)

// dlqCmd is `herald dlq list|show|redrive|purge`.
func dlqCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, redrive or purge dead letters",
		Long: `Dead letters are what a stage gave up on: input it could not decode, events a
filter could not judge, events a sink can never write, batches that failed too
often. They wait in the HERALD_DLQ stream (14 days) with their reason.`,
		Example: `  herald dlq list
  herald dlq show 42
  herald dlq redrive --stage sink.archive        # after fixing the archive sink
  herald dlq purge --reason filter_error`,
	}
	c.PersistentFlags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file (for the NATS address)")
	open := func(cmd *cobra.Command) (*dlq.DLQ, func(), error) {
		cfg, err := loadConfig(cmd, cfgPath, providers.Registry())
		if err != nil {
			return nil, nil, err
		}
		nc, js, err := bus.Connect(cfg.Bus, "herald-dlq")
		if err != nil {
			return nil, nil, &exitError{1, err}
		}
		d, err := dlq.Open(cmd.Context(), js)
		if err != nil {
			nc.Close()
			return nil, nil, &exitError{1, err}
		}
		return d, nc.Close, nil
	}
	var sel dlq.Selector
	var seqs []string
	selFlags := func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&sel.Stage, "stage", "", "only letters of this stage (e.g. router, sink.archive)")
		cmd.Flags().StringVar(&sel.Reason, "reason", "", "only letters with this reason code")
		cmd.Flags().StringSliceVar(&seqs, "seq", nil, "only these letters (sequence numbers)")
	}
	parseSeqs := func() error {
		sel.Seqs = nil
		for _, s := range seqs {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return &exitError{2, fmt.Errorf("--seq %q: not a sequence number", s)}
			}
			sel.Seqs = append(sel.Seqs, n)
		}
		return nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "Dead letters grouped by stage and reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, closeFn, err := open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			groups, err := d.Summary(cmd.Context())
			if err != nil {
				return &exitError{1, err}
			}
			if len(groups) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters")
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "STAGE\tREASON\tORIGIN\tLETTERS\tEVENTS\tFIRST SEQ\tFIRST\tLAST\tDETAIL")
			for _, g := range groups {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.80s\n", g.Stage, g.Reason, origins(g.ExampleOrigins),
					g.Letters, g.Events, g.FirstSeq, g.First.Format(time.DateTime), g.Last.Format(time.DateTime),
					strings.TrimPrefix(g.ExampleDetail, g.Reason+": ")) // the reason has its column
			}
			return w.Flush()
		},
	}
	show := &cobra.Command{
		Use:   "show SEQ",
		Short: "One dead letter: its reason, origin and events (as JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return &exitError{2, fmt.Errorf("%q: not a sequence number", args[0])}
			}
			d, closeFn, err := open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			l, err := d.Get(cmd.Context(), seq)
			if err != nil {
				return &exitError{1, err}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "seq:     %d\ntime:    %s\nstage:   %s\nreason:  %s\ndetail:  %s\norigin:  %s\n",
				l.Seq, l.Time.Format(time.RFC3339), l.Stage, l.Reason, l.Detail, l.Origin)
			if l.Batch == nil {
				fmt.Fprintf(out, "data:    %d bytes, not a batch (%q)\n%q\n", len(l.Data), l.Encoded, l.Data)
				return nil
			}
			fmt.Fprintf(out, "events:  %d\n", len(l.Batch.Events))
			for _, ev := range l.Batch.Events {
				_, _ = out.Write(format.AppendJSON(nil, ev))
			}
			return nil
		},
	}
	redrive := &cobra.Command{
		Use:   "redrive",
		Short: "Send dead letters back to where they came from, after a fix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parseSeqs(); err != nil {
				return err
			}
			d, closeFn, err := open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			n, ev, err := d.Redrive(cmd.Context(), sel)
			fmt.Fprintf(cmd.OutOrStdout(), "redriven: %d letters, %d events\n", n, ev)
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	purge := &cobra.Command{
		Use:   "purge",
		Short: "Delete dead letters for good",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parseSeqs(); err != nil {
				return err
			}
			if sel.Stage == "" && sel.Reason == "" && len(sel.Seqs) == 0 {
				return &exitError{2, fmt.Errorf("purge needs --stage, --reason or --seq (refusing to delete every dead letter)")}
			}
			d, closeFn, err := open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			n, err := d.Purge(cmd.Context(), sel)
			fmt.Fprintf(cmd.OutOrStdout(), "purged: %d letters\n", n)
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	selFlags(redrive)
	selFlags(purge)
	c.AddCommand(list, show, redrive, purge)
	return c
}

// origins names the subjects a group's letters came from (for a sink's
// letters, the subject of the target that gave it the events), most
// letters first; a long list is cut.
func origins(counts map[string]int) string {
	names := slices.Collect(maps.Keys(counts))
	sort.Slice(names, func(i, j int) bool {
		if ci, cj := counts[names[i]], counts[names[j]]; ci != cj {
			return ci > cj
		}
		return names[i] < names[j]
	})
	for i, o := range names {
		if o == "" {
			names[i] = "-"
		}
	}
	if len(names) > 3 {
		return strings.Join(names[:3], ",") + fmt.Sprintf(",+%d", len(names)-3)
	}
	return strings.Join(names, ",")
}
