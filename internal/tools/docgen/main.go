// Command docgen writes the generated references in docs/ (make docs):
// the configuration reference and the import graph of
// docs/architecture.md. Run it from the repository root.
//
//	go run ./internal/tools/docgen          # write them
//	go run ./internal/tools/docgen -check   # exit 1 when one is stale
//	go run ./internal/tools/docgen -imports # print the import graph
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/n8n-invoker/n8n-invoker/internal/docgen"
)

func main() {
	check := flag.Bool("check", false, "report stale files instead of writing them")
	imports := flag.Bool("imports", false, "print the project's import graph")
	flag.Parse()
	if err := run(*check, *imports); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func run(check, imports bool) error {
	if imports {
		g, err := docgen.ImportGraph(".")
		if err != nil {
			return err
		}
		fmt.Print(g)
		return nil
	}
	if check {
		stale, err := docgen.Stale(".")
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			return fmt.Errorf("stale: %v: run make docs", stale)
		}
		return nil
	}
	files, err := docgen.Generate(".")
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(".", f.Path), f.Text, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", f.Path)
	}
	return nil
}
