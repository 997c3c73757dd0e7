package clusterset

import (
	"context"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client rate limits: the client-go default of 5 QPS, burst 10, is far too low for the agent.
const (
	ClientQPS   = 50
	ClientBurst = 100
)

// WithRateLimits returns a copy of cfg with Strait's client rate limits.
func WithRateLimits(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = ClientQPS, ClientBurst
	return c
}

// BrokerEndpoint is how members reach the broker's API server.
type BrokerEndpoint struct {
	Server     string
	CAData     []byte
	ServerName string
	Insecure   bool
}

// EndpointFromConfig takes the broker endpoint from the client configuration the user has for
// it (its kubeconfig context), reading a CA file if the context refers to one. Only where the
// broker is and how to verify it are taken: how the user authenticates (exec and
// auth-provider plugins, token files, client certificates) stays the user's own.
func EndpointFromConfig(cfg *rest.Config) (BrokerEndpoint, error) {
	ep := BrokerEndpoint{Server: cfg.Host, CAData: cfg.CAData, ServerName: cfg.ServerName, Insecure: cfg.Insecure}
	if len(ep.CAData) == 0 && cfg.CAFile != "" {
		data, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return ep, fmt.Errorf("reading the broker's CA file: %w", err)
		}
		ep.CAData = data
	}
	return ep, nil
}

// Credential is the self-contained credential of a member holding token: the server, its CA
// and TLS server name, and the token, nothing else.
func (ep BrokerEndpoint) Credential(token string) BrokerCredential {
	c := BrokerCredential{Server: ep.Server, CAData: ep.CAData, ServerName: ep.ServerName, Insecure: ep.Insecure, Token: token}
	if c.Insecure {
		// client-go refuses a CA together with skipping verification.
		c.CAData = nil
	}
	c.Expiry = TokenExpiry(token)
	return c
}

// BrokerKubeconfig builds the kubeconfig a member's agent uses for the broker (see
// BrokerCredential.Kubeconfig): the member's token, with its broker namespace as the
// default namespace.
func BrokerKubeconfig(ep BrokerEndpoint, id string, token []byte) ([]byte, error) {
	return ep.Credential(string(token)).Kubeconfig(id)
}

// BrokerRESTConfig returns the member's client configuration for the broker, read from the
// Secret join stored in the member cluster.
func BrokerRESTConfig(ctx context.Context, member kubernetes.Interface) (*rest.Config, error) {
	secret, err := member.CoreV1().Secrets(SystemNamespace).Get(ctx, BrokerSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("broker credential %s/%s not found: the cluster has not joined a clusterset (run strait join): %w", SystemNamespace, BrokerSecretName, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the broker credential %s/%s: %w", SystemNamespace, BrokerSecretName, err)
	}
	data := secret.Data[BrokerSecretKey]
	if len(data) == 0 {
		return nil, fmt.Errorf("broker credential %s/%s has no key %q", SystemNamespace, BrokerSecretName, BrokerSecretKey)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("broker credential %s/%s, key %q: %w", SystemNamespace, BrokerSecretName, BrokerSecretKey, err)
	}
	return WithRateLimits(cfg), nil
}
