// Package kubeconfig resolves kubeconfig contexts the way kubectl does (--kubeconfig,
// $KUBECONFIG, ~/.kube/config, --context), for every strait command that talks to clusters.
package kubeconfig

import (
	"fmt"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-io/strait/internal/clusterset"
)

// Rules returns the loading rules for an optional explicit kubeconfig path.
func Rules(path string) *clientcmd.ClientConfigLoadingRules {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	return rules
}

// RESTConfig loads one context (the current one if context is empty), with raised client
// rate limits, and returns the context's name.
func RESTConfig(rules *clientcmd.ClientConfigLoadingRules, context string) (*rest.Config, string, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	if name == "" {
		return nil, "", fmt.Errorf("no --context given and the kubeconfig (%s) has no current context", Paths(rules))
	}
	if _, ok := raw.Contexts[name]; !ok {
		return nil, "", fmt.Errorf("context %q not found in the kubeconfig (%s)", name, Paths(rules))
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("context %q: %w", name, err)
	}
	return clusterset.WithRateLimits(cfg), name, nil
}

// Paths describes where the kubeconfig was looked for, for error messages.
func Paths(rules *clientcmd.ClientConfigLoadingRules) string {
	if rules.ExplicitPath != "" {
		return rules.ExplicitPath
	}
	return strings.Join(rules.Precedence, ":")
}
