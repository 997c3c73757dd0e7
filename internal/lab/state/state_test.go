package state

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-io/strait/internal/kubeconfig"
	"github.com/strait-io/strait/internal/lab/plan"
)

func testLab(t *testing.T, names ...string) *plan.Lab {
	t.Helper()
	s := plan.Spec{Lab: "t", APIPortBase: 20000}
	for _, n := range names {
		s.Clusters = append(s.Clusters, plan.ClusterSpec{Name: n})
	}
	l, err := plan.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A lab started again must keep trusting its own etcd data and kubeconfigs: its CA survives.
func TestEnsureCredentialsKeepsExistingCA(t *testing.T) {
	d := Dir(t.TempDir())
	l := testLab(t, "a")
	cd := d.Cluster("a")
	if err := EnsureCredentials(cd, l.Clusters[0]); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(cd.File(CACert))
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureCredentials(cd, l.Clusters[0]); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(cd.File(CACert))
	if !bytes.Equal(first, second) {
		t.Error("a second EnsureCredentials replaced the CA")
	}
	if _, err := os.Stat(cd.PKI() + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary PKI directory left behind: %v", err)
	}
	for _, id := range []string{Admin, ControllerManager, Scheduler, KubeProxy, CoreDNS, Kubelet, KubeletClient} {
		if _, err := os.Stat(cd.File(CertFile(id))); err != nil {
			t.Errorf("no certificate for %s: %v", id, err)
		}
	}
	kubelet, err := tls.LoadX509KeyPair(cd.File(CertFile(Kubelet)), cd.File(KeyFile(Kubelet)))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(kubelet.Certificate[0])
	if leaf.Subject.CommonName != "system:node:a-node" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet client certificate is %s, want system:node:a-node in system:nodes", leaf.Subject)
	}
	serving, err := tls.LoadX509KeyPair(cd.File(KubeletServingCert), cd.File(KubeletServingKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(serving.Certificate[0])
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != l.Clusters[0].NodeIP {
		t.Errorf("kubelet serving certificate for %v, want the node address %s", leaf.IPAddresses, l.Clusters[0].NodeIP)
	}

	// A PKI from before the kubelet existed gets its certificates from its own CA, and
	// nothing else changes.
	for _, f := range []string{CertFile(Kubelet), KeyFile(Kubelet), KubeletServingCert, KubeletServingKey} {
		if err := os.Remove(cd.File(f)); err != nil {
			t.Fatal(err)
		}
	}
	admin, _ := os.ReadFile(cd.File(CertFile(Admin)))
	if err := EnsureCredentials(cd, l.Clusters[0]); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(cd.File(CertFile(Admin))); !bytes.Equal(admin, again) {
		t.Error("completing the PKI replaced the admin certificate")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(first)
	kubelet, err = tls.LoadX509KeyPair(cd.File(CertFile(Kubelet)), cd.File(KeyFile(Kubelet)))
	if err != nil {
		t.Fatalf("the kubelet certificate was not issued again: %v", err)
	}
	leaf, _ = x509.ParseCertificate(kubelet.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the issued kubelet certificate is not the cluster CA's: %v", err)
	}
}

func TestKubeconfigHasOneContextPerCluster(t *testing.T) {
	d := Dir(t.TempDir())
	l := testLab(t, "east", "west")
	for _, c := range l.Clusters {
		if err := EnsureCredentials(d.Cluster(c.Name), c); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteKubeconfigs(d, l); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(d.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Clusters {
		ctx, ok := cfg.Contexts[c.Name]
		if !ok {
			t.Fatalf("no context %s in %v", c.Name, cfg.Contexts)
		}
		if got := cfg.Clusters[ctx.Cluster].Server; got != APIServerURL(c) {
			t.Errorf("context %s points at %s, want %s", c.Name, got, APIServerURL(c))
		}
		// strait status and diagnose reach the broker (the first cluster) from this host,
		// whatever address the members stored for their agents.
		if e, err := kubeconfig.ExtensionOf(c.Name, ctx); err != nil || e.BrokerServer != APIServerURL(l.Clusters[0]) {
			t.Errorf("context %s: broker server %q (%v), want %s", c.Name, e.BrokerServer, err, APIServerURL(l.Clusters[0]))
		}
	}
	proxy, err := clientcmd.LoadFromFile(d.Cluster("west").Kubeconfig(KubeProxy))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := proxy.Clusters["lab"].Server, NodeAPIServerURL(l.Clusters[1]); got != want {
		t.Errorf("kube-proxy of west talks to %s, want the node address %s", got, want)
	}
	if fi, _ := os.Stat(d.Kubeconfig()); fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600: it holds admin keys", fi.Mode().Perm())
	}
}

func TestRemoveAllRefusesForeignDirectories(t *testing.T) {
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "precious.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(Dir(foreign)); err == nil {
		t.Fatal("RemoveAll removed a directory that is not a lab's")
	}
	if _, err := os.Stat(filepath.Join(foreign, "precious.txt")); err != nil {
		t.Fatalf("foreign file is gone: %v", err)
	}
	d := Dir(t.TempDir())
	if err := Save(d, &Saved{Lab: testLab(t, "a")}); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(string(d)); !os.IsNotExist(err) {
		t.Errorf("lab state still there: %v", err)
	}
}

// Each cluster's containerd has its own root, state, socket and config under the cluster's
// directory, so clusters never share one.
func TestContainerdPaths(t *testing.T) {
	d := Dir("/state/lab")
	a, b := d.Cluster("a"), d.Cluster("b")
	want := map[string]string{
		a.Containerd():       "/state/lab/clusters/a/containerd",
		a.ContainerdRoot():   "/state/lab/clusters/a/containerd/root",
		a.ContainerdState():  "/state/lab/clusters/a/containerd/state",
		a.ContainerdConfig(): "/state/lab/clusters/a/containerd/config.toml",
	}
	for got, w := range want {
		if got != w {
			t.Errorf("got %s, want %s", got, w)
		}
	}
	if a.ContainerdSocket() == b.ContainerdSocket() || a.ContainerdRoot() == b.ContainerdRoot() {
		t.Error("two clusters share a containerd path")
	}
	// Every socket fits the 104 bytes containerd allows, whatever the state directory.
	long := Dir("/tmp/TestLabUpDownLifecycle2064533364/001/strait/lab/c10674").Cluster(strings.Repeat("x", 63))
	for _, p := range []string{long.ContainerdSocket() + ".ttrpc", filepath.Join(long.ShimSocketDir(), strings.Repeat("0", 64))} {
		if len(p) > 104 {
			t.Errorf("socket path %s is %d bytes, more than containerd takes", p, len(p))
		}
	}
	if !strings.HasPrefix(a.ContainerdSocket(), NodeRunRoot()+"/") || a.ContainerdSocket() != d.Cluster("a").ContainerdSocket() {
		t.Errorf("socket %s: want a stable path under %s", a.ContainerdSocket(), NodeRunRoot())
	}
}
