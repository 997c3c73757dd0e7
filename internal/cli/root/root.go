// Package root assembles the strait command from the command groups under internal/cli.
package root

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strait-io/strait/internal/cli/agent"
	clidns "github.com/strait-io/strait/internal/cli/dns"
	clidoctor "github.com/strait-io/strait/internal/cli/doctor"
	"github.com/strait-io/strait/internal/cli/federation"
	"github.com/strait-io/strait/internal/cli/join"
	"github.com/strait-io/strait/internal/cli/lab"
	"github.com/strait-io/strait/internal/cli/mapcmd"
	"github.com/strait-io/strait/internal/cli/status"
)

// ExitError carries a specific exit status (e.g. of a command run by `strait lab exec`).
type ExitError = lab.ExitError

// New returns the root command.
func New() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "strait",
		Short: "Connect Services across Kubernetes clusters and map outside services to local names",
		Long: "Strait lets services in one Kubernetes cluster discover and call services in other\n" +
			"clusters (the Multi-Cluster Services API), and lets outside services be called by a\n" +
			"local name. `strait lab` runs a local lab of real Kubernetes clusters to try it on.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(lab.New())
	cmd.AddCommand(mapcmd.New(), clidoctor.New())
	cmd.AddCommand(join.NewJoin(), join.NewLeave(), agent.New(), status.New())
	cmd.AddCommand(federation.New())
	cmd.AddCommand(clidns.New())
	return cmd
}

// Execute runs the command line and returns the process exit status.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := New().ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	return 1
}
