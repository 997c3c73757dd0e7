package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// TestTrustBoundaries tries, on a 3-cluster lab, the attacks of the trust model
// (docs/security.md) and checks each one fails: a hostile broker credential written into a
// member, a record in a namespace that is not a registered member's, and exports into a
// namespace the clusterset's policy closes to them. (Least privilege of a member's
// identity on the broker is proved in internal/clusterset's lab tests.)
func TestTrustBoundaries(t *testing.T) {
	w := newFaultWorld(t)
	t.Run("HostileBrokerCredential", w.hostileBrokerCredential)
	t.Run("UnregisteredNamespace", w.unregisteredNamespace)
	t.Run("NamespacePolicy", w.namespacePolicy)
}

// hostileBrokerCredential: a kubeconfig with an exec plugin, a token file and insecure TLS is
// written into cluster02's broker Secret. The running agent refuses it (an Event naming the
// fields) and keeps its own; a new agent refuses to start with it and names the fields;
// strait status names them too; the plugin never ran.
func (w *faultWorld) hostileBrokerCredential(t *testing.T) {
	ctx := context.Background()
	marker := filepath.Join(t.TempDir(), "exec-ran")
	hostile := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: b
clusters: [{name: b, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {tokenFile: /etc/hostname, exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "touch %s"]}}}]
contexts: [{name: b, context: {cluster: b, user: u}}]
`, marker)
	secrets := w.cs["cluster02"].CoreV1().Secrets(clusterset.SystemNamespace)
	orig, err := secrets.Get(ctx, clusterset.BrokerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := orig.DeepCopy()
	bad.Data[clusterset.BrokerSecretKey] = []byte(hostile)
	if _, err := secrets.Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cur, err := secrets.Get(ctx, clusterset.BrokerSecretName, metav1.GetOptions{})
		if err == nil {
			cur.Data = orig.Data
			_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restoring the broker Secret: %v", err)
		}
	}()

	// A new agent refuses the credential before using any of it.
	cfg := agent.DefaultConfig()
	cfg.Kubeconfig = w.lab.AgentKubeconfig("cluster02")
	cfg.MetricsAddress, cfg.HealthAddress = "0", "0"
	_, err = agent.New(ctx, cfg)
	for _, field := range []string{".exec", ".tokenFile", "insecure-skip-tls-verify"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("agent with the hostile credential: %v; want it refused naming %s", err, field)
		}
	}
	out := straitStatus(ctx, w.lab, "cluster02")
	if !strings.Contains(out, ".exec runs a command") {
		t.Errorf("strait status does not name the refused field:\n%s", out)
	}
	// The running agent notices it, refuses it, and keeps serving with its own.
	poll(t, 2*time.Minute, "the running agent records the refusal", func(ctx context.Context) (bool, error) {
		events, err := w.cs["cluster02"].CoreV1().Events(clusterset.SystemNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			// The running agent's refusal, not the one the agent started above recorded.
			if e.Reason == "BrokerCredentialRefused" && strings.Contains(e.Message, "the agent keeps using its own") && strings.Contains(e.Message, ".exec") {
				return true, nil
			}
		}
		return false, fmt.Errorf("no BrokerCredentialRefused event among %d", len(events.Items))
	})
	scaleTo(t, w.cs["cluster03"], faultNS, "rebel-base", 3)
	poll(t, time.Minute, "cluster02 still follows cluster03 with its own credential", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, w.cs["cluster02"], faultNS, "rebel-base")
		return err == nil && src["cluster03"] == 3, fmt.Errorf("remote slices %v, %v", src, err)
	})
	scaleTo(t, w.cs["cluster03"], faultNS, "rebel-base", 2)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the hostile credential's exec plugin ran")
	}
}

// unregisteredNamespace: records written (by someone with broker rights) into a
// strait-member-* namespace that no join registered count for nothing.
func (w *faultWorld) unregisteredNamespace(t *testing.T) {
	ctx := context.Background()
	broker := w.cs["cluster01"]
	ns := clusterset.MemberNamespace("ghost")
	createNamespace(t, broker, ns)
	si := records.ToServiceImport(ns, mcs.Export{Cluster: "ghost", Namespace: faultNS, Name: "echo", Type: mcsv1beta1.ClusterSetIP,
		Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}})
	if _, err := w.mcs["cluster01"].mcs.MulticlusterV1beta1().ServiceImports(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: records.SliceName(faultNS, "echo", discoveryv1.AddressTypeIPv4), Namespace: ns, Labels: records.Labels("ghost", faultNS, "echo")},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.9.9.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](80)}},
	}
	if _, err := broker.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Give the importers ample time to (not) pick it up.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		clusters, _, _, err := importedFrom(ctx, w.mcs["cluster02"], faultNS, "echo")
		if err != nil || slices.Contains(clusters, "ghost") {
			t.Fatalf("cluster02 imports echo from %v (%v): a record of an unregistered namespace counted", clusters, err)
		}
		time.Sleep(2 * time.Second)
	}
	si2, err := w.mcs["cluster02"].mcs.MulticlusterV1beta1().ServiceImports(faultNS).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range si2.Status.Clusters {
		if c.Cluster == "ghost" {
			t.Errorf("status.clusters lists ghost: %v", si2.Status.Clusters)
		}
	}
	if err := broker.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// namespacePolicy: the clusterset's policy closes demo to cluster03 and the federation
// namespace to cluster03: MCS imports, the global Service and federation all leave
// cluster03 out; opened again, it is back.
func (w *faultWorld) namespacePolicy(t *testing.T) {
	setNamespacePolicy(t, w.cs["cluster01"], fmt.Sprintf("namespaces:\n  %s: [cluster01, cluster02]\n  %s: [cluster02]\n", faultNS, federation.DefaultNamespace))
	poll(t, time.Minute, "cluster03 left out of MCS imports and the global Service", func(ctx context.Context) (bool, error) {
		clusters, _, _, err := importedFrom(ctx, w.mcs["cluster02"], faultNS, "echo")
		if err != nil || !slices.Equal(clusters, []string{"cluster01"}) {
			return false, fmt.Errorf("echo imported from %v (%v)", clusters, err)
		}
		src, err := remoteSources(ctx, w.cs["cluster02"], faultNS, "rebel-base")
		return err == nil && src["cluster03"] == 0, fmt.Errorf("global slices %v (%v)", src, err)
	})
	poll(t, time.Minute, "cluster03's export says why", func(ctx context.Context) (bool, error) {
		c, err := exportCondition(ctx, w.mcs["cluster03"], faultNS, "echo", string(mcsv1beta1.ServiceExportConditionValid))
		return err == nil && c != nil && c.Status == metav1.ConditionFalse && c.Reason == "NamespaceNotAllowed", fmt.Errorf("Valid %+v (%v)", c, err)
	})
	poll(t, time.Minute, "cluster03's federation shard is left out", func(ctx context.Context) (bool, error) {
		svc, err := w.cs["cluster01"].CoreV1().Services(federation.DefaultNamespace).Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("cluster03"))
		if c == nil || c.Reason != federation.ReasonNamespaceNotAllowed {
			return false, fmt.Errorf("cluster03 shard %+v", c)
		}
		z := digShort(t, w.bind.Addr, w.bindNames[4], "A")
		return !slices.Contains(z, w.node("cluster03")), fmt.Errorf("BIND answers cluster03's zone with %v", z)
	})
	setNamespacePolicy(t, w.cs["cluster01"], "")
	w.healthy(t, time.Minute)
}
