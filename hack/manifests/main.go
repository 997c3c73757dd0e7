// Command manifests writes config/ from the Helm chart charts/strait (`make manifests`):
// the CRDs, RBAC and Deployment a member runs, as kustomize resources for
// `kubectl apply -k config/default`. It removes generated files the chart no longer renders.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strait-io/strait/internal/chart"
)

func main() {
	dir := flag.String("dir", "config", "the config directory to write")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := chart.ConfigFiles()
	if err != nil {
		return err
	}
	stale, err := chart.StaleConfigFiles(os.DirFS(dir), files)
	if err != nil {
		return err
	}
	for _, name := range stale {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
		fmt.Println("removed", filepath.Join(dir, name))
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if old, err := os.ReadFile(p); err == nil && string(old) == string(data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", p)
	}
	return nil
}
