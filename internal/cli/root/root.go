// Package root assembles the strait command from the command groups under internal/cli,
// and applies the logging flags (-v, --vmodule, --logging-format) before any of them runs.
package root

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/cli/agent"
	clidiagnose "github.com/strait-io/strait/internal/cli/diagnose"
	clidns "github.com/strait-io/strait/internal/cli/dns"
	clidoctor "github.com/strait-io/strait/internal/cli/doctor"
	"github.com/strait-io/strait/internal/cli/federation"
	"github.com/strait-io/strait/internal/cli/join"
	"github.com/strait-io/strait/internal/cli/lab"
	"github.com/strait-io/strait/internal/cli/mapcmd"
	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/cli/status"
	cliversion "github.com/strait-io/strait/internal/cli/version"
	"github.com/strait-io/strait/internal/version"
)

// ExitError carries a specific exit status (e.g. of a command run by `strait lab exec`).
type ExitError = output.ExitError

// New returns the root command.
func New() *cobra.Command {
	logging := logsapi.NewLoggingConfiguration()
	cmd := &cobra.Command{
		Use:   "strait",
		Short: "Connect Services across Kubernetes clusters and map outside services to local names",
		Long: "Strait lets services in one Kubernetes cluster discover and call services in other\n" +
			"clusters (the Multi-Cluster Services API), and lets outside services be called by a\n" +
			"local name. `strait lab` runs a local lab of real Kubernetes clusters to try it on.",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// No command below sets a PersistentPreRun of its own, which would replace this one.
		PersistentPreRunE: func(*cobra.Command, []string) error { return applyLogging(logging) },
	}
	addLoggingFlags(cmd.PersistentFlags(), logging)
	cmd.AddCommand(lab.New())
	cmd.AddCommand(mapcmd.New(), clidoctor.New())
	cmd.AddCommand(join.NewJoin(), join.NewLeave(), agent.New(), status.New(), clidiagnose.New())
	cmd.AddCommand(federation.New())
	cmd.AddCommand(clidns.New())
	cmd.AddCommand(cliversion.New())
	cmd.SetVersionTemplate("strait {{.Version}}\n")
	return cmd
}

// addLoggingFlags registers component-base's logging flags that work without feature gates:
// -v, --vmodule, --logging-format (text or json) and --log-flush-frequency. The alpha ones
// (split streams, buffering) need the LoggingAlphaOptions gate, which strait does not offer.
func addLoggingFlags(fs *pflag.FlagSet, c *logsapi.LoggingConfiguration) {
	all := pflag.NewFlagSet("logging", pflag.ContinueOnError)
	logsapi.AddFlags(c, all)
	for _, name := range []string{"v", "vmodule", "logging-format", logsapi.LogFlushFreqFlagName} {
		fs.AddFlag(all.Lookup(name))
	}
}

// applyLogging sets klog's verbosity and format from the flags. Logs go to stderr, so
// they never mix with a command's output.
func applyLogging(c *logsapi.LoggingConfiguration) error {
	// A process that runs the command line more than once (tests do) applies the same
	// configuration again; only a different one is an error.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	if err := logsapi.ValidateAndApply(c, nil); err != nil {
		return fmt.Errorf("logging flags: %w", err)
	}
	return nil
}

// Execute runs the command line and returns the process exit status.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer klog.Flush()
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
