// Package agent implements `strait agent`, the per-member controller; see internal/agent.
package agent

import (
	"github.com/spf13/cobra"

	agentpkg "github.com/strait-io/strait/internal/agent"
)

// New returns the `agent` command.
func New() *cobra.Command {
	cfg := agentpkg.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the Strait agent of one member cluster (export and import of Services)",
		Long: "The agent publishes this cluster's exported Services to the broker and imports every\n" +
			"member's exports as ServiceImports, derived Services and EndpointSlices. Run one per\n" +
			"member (config/ has the Deployment); replicas elect a leader. The cluster must have\n" +
			"joined the clusterset first (`strait join`).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := agentpkg.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cfg.AddFlags(cmd.Flags())
	return cmd
}
