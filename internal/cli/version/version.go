// Package version implements `strait version`: the version, commit, Go version and
// platform of this binary (internal/version), as text or -o json|yaml.
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/version"
)

// New returns the `version` command.
func New() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print Strait's version, the commit it was built from, its Go version and platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format); err != nil {
				return err
			}
			info := version.Get()
			if ok, err := output.Structured(cmd.OutOrStdout(), format, info); ok {
				return err
			}
			commit := info.GitCommit
			if commit == "" {
				commit = "unknown"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "strait %s (commit %s, %s, %s)\n", info.Version, commit, info.GoVersion, info.Platform)
			return err
		},
	}
	output.AddFlag(cmd, &format, false)
	return cmd
}
