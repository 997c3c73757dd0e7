package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/strait-io/strait/internal/lab/labtest"
)

// straitBin is the strait binary built for this test run, for tests of the command line.
var straitBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every scenario here runs lab clusters (root, network namespaces): none is fast.
		fmt.Println("e2e scenarios run lab clusters; skipped under -short (make test-unit)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "strait-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	straitBin = filepath.Join(dir, "strait")
	build := exec.Command("go", "build", "-o", straitBin, "github.com/strait-io/strait/cmd/strait")
	// Static, as `make build` builds it: the lab's strait image carries this binary.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building strait:", err)
		os.Exit(1)
	}
	// Every lab of the suite runs its agents as the chart's pods, from this binary's image.
	labtest.AgentBinary = straitBin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
