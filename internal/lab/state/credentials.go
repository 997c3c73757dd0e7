package state

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/kubeconfig"
	"github.com/strait-io/strait/internal/lab/pki"
	"github.com/strait-io/strait/internal/lab/plan"
)

// Identities of the lab's clients. Each gets its own certificate so RBAC decides what it may
// do, as in a real cluster: only the admin is in system:masters.
const (
	Admin             = "admin"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	KubeProxy         = "kube-proxy"
	CoreDNS           = "coredns"
	// Kubelet is the node's kubelet: user system:node:<node>, group system:nodes, which
	// the Node authorizer and the NodeRestriction rules know.
	Kubelet = "kubelet"
	// KubeletClient is the API server's identity towards the kubelets (logs, exec,
	// port-forward), bound to the ClusterRole system:kubelet-api-admin as kubeadm does.
	KubeletClient = "apiserver-kubelet-client"
	// Agent is the lab's in-process Strait agents: the user a pod of the chart's
	// ServiceAccount strait-agent is, so those agents have the chart's rights and no more.
	Agent = "strait-agent"
)

// AgentUser is the user name of Agent: the one the API server gives the chart's
// ServiceAccount strait-system/strait-agent.
const AgentUser = "system:serviceaccount:strait-system:strait-agent"

// KubeletClientUser is the user the API server is to the kubelets.
const KubeletClientUser = "kube-apiserver-kubelet-client"

type identity struct {
	name string
	req  pki.Request
}

// identities are the client certificates of a cluster's components.
func identities(c plan.Cluster) []identity {
	return []identity{
		{Admin, pki.Request{CommonName: "strait-lab-admin", Organizations: []string{"system:masters"}}},
		{ControllerManager, pki.Request{CommonName: "system:kube-controller-manager"}},
		{Scheduler, pki.Request{CommonName: "system:kube-scheduler"}},
		{KubeProxy, pki.Request{CommonName: "system:kube-proxy"}},
		{CoreDNS, pki.Request{CommonName: "system:coredns"}},
		{Kubelet, pki.Request{CommonName: "system:node:" + c.NodeName, Organizations: []string{"system:nodes"}}},
		{KubeletClient, pki.Request{CommonName: KubeletClientUser}},
		{Agent, pki.Request{CommonName: AgentUser, Organizations: []string{"system:serviceaccounts", "system:serviceaccounts:strait-system"}}},
	}
}

// File names in a cluster's PKI directory.
const (
	CACert            = "ca.crt"
	CAKey             = "ca.key"
	APIServerCert     = "apiserver.crt"
	APIServerKey      = "apiserver.key"
	ServiceAccountKey = "sa.key"
	ServiceAccountPub = "sa.pub"
	// KubeletServingCert and KeyFile are the kubelet's serving certificate (the node's name
	// and address), which the API server verifies against the cluster's CA.
	KubeletServingCert = "kubelet-serving.crt"
	KubeletServingKey  = "kubelet-serving.key"
)

// CertFile and KeyFile name an identity's client certificate and key.
func CertFile(identity string) string { return identity + ".crt" }

// KeyFile names an identity's private key.
func KeyFile(identity string) string { return identity + ".key" }

// EnsureCredentials creates the cluster's CA, serving certificates, service account key and
// client certificates, keeping whatever already exists so a restarted lab keeps trusting its
// own data. A new PKI is written into a temporary directory first: a failure leaves no
// partial PKI. An existing one that lacks a certificate added since (a lab created by an
// older strait) gets it issued by its own CA.
func EnsureCredentials(cd ClusterDir, c plan.Cluster) error {
	if _, err := os.Stat(cd.File(CACert)); err == nil {
		return completeCredentials(cd, c)
	}
	tmp := cd.PKI() + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(tmp, name), data, 0o600)
	}
	ca, err := pki.NewCA("strait-lab-" + c.Name + "-ca")
	if err != nil {
		return err
	}
	caPair, err := ca.KeyPair()
	if err != nil {
		return err
	}
	serving, err := ca.Issue(pki.Request{
		CommonName: "kube-apiserver",
		Server:     true,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(c.NodeIP), net.ParseIP(c.APIServiceIP)},
	})
	if err != nil {
		return err
	}
	saPriv, saPub, err := pki.NewSigningKey()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		CACert: caPair.CertPEM, CAKey: caPair.KeyPEM,
		APIServerCert: serving.CertPEM, APIServerKey: serving.KeyPEM,
		ServiceAccountKey: saPriv, ServiceAccountPub: saPub,
	}
	issued, err := issueMissing(ca, c, func(string) bool { return false })
	if err != nil {
		return err
	}
	for name, data := range issued {
		files[name] = data
	}
	for name, data := range files {
		if err := write(name, data); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(cd.PKI()); err != nil {
		return err
	}
	return os.Rename(tmp, cd.PKI())
}

