package clusterset

import (
	"context"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// InstallCRDs installs the About API and MCS definitions in a cluster and waits until they
// are served, without joining it anywhere. The lab calls it before starting CoreDNS, whose
// multicluster option needs the ServiceImport type to exist.
func InstallCRDs(ctx context.Context, cfg *rest.Config, cluster string) error {
	dyn, err := dynamic.NewForConfig(WithRateLimits(cfg))
	if err != nil {
		return err
	}
	defs := append([]definition{aboutDefinition}, mcsDefinitions...)
	return installCRDs(ctx, &journal{}, cluster, dyn, defs, DefaultTimeout)
}
