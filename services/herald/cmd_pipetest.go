package main

// Not cmd_test.go: a file ending in _test.go is a Go test file, left out
// of the binary.

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/internal/pipetest"
)

// testCmd is `herald test`: pipeline unit tests, as `vector test`.
func testCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE...",
		Short: "Run pipeline unit tests: inputs through classifier, resolver, router and sink formats",
		Long: `test runs the cases of each test file through the pipeline's own logic, in-process:
no NATS, no sink written. A test file names a config and lists cases, each an input
(a raw line from a receiver, or an application's JSON event) and what must become of
it: its class, envelope and fields after the resolver, the targets the router chooses
and the exact record a file or stdout sink would write. The format is documented in
package internal/pipetest; examples are in deploy/tests/.

Every case prints "ok" or "FAIL" with a diff of each mismatch. The exit code is 0 when
every case of every file passed, 1 when a case failed, 2 when a file or its config
could not be used.`,
		Example: `  herald test deploy/tests/*.yaml
  herald test deploy/tests/routing.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			kinds := kinds(registry())
			failed, broken := 0, 0
			for _, path := range files {
				rep, err := pipetest.RunFile(path, kinds)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					broken++
					continue
				}
				rep.Write(cmd.OutOrStdout())
				failed += rep.Failed()
			}
			switch {
			case broken > 0:
				return &exitError{2, fmt.Errorf("%d test file(s) could not be run", broken)}
			case failed > 0:
				return &exitError{1, fmt.Errorf("%d case(s) failed", failed)}
			}
			return nil
		},
	}
}
