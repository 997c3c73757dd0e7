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
	return installCRDs(ctx, &journal{}, cluster, dyn, memberDefinitions(), DefaultTimeout)
}

// memberDefinitions are the definitions every member serves: the About API, MCS and
// Strait's ExternalService.
func memberDefinitions() []definition {
	defs := append([]definition{aboutDefinition}, mcsDefinitions...)
	return append(defs, externalServiceDefinition)
}
