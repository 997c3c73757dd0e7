// Package kubeconfig gives every strait command the kubectl connection flags and resolves
// kubeconfig contexts the way kubectl does. The flags are k8s.io/cli-runtime's (--kubeconfig,
// --context, -n, --cluster, --user, --token, --as, --as-group, --request-timeout, ...), so
// they mean what they mean to kubectl; contexts are looked up in --kubeconfig, $KUBECONFIG
// or ~/.kube/config. A command registers them with AddFlags and gets its cluster's client
// configuration from Flags.RESTConfig; a second cluster it names by context (the broker)
// is registered with Flags.AddOther and resolved through the same loader. Every client
// configuration carries Strait's raised rate limits (clusterset.WithRateLimits).
package kubeconfig

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

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
	return resolve(cc, "context", context, false)
}

// Paths describes where the kubeconfig was looked for, for error messages.
func Paths(rules *clientcmd.ClientConfigLoadingRules) string {
	return where(rules)
}

func where(access clientcmd.ConfigAccess) string {
	if access.IsExplicitFile() {
		return access.GetExplicitFile()
	}
	return strings.Join(access.GetLoadingPrecedence(), ":")
}

// resolve checks that the context a client configuration selects exists, so the error
// names it and the files it was looked for in, then builds the configuration with raised
// rate limits. flag is the flag that names the context, for the error. standalone says the
// flags describe a connection without any context (--server, --cluster, or in a pod with
// no kubeconfig); the name returned is then the API server's URL.
func resolve(cc clientcmd.ClientConfig, flag, context string, standalone bool) (*rest.Config, string, error) {
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	if name == "" && !standalone && !inCluster(cc, raw.Contexts) {
		return nil, "", fmt.Errorf("no --%s given and the kubeconfig (%s) has no current context", flag, where(cc.ConfigAccess()))
	}
	if name != "" {
		if _, ok := raw.Contexts[name]; !ok {
			return nil, "", fmt.Errorf("context %q not found in the kubeconfig (%s)", name, where(cc.ConfigAccess()))
		}
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		if name == "" {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("context %q: %w", name, err)
	}
	if name == "" {
		name = cfg.Host
	}
	return clusterset.WithRateLimits(cfg), name, nil
}

// inCluster reports whether client-go will use the pod's service account: inside a pod,
// with no kubeconfig file given and none found, as kubectl does.
func inCluster(cc clientcmd.ClientConfig, contexts map[string]*clientcmdapi.Context) bool {
	return len(contexts) == 0 && !cc.ConfigAccess().IsExplicitFile() &&
		os.Getenv("KUBERNETES_SERVICE_HOST") != "" && os.Getenv("KUBERNETES_SERVICE_PORT") != ""
}
