package clusterset

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// BrokerCredential is the only kind of broker credential an agent accepts from the Secret
// join stores in its member: self-contained (the server, its CA and a bearer token, all
// inline), so whoever can write that Secret cannot make the agent run a command, read a
// local file, or talk to a server it cannot verify.
type BrokerCredential struct {
	Server     string
	CAData     []byte
	ServerName string
	// Insecure skips TLS verification; refused unless the agent is told to allow it (labs).
	Insecure bool
	Token    string
	// Expiry is the token's exp claim; zero for a token that does not expire (a legacy
	// service-account token, which the agent replaces by a bound one).
	Expiry time.Time
}

// ErrInsecureBroker marks a credential refused only because it skips TLS verification.
var ErrInsecureBroker = errors.New("the broker credential skips TLS verification")

// ParseBrokerCredential reads a stored broker kubeconfig and refuses, naming the field,
// anything that is not a server, inline CA data, an optional TLS server name and an inline
// token: exec and auth-provider plugins, token, certificate, key and CA file paths, basic
// auth, client certificates, impersonation, proxies, and (unless allowInsecure) skipping
// TLS verification.
func ParseBrokerCredential(data []byte, allowInsecure bool) (BrokerCredential, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return BrokerCredential{}, fmt.Errorf("not a kubeconfig: %w", err)
	}
	name := cfg.CurrentContext
	kctx := cfg.Contexts[name]
	if kctx == nil {
		return BrokerCredential{}, fmt.Errorf("current-context %q names no context", name)
	}
	cluster, user := cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo]
	if cluster == nil {
		return BrokerCredential{}, fmt.Errorf("contexts[%q].cluster %q names no cluster", name, kctx.Cluster)
	}
	if user == nil {
		return BrokerCredential{}, fmt.Errorf("contexts[%q].user %q names no user", name, kctx.AuthInfo)
	}
	var refused []string
	refuse := func(field, why string) { refused = append(refused, field+" "+why) }
	c := fmt.Sprintf("clusters[%q]", kctx.Cluster)
	u := fmt.Sprintf("users[%q]", kctx.AuthInfo)
	if cluster.CertificateAuthority != "" {
		refuse(c+".certificate-authority", "is a file path; the CA must be inline (certificate-authority-data)")
	}
	if cluster.ProxyURL != "" {
		refuse(c+".proxy-url", "sends the broker's traffic through another host")
	}
	if cluster.InsecureSkipTLSVerify && !allowInsecure {
		refuse(c+".insecure-skip-tls-verify", "accepts any server; "+ErrInsecureBroker.Error())
	}
	if user.Exec != nil {
		refuse(u+".exec", "runs a command on the agent's host")
	}
	if user.AuthProvider != nil {
		refuse(u+".auth-provider", "runs an authentication plugin on the agent's host")
	}
	if user.TokenFile != "" {
		refuse(u+".tokenFile", "reads a file of the agent's host")
	}
	if user.ClientCertificate != "" || user.ClientKey != "" {
		refuse(u+".client-certificate/client-key", "read files of the agent's host")
	}
	if len(user.ClientCertificateData) > 0 || len(user.ClientKeyData) > 0 {
		refuse(u+".client-certificate-data", "is not a member's credential (members hold a bound service-account token)")
	}
	if user.Username != "" || user.Password != "" {
		refuse(u+".username/password", "basic authentication is not a member's credential")
	}
	if user.Impersonate != "" || len(user.ImpersonateGroups) > 0 || user.ImpersonateUID != "" || len(user.ImpersonateUserExtra) > 0 {
		refuse(u+".as", "impersonation is not a member's credential")
	}
	if user.Token == "" {
		refuse(u+".token", "is missing")
	}
	srv, err := url.Parse(cluster.Server)
	if err != nil || srv.Scheme != "https" || srv.Host == "" {
		refuse(c+".server", fmt.Sprintf("%q is not an https:// URL", cluster.Server))
	}
	if len(cluster.CertificateAuthorityData) == 0 && !cluster.InsecureSkipTLSVerify {
		refuse(c+".certificate-authority-data", "is missing: the broker cannot be verified")
	}
	if len(refused) > 0 {
		err := fmt.Errorf("refused: %s", strings.Join(refused, "; "))
		if len(refused) == 1 && cluster.InsecureSkipTLSVerify && !allowInsecure {
			err = fmt.Errorf("%w (%s)", ErrInsecureBroker, err.Error())
		}
		return BrokerCredential{}, err
	}
	return BrokerCredential{
		Server: cluster.Server, CAData: cluster.CertificateAuthorityData, ServerName: cluster.TLSServerName,
		Insecure: cluster.InsecureSkipTLSVerify, Token: user.Token, Expiry: TokenExpiry(user.Token),
	}, nil
}

// RESTConfig is the client configuration of the credential, with Strait's rate limits.
func (c BrokerCredential) RESTConfig() *rest.Config {
	return WithRateLimits(&rest.Config{
		Host: c.Server, BearerToken: c.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData, ServerName: c.ServerName, Insecure: c.Insecure},
	})
}

// Kubeconfig is the credential as the member's stored kubeconfig for cluster id.
func (c BrokerCredential) Kubeconfig(id string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["broker"] = &clientcmdapi.Cluster{
		Server: c.Server, CertificateAuthorityData: c.CAData,
		TLSServerName: c.ServerName, InsecureSkipTLSVerify: c.Insecure,
	}
	user := RegistryName(id) + "@" + ClustersetNamespace
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts["broker"] = &clientcmdapi.Context{Cluster: "broker", AuthInfo: user, Namespace: MemberNamespace(id)}
	cfg.CurrentContext = "broker"
	return clientcmd.Write(*cfg)
}

// TokenExpiry reads the exp claim of a JSON web token without verifying it (the broker
// does that); zero when the token has none or is not a JWT.
func TokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(claims.Exp, 0)
}