// issueMissing issues every client and kubelet certificate whose files have is false for.
func issueMissing(ca *pki.CA, c plan.Cluster, have func(name string) bool) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, id := range identities(c) {
		if have(CertFile(id.name)) && have(KeyFile(id.name)) {
			continue
		}
		kp, err := ca.Issue(id.req)
		if err != nil {
			return nil, err
		}
		files[CertFile(id.name)], files[KeyFile(id.name)] = kp.CertPEM, kp.KeyPEM
	}
	if !have(KubeletServingCert) || !have(KubeletServingKey) {
		kp, err := ca.Issue(pki.Request{CommonName: "system:node:" + c.NodeName, Organizations: []string{"system:nodes"},
			Server: true, DNSNames: []string{c.NodeName}, IPs: []net.IP{net.ParseIP(c.NodeIP)}})
		if err != nil {
			return nil, err
		}
		files[KubeletServingCert], files[KubeletServingKey] = kp.CertPEM, kp.KeyPEM
	}
	return files, nil
}

// completeCredentials issues, with the cluster's existing CA, the certificates its PKI
// lacks; each file is written atomically, key before certificate.
func completeCredentials(cd ClusterDir, c plan.Cluster) error {
	have := func(name string) bool {
		_, err := os.Stat(cd.File(name))
		return err == nil
	}
	missing := false
	for _, id := range identities(c) {
		missing = missing || !have(CertFile(id.name)) || !have(KeyFile(id.name))
	}
	if !missing && have(KubeletServingCert) && have(KubeletServingKey) {
		return nil
	}
	certPEM, err := os.ReadFile(cd.File(CACert))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(cd.File(CAKey))
	if err != nil {
		return fmt.Errorf("the PKI of cluster %s lacks certificates and its CA key cannot be read to issue them: %w", c.Name, err)
	}
	ca, err := pki.LoadCA(pki.KeyPair{CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		return fmt.Errorf("CA of cluster %s: %w", c.Name, err)
	}
	files, err := issueMissing(ca, c, have)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Ext(names[i]) > filepath.Ext(names[j]) }) // .key first
	for _, name := range names {
		if err := WriteFileAtomic(cd.File(name), files[name], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// APIServerURL is how clients on the host reach the cluster's API server.
func APIServerURL(c plan.Cluster) string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.Ports.APIServer)
}

// NodeAPIServerURL is how clients inside the cluster's network namespace (the kubelet,
// kube-proxy, CoreDNS) reach it: through the lab's forwarder on the node address.
func NodeAPIServerURL(c plan.Cluster) string {
	return fmt.Sprintf("https://%s:%d", c.NodeIP, c.Ports.APIServer)
}

// RESTConfig returns a client configuration for one identity, with QPS and burst raised for
// a controller's pace. The certificates are read into the configuration: with file paths,
// client-go would keep watching files that vanish with a purged or test lab.
func RESTConfig(cd ClusterDir, c plan.Cluster, identity string) *rest.Config {
	cfg := &rest.Config{Host: APIServerURL(c), QPS: 100, Burst: 200}
	ca, errCA := os.ReadFile(cd.File(CACert))
	cert, errCert := os.ReadFile(cd.File(CertFile(identity)))
	key, errKey := os.ReadFile(cd.File(KeyFile(identity)))
	if errCA == nil && errCert == nil && errKey == nil {
		cfg.TLSClientConfig = rest.TLSClientConfig{CAData: ca, CertData: cert, KeyData: key}
		return cfg
	}
	// Missing files: let the client report which one when it is used.
	cfg.TLSClientConfig = rest.TLSClientConfig{CAFile: cd.File(CACert), CertFile: cd.File(CertFile(identity)), KeyFile: cd.File(KeyFile(identity))}
	return cfg
}

