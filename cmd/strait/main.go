// Command strait connects Services across Kubernetes clusters; see the README.
package main

import (
	"os"

	"github.com/strait-io/strait/internal/cli/root"
)

func main() {
	os.Exit(root.Execute())
}
