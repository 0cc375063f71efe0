// Command schemagen writes herald's config JSON Schema and config reference,
// both generated from the config's Go types (see package gen). make generate
// runs it from the repository root:
//
//	go run ./internal/schemagen -out schemas/config.schema.json -doc docs/config.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/herald-router/herald/internal/schemagen/gen"
)

func main() {
	out := flag.String("out", "schemas/config.schema.json", "where to write the JSON Schema")
	doc := flag.String("doc", "docs/config.md", "where to write the Markdown config reference")
	flag.Parse()
	if err := run(*out, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(out, doc string) error {
	schema, md, err := gen.Generate()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, schema, 0o644); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	if err := os.WriteFile(doc, md, 0o644); err != nil {
		return fmt.Errorf("write reference: %w", err)
	}
	return nil
}
