// Command release builds Strait's release artifacts into a directory (internal/release):
// `make image` (-image-only) and `make release-local`, and the release workflow on a tag.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/strait-io/strait/internal/release"
)

func main() {
	var o release.Options
	flag.StringVar(&o.Dir, "dir", "dist", "directory for the artifacts")
	flag.StringVar(&o.Version, "version", "", "version to stamp (required), e.g. the output of git describe --tags --always --dirty")
	flag.StringVar(&o.Commit, "commit", "", "commit to stamp")
	flag.BoolVar(&o.ImageOnly, "image-only", false, "build the binaries and the image archive only")
	flag.Parse()
	o.Progress = func(s string) { fmt.Println(s) }
	if _, err := release.Build(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}