// kubeconfigEntry builds the cluster, user and context of one identity, with certificates
// embedded so the file can be copied anywhere.
func kubeconfigEntry(cd ClusterDir, server string) (*clientcmdapi.Cluster, error) {
	ca, err := os.ReadFile(cd.File(CACert))
	if err != nil {
		return nil, err
	}
	return &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}, nil
}

func authInfo(cd ClusterDir, identity string) (*clientcmdapi.AuthInfo, error) {
	cert, err := os.ReadFile(cd.File(CertFile(identity)))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(cd.File(KeyFile(identity)))
	if err != nil {
		return nil, err
	}
	return &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}, nil
}

// WriteKubeconfigs writes the components' kubeconfigs of every cluster and the user's
// kubeconfig with one context per cluster, named after it. They are rewritten on every start
// because ports may change between runs.
func WriteKubeconfigs(d Dir, l *plan.Lab) error {
	user := clientcmdapi.NewConfig()
	for _, c := range l.Clusters {
		cd := d.Cluster(c.Name)
		for _, comp := range []struct {
			identity string
			server   string
		}{
			{ControllerManager, APIServerURL(c)},
			{Scheduler, APIServerURL(c)},
			{Kubelet, NodeAPIServerURL(c)},
			{KubeProxy, NodeAPIServerURL(c)},
			{CoreDNS, NodeAPIServerURL(c)},
			{Agent, APIServerURL(c)},
		} {
			if err := writeSingle(cd, comp.identity, comp.server, cd.Kubeconfig(comp.identity)); err != nil {
				return fmt.Errorf("kubeconfig of %s in cluster %s: %w", comp.identity, c.Name, err)
			}
		}
		cl, err := kubeconfigEntry(cd, APIServerURL(c))
		if err != nil {
			return err
		}
		ai, err := authInfo(cd, Admin)
		if err != nil {
			return err
		}
		user.Clusters[c.Name] = cl
		user.AuthInfos[c.Name+"-admin"] = ai
		uc := &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name + "-admin", Namespace: "default"}
		// The broker (the first cluster) as this host reaches it: with agents in pods the
		// members store its node address, which only the clusters reach, and strait status
		// and diagnose would otherwise dial it from here.
		if err := kubeconfig.SetExtension(uc, kubeconfig.Extension{BrokerServer: APIServerURL(l.Clusters[0])}); err != nil {
			return err
		}
		user.Contexts[c.Name] = uc
	}
	if len(l.Clusters) > 0 {
		user.CurrentContext = l.Clusters[0].Name
	}
	return writeConfig(user, d.Kubeconfig())
}

func writeSingle(cd ClusterDir, identity, server, path string) error {
	cfg := clientcmdapi.NewConfig()
	cl, err := kubeconfigEntry(cd, server)
	if err != nil {
		return err
	}
	ai, err := authInfo(cd, identity)
	if err != nil {
		return err
	}
	cfg.Clusters["lab"] = cl
	cfg.AuthInfos[identity] = ai
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: identity}
	cfg.CurrentContext = "lab"
	return writeConfig(cfg, path)
}

func writeConfig(cfg *clientcmdapi.Config, path string) error {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, data, 0o600)
}

// RemoveAll deletes the lab's state directory, refusing anything that does not look like one
// so a wrong path can never delete unrelated data.
func RemoveAll(d Dir) error {
	if _, err := os.Stat(d.LabFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	} else if errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(string(d)); len(entries) > 0 {
			if _, err := os.Stat(filepath.Join(string(d), "clusters")); err != nil {
				return fmt.Errorf("refusing to remove %s: it does not look like a lab state directory", d)
			}
		}
	}
	return os.RemoveAll(string(d))
}
