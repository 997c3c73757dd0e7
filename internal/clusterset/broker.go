package clusterset

import (
	"context"
	"fmt"
	"net/url"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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

// ReadBrokerCredential reads and checks the broker credential join stored in the member
// (see ParseBrokerCredential); it returns the Secret's data too. The error names the
// Secret and, for a refused credential, the refused field.
func ReadBrokerCredential(ctx context.Context, member kubernetes.Interface, allowInsecure bool) (BrokerCredential, []byte, error) {
	secret, err := member.CoreV1().Secrets(SystemNamespace).Get(ctx, BrokerSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return BrokerCredential{}, nil, fmt.Errorf("broker credential %s/%s not found: the cluster has not joined a clusterset (run strait join): %w", SystemNamespace, BrokerSecretName, err)
	}
	if err != nil {
		return BrokerCredential{}, nil, fmt.Errorf("reading the broker credential %s/%s: %w", SystemNamespace, BrokerSecretName, err)
	}
	data := secret.Data[BrokerSecretKey]
	cred, err := ParseBrokerCredential(data, allowInsecure)
	if err != nil {
		return BrokerCredential{}, data, fmt.Errorf("broker credential %s/%s, key %q: %w", SystemNamespace, BrokerSecretName, BrokerSecretKey, err)
	}
	return cred, data, nil
}

// BrokerRESTConfig returns the member's client configuration for the broker, from the
// credential join stored in the member cluster (ReadBrokerCredential).
func BrokerRESTConfig(ctx context.Context, member kubernetes.Interface, allowInsecure bool) (*rest.Config, error) {
	cred, _, err := ReadBrokerCredential(ctx, member, allowInsecure)
	if err != nil {
		return nil, err
	}
	return cred.RESTConfig(), nil
}

// ValidateBrokerServer checks a broker API URL given on the command line: https, with a
// host (and an optional path, for API servers behind a proxy).
func ValidateBrokerServer(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not a broker API URL; give one as https://<host>[:<port>], e.g. https://broker.example.com:6443", server)
	}
	return nil
}

// BrokerServerOverrideUsage is the help of the --broker-server flag of the commands that
// read the broker with a member's stored credential (status, diagnose).
const BrokerServerOverrideUsage = "reach the broker at this URL instead of the one strait join stored for the members' agents, with the same credential: " +
	"for a broker URL only the clusters reach (e.g. a private address); default: the brokerServer of the context's strait.io extension, if it has one"
