package clusterset

import (
	"context"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/strait-io/strait/config/crd"
)

// externalServiceDefinition is Strait's own ExternalService (strait.io/v1alpha1).
var externalServiceDefinition = definition{crd.ExternalServiceCRD, []string{"v1alpha1"}}

// InstallCRDs installs the About API, MCS and ExternalService definitions in a cluster and
// waits until they are served, without joining it anywhere. The lab calls it before starting
// CoreDNS, whose multicluster option needs the ServiceImport type to exist.
func InstallCRDs(ctx context.Context, cfg *rest.Config, cluster string) error {
	dyn, err := dynamic.NewForConfig(WithRateLimits(cfg))
	if err != nil {
		return err
	}
	defs := append([]definition{aboutDefinition}, mcsDefinitions...)
	defs = append(defs, externalServiceDefinition)
	return installCRDs(ctx, &journal{}, cluster, dyn, defs, DefaultTimeout)
}

// InstallExternalServiceCRD installs only the ExternalService definition and waits until it
// is served, for clusters that use ExternalServices without joining a clusterset.
func InstallExternalServiceCRD(ctx context.Context, cfg *rest.Config, cluster string) error {
	dyn, err := dynamic.NewForConfig(WithRateLimits(cfg))
	if err != nil {
		return err
	}
	return installCRDs(ctx, &journal{}, cluster, dyn, []definition{externalServiceDefinition}, DefaultTimeout)
}
