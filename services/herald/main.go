// Command herald is the durable event router: one binary for every stage.
//
//	herald run --config FILE [--stages receiver,classifier,resolver,router,sink]
//	herald check --config FILE
//	herald version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/app"
	"github.com/herald-router/herald/internal/providers"
	"github.com/herald-router/herald/internal/version"
)

func registry() *sink.Registry { return providers.Registry() }

func kinds(r *sink.Registry) config.Kinds { return providers.Kinds(r) }

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "herald is a durable event router: syslog and applications in, files and more out, over NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), checkCmd(), versionCmd(), dlqCmd(), replayCmd())
	root.AddCommand(ingestCmd())       // gcm_input: services/herald/cmd_ingest.go
	root.AddCommand(toolCmds(root)...) // test, top, tap, completion: services/herald/cmd_*.go
	root.AddCommand(statusCmd())       // services/herald/cmd_status.go
	root.AddCommand(logCmd())          // ELAPI from the shell: services/herald/cmd_log.go
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func runCmd() *cobra.Command {
	var cfgPath, stages string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run herald's stages",
		Example: `  herald run --config deploy/herald.yaml
  herald run --config herald.yaml --stages resolver     # scale one stage out
  herald run --config node.yaml --stages none           # only the embedded NATS node (a cluster node)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := app.ParseStages(stages)
			if err != nil {
				return &exitError{2, err}
			}
			reg := registry()
			cfg, err := loadConfig(cmd, cfgPath, reg)
			if err != nil {
				return err
			}
			log := newLogger(os.Stderr, cfg.Log)
			if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(int64(cfg.MemoryLimit))
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			a, err := app.Start(ctx, cfg, app.Options{Stages: st, Registry: reg, Receivers: providers.Receivers(), Kinds: kinds(reg), Log: log})
			if err != nil {
				return &exitError{1, err}
			}
			// SIGHUP reloads the config (an invalid file changes nothing) and
			// reopens the sinks' files; SIGUSR1 only reopens them, for logrotate.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
			defer signal.Stop(hup)
			var fatal error
		wait:
			for {
				select {
				case <-ctx.Done():
					break wait
				case sig := <-hup:
					if sig == syscall.SIGHUP {
						_ = a.ReloadFile(context.Background())
					}
					a.Reopen()
				case fatal = <-a.Fatal():
					log.Error("fatal", "err", fatal)
					break wait
				}
			}
			stop() // a second signal now kills the process at once
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
			defer cancel()
			a.Shutdown(sctx)
			if fatal != nil {
				return &exitError{1, fatal}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file")
	c.Flags().StringVar(&stages, "stages", "all", "comma-separated stages to run: receiver,classifier,resolver,router,sink; \"none\" runs only the embedded NATS server")
	return c
}

func checkCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:     "check",
		Short:   "Check a config file and print every problem with its position",
		Example: "  herald check --config deploy/herald.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := loadConfig(cmd, cfgPath, registry()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", cfgPath)
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file")
	return c
}

// loadConfig loads the file; its problems go to stderr one per line, each
// with its position, and the error returned only counts them.
func loadConfig(cmd *cobra.Command, path string, reg *sink.Registry) (*config.Config, error) {
	cfg, err := config.Load(path, kinds(reg))
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			fmt.Fprintln(cmd.ErrOrStderr(), ce.Error())
			return nil, &exitError{1, fmt.Errorf("%s: %d problem(s)", path, len(ce.List))}
		}
		return nil, &exitError{1, err}
	}
	return cfg, nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print herald's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "herald", version.Version)
		},
	}
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
