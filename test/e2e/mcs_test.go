package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
	"github.com/strait-io/strait/internal/policy"
	statuspkg "github.com/strait-io/strait/internal/status"
)

type mcsCluster struct {
	name string
	kube kubernetes.Interface
	mcs  mcsclient.Interface
}

func mcsClusters(t *testing.T, lab *labtest.Lab) []mcsCluster {
	var out []mcsCluster
	for _, n := range lab.Names() {
		m, err := mcsclient.NewForConfig(lab.RESTConfig(n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mcsCluster{n, lab.Client(n), m})
	}
	return out
}

func export(t *testing.T, c mcsCluster, ns, name string) {
	t.Helper()
	_, err := c.mcs.MulticlusterV1beta1().ServiceExports(ns).Create(context.Background(),
		&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func unexport(t *testing.T, c mcsCluster, ns, name string) {
	t.Helper()
	if err := c.mcs.MulticlusterV1beta1().ServiceExports(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// importedFrom returns the clusters whose ready endpoints cluster c imported for ns/name, and
// the ServiceImport's IPs; ok is false while there is no ServiceImport.
func importedFrom(ctx context.Context, c mcsCluster, ns, name string) (clusters []string, ips []string, ok bool, err error) {
	si, err := c.mcs.MulticlusterV1beta1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	slices, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, nil, false, err
	}
	for _, s := range slices.Items {
		if s.Labels[discoveryv1.LabelManagedBy] != "agent.strait.io" || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil, false, fmt.Errorf("slice %s lacks the agent's labels: %v", s.Name, s.Labels)
		}
		if len(s.Endpoints) > 0 {
			clusters = append(clusters, s.Labels[mcsv1beta1.LabelSourceCluster])
		}
	}
	sort.Strings(clusters)
	return clusters, si.Spec.IPs, true, nil
}

func exportCondition(ctx context.Context, c mcsCluster, ns, name, condType string) (*metav1.Condition, error) {
	se, err := c.mcs.MulticlusterV1beta1().ServiceExports(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return meta.FindStatusCondition(se.Status.Conditions, condType), nil
}

// TestMultiClusterServices follows the acceptance of the MCS issue on three lab clusters with
// stock CoreDNS and the real kube-proxy.
func TestMultiClusterServices(t *testing.T) {
	lab := labtest.Start(t, 3)
	ctx := context.Background()
	cs := mcsClusters(t, lab)
	c1, c2, c3 := cs[0], cs[1], cs[2]
	for _, c := range cs {
		createNamespace(t, c.kube, "demo")
	}
	for _, c := range []mcsCluster{c1, c2} {
		if _, err := c.kube.AppsV1().Deployments("demo").Create(ctx, deployment("demo", "hello", 2, 80), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.kube.CoreV1().Services("demo").Create(ctx, service("demo", "hello", 80), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Export from cluster01: every cluster imports it.
	export(t, c1, "demo", "hello")
	var setIP string
	for _, c := range cs {
		poll(t, 30*time.Second, c.name+" imports hello from cluster01", func(ctx context.Context) (bool, error) {
			clusters, ips, ok, err := importedFrom(ctx, c, "demo", "hello")
			if ok && len(ips) == 1 && strings.Join(clusters, ",") == "cluster01" {
				if c.name == "cluster02" {
					setIP = ips[0]
				}
				return true, nil
			}
			return false, fmt.Errorf("clusters %v ips %v ok %v err %v", clusters, ips, ok, err)
		})
	}
	poll(t, 30*time.Second, "cluster02 resolves and reaches hello.demo.svc.clusterset.local", func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, "cluster02", "dig", "+short", "hello.demo.svc.clusterset.local")
		if err != nil || strings.TrimSpace(out) != setIP {
			return false, fmt.Errorf("dig = %q (%v), want %s", out, err, setIP)
		}
		out, err = lab.Exec(ctx, "cluster02", "curl", "-sS", "--max-time", "2", "http://hello.demo.svc.clusterset.local/")
		var r reply
		if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.Cluster != "cluster01" {
			return false, fmt.Errorf("curl = %q (%v)", out, err)
		}
		return true, nil
	})
	srv, err := lab.Exec(ctx, "cluster02", "dig", "+short", "SRV", "_http._tcp.hello.demo.svc.clusterset.local")
	if err != nil || !strings.Contains(srv, " 80 ") {
		t.Errorf("SRV _http._tcp.hello.demo.svc.clusterset.local = %q (%v); want a record for port 80", srv, err)
	}
	cond, err := exportCondition(ctx, c1, "demo", "hello", string(mcsv1beta1.ServiceExportConditionReady))
	if err != nil || cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition of cluster01's export = %+v (%v); want True", cond, err)
	}

	// Export it from cluster02 too: requests from cluster03 reach both.
	export(t, c2, "demo", "hello")
	poll(t, 30*time.Second, "cluster03 imports hello from both clusters", func(ctx context.Context) (bool, error) {
		clusters, _, _, err := importedFrom(ctx, c3, "demo", "hello")
		return strings.Join(clusters, ",") == "cluster01,cluster02", err
	})
	poll(t, 60*time.Second, "requests from cluster03 reach pods of both clusters", func(ctx context.Context) (bool, error) {
		seen := map[string]bool{}
		for i := 0; i < 20 && len(seen) < 2; i++ {
			out, err := lab.Exec(ctx, "cluster03", "curl", "-sS", "--max-time", "2", "http://hello.demo.svc.clusterset.local/")
			var r reply
			if err != nil || json.Unmarshal([]byte(out), &r) != nil {
				return false, fmt.Errorf("curl = %q (%v)", out, err)
			}
			seen[r.Cluster] = true
		}
		return len(seen) == 2, fmt.Errorf("replies only from %v", seen)
	})

	// A conflicting export from cluster03: port 8080 named http against the older port 80.
	conflicting := service("demo", "hello", 80)
	conflicting.Spec.Ports[0].Port = 8080
	if _, err := c3.kube.CoreV1().Services("demo").Create(ctx, conflicting, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Exported labels and annotations conflict too: cluster01's (the oldest) reach the imports.
	se1, err := c1.mcs.MulticlusterV1beta1().ServiceExports("demo").Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	se1.Spec.ExportedLabels, se1.Spec.ExportedAnnotations = map[string]string{"tier": "gold"}, map[string]string{"team": "a"}
	if _, err := c1.mcs.MulticlusterV1beta1().ServiceExports("demo").Update(ctx, se1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c3.mcs.MulticlusterV1beta1().ServiceExports("demo").Create(ctx, &mcsv1beta1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "demo"},
		Spec:       mcsv1beta1.ServiceExportSpec{ExportedLabels: map[string]string{"tier": "bronze"}, ExportedAnnotations: map[string]string{"team": "c"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []mcsCluster{c1, c3} {
		poll(t, 30*time.Second, "Conflict on ports and labels on the export of "+c.name, func(ctx context.Context) (bool, error) {
			cond, err := exportCondition(ctx, c, "demo", "hello", string(mcsv1beta1.ServiceExportConditionConflict))
			if err != nil || cond == nil || cond.Status != metav1.ConditionTrue {
				return false, err
			}
			for _, reason := range []mcsv1beta1.ServiceExportConditionReason{mcsv1beta1.ServiceExportReasonPortConflict,
				mcsv1beta1.ServiceExportReasonLabelsConflict, mcsv1beta1.ServiceExportReasonAnnotationsConflict} {
				if !strings.Contains(cond.Reason, string(reason)) {
					return false, fmt.Errorf("reason %q lacks %s", cond.Reason, reason)
				}
			}
			return true, nil
		})
	}
	poll(t, 30*time.Second, "cluster02's ServiceImport carries cluster01's exported labels and annotations", func(ctx context.Context) (bool, error) {
		si, err := c2.mcs.MulticlusterV1beta1().ServiceImports("demo").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 80 {
			return false, fmt.Errorf("imported ports = %+v; the oldest export (port 80) must win the conflict on the port named http", si.Spec.Ports)
		}
		if si.Labels["tier"] != "gold" || si.Annotations["team"] != "a" {
			return false, fmt.Errorf("labels %v annotations %v; want tier=gold and team=a from the oldest export", si.Labels, si.Annotations)
		}
		return true, nil
	})
	// strait status shows the members, their exports and the conflict.
	out, err := exec.Command(straitBin, "status", "--kubeconfig", lab.Kubeconfig(), "--context", "cluster02", "-o", "json").Output()
	if err != nil {
		t.Fatalf("strait status: %v", err)
	}
	var st statuspkg.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if !st.BrokerReachable || len(st.Members) != 3 || st.Imports != 1 {
		t.Errorf("status = %+v; want a reachable broker, 3 members and 1 import", st)
	}
	// Read where the lab's kubeconfig says this host reaches the broker (the context's
	// strait.io extension), not at the address stored for the agents.
	if st.Broker != lab.BrokerURL() {
		t.Errorf("status read the broker at %s; want %s, from the kubeconfig context's extension", st.Broker, lab.BrokerURL())
	}
	for _, m := range st.Members {
		if !m.Alive || m.Exports != 1 {
			t.Errorf("member %+v: want alive with one export", m)
		}
	}
	if len(st.Conflicts) != 1 || st.Conflicts[0].Winner != "cluster01" {
		t.Errorf("status conflicts = %+v; want demo/hello won by cluster01", st.Conflicts)
	}
	unexport(t, c3, "demo", "hello")

	// A member's broker credential cannot touch another member's records.
	brokerCfg, err := clusterset.BrokerRESTConfig(ctx, c2.kube, false)
	if err != nil {
		t.Fatal(err)
	}
	brokerCfg.Host = lab.BrokerURL()
	asMember2, err := mcsclient.NewForConfig(brokerCfg)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := asMember2.MulticlusterV1beta1().ServiceImports(clusterset.MemberNamespace("cluster01")).List(ctx, metav1.ListOptions{})
	if err != nil || len(recs.Items) == 0 {
		t.Fatalf("cluster02 cannot read cluster01's records: %v", err)
	}
	victim := recs.Items[0].DeepCopy()
	victim.Spec.Ports = nil
	if _, err := asMember2.MulticlusterV1beta1().ServiceImports(victim.Namespace).Update(ctx, victim, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("cluster02 updating cluster01's record: %v; want Forbidden", err)
	}
	if err := asMember2.MulticlusterV1beta1().ServiceImports(victim.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("cluster02 deleting cluster01's record: %v; want Forbidden", err)
	}

	// The broker (cluster01's API server) down: imports and traffic in cluster03 are unchanged.
	lab.StopComponent("cluster01", supervisor.APIServer)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		clusters, _, ok, err := importedFrom(ctx, c3, "demo", "hello")
		if err != nil || !ok || strings.Join(clusters, ",") != "cluster01,cluster02" {
			t.Fatalf("with the broker down cluster03's import changed: %v %v %v", clusters, ok, err)
		}
		if out, err := lab.Exec(ctx, "cluster03", "curl", "-sS", "--max-time", "2", "http://hello.demo.svc.clusterset.local/"); err != nil {
			t.Fatalf("with the broker down a request from cluster03 failed: %v %s", err, out)
		}
		time.Sleep(5 * time.Second)
	}
	lab.StartComponent("cluster01", supervisor.APIServer)

	// Updates resume: scale cluster02's hello to 3, cluster03 sees three endpoints of it.
	if _, err := c2.kube.AppsV1().Deployments("demo").UpdateScale(ctx, "hello", scale("demo", "hello", 3), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 2*time.Minute, "cluster03 sees cluster02's third endpoint after the broker came back", func(ctx context.Context) (bool, error) {
		slices, err := c3.kube.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelSourceCluster + "=cluster02"})
		if err != nil || len(slices.Items) != 1 {
			return false, err
		}
		return len(slices.Items[0].Endpoints) == 3, nil
	})

	// An agent stopped while its export is deleted cleans up when it starts again.
	lab.StopComponent("cluster02", supervisor.Agent)
	unexport(t, c2, "demo", "hello")
	lab.StartComponent("cluster02", supervisor.Agent)
	poll(t, 30*time.Second, "cluster02's share withdrawn everywhere after its agent restarted", func(ctx context.Context) (bool, error) {
		for _, c := range cs {
			clusters, _, _, err := importedFrom(ctx, c, "demo", "hello")
			if err != nil || strings.Join(clusters, ",") != "cluster01" {
				return false, err
			}
		}
		return true, nil
	})

	// Unexport the last one: the import is gone everywhere.
	unexport(t, c1, "demo", "hello")
	poll(t, 30*time.Second, "hello unimported everywhere", func(ctx context.Context) (bool, error) {
		for _, c := range cs {
			if _, _, ok, err := importedFrom(ctx, c, "demo", "hello"); ok || err != nil {
				return false, err
			}
			svcs, err := c.kube.CoreV1().Services("demo").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=hello"})
			if err != nil || len(svcs.Items) > 0 {
				return false, err
			}
		}
		return true, nil
	})
}

// TestHeadlessExportAndNamespacePolicy: a headless export answers every ready endpoint and
// per-cluster hostnames; exports from default are refused; a namespace can restrict which
// clusters may export into it.
func TestHeadlessExportAndNamespacePolicy(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	cs := mcsClusters(t, lab)
	c1, c2 := cs[0], cs[1]
	for _, c := range cs {
		createNamespace(t, c.kube, "db")
	}
	sts := deployment("db", "db", 2, 5432)
	if _, err := c1.kube.AppsV1().Deployments("db").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	headless := service("db", "db", 5432)
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	headless.Spec.Ports[0].Port = 5432
	if _, err := c1.kube.CoreV1().Services("db").Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod with a hostname under the Service, as a StatefulSet's pods have.
	named := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "db", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{Hostname: "db-0", Subdomain: "db", Containers: []corev1.Container{{
			Name: "db", Image: "strait.io/lab/rebel-base", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 5432}},
		}}},
	}
	if _, err := c1.kube.CoreV1().Pods("db").Create(ctx, named, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	export(t, c1, "db", "db")
	poll(t, 60*time.Second, "cluster02 resolves every ready endpoint of the headless export", func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, "cluster02", "dig", "+short", "db.db.svc.clusterset.local")
		lines := strings.Fields(out)
		return err == nil && len(lines) == 3 && strings.HasPrefix(lines[0], "10.1."), fmt.Errorf("dig = %q (%v)", out, err)
	})
	pod, err := c1.kube.CoreV1().Pods("db").Get(ctx, "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := lab.Exec(ctx, "cluster02", "dig", "+short", "db-0.cluster01.db.db.svc.clusterset.local")
	if err != nil || strings.TrimSpace(out) != pod.Status.PodIP {
		t.Errorf("dig db-0.cluster01.db.db.svc.clusterset.local = %q (%v); want the pod's IP %s", out, err, pod.Status.PodIP)
	}
	si, err := c2.mcs.MulticlusterV1beta1().ServiceImports("db").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || si.Spec.Type != mcsv1beta1.Headless || len(si.Spec.IPs) != 0 {
		t.Errorf("headless import = %+v (%v); want type Headless without IPs", si, err)
	}

	// default refuses exports unless annotated.
	if _, err := c1.kube.CoreV1().Services("default").Create(ctx, service("default", "web", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	export(t, c1, "default", "web")
	poll(t, 30*time.Second, "an export from default is refused with Valid=False", func(ctx context.Context) (bool, error) {
		cond, err := exportCondition(ctx, c1, "default", "web", string(mcsv1beta1.ServiceExportConditionValid))
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "NamespaceNotAllowed", err
	})
	if _, err := c2.mcs.MulticlusterV1beta1().ServiceImports("default").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused export was imported: %v", err)
	}

	// cluster02 allows only cluster02 to export into db: cluster01's db disappears there.
	patch := []byte(`{"metadata":{"annotations":{"strait.io/allowed-clusters":"cluster02"}}}`)
	if _, err := c2.kube.CoreV1().Namespaces().Patch(ctx, "db", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "cluster02 drops the import from a cluster its namespace does not allow", func(ctx context.Context) (bool, error) {
		_, err := c2.mcs.MulticlusterV1beta1().ServiceImports("db").Get(ctx, "db", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if _, err := c1.mcs.MulticlusterV1beta1().ServiceImports("db").Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Errorf("cluster01 (no restriction) lost its import: %v", err)
	}
}

// TestExportWithoutPodRouting exports across clusters whose pod addresses do not route: cluster01 exports
// a NodePort Service through its node address and node port 30099 mapped from port 80, and
// cluster02 reaches it by the clusterset name; then it exports another Service through an
// Ingress host, and cluster02 reaches it by its own name, an ExternalName to the host.
func TestExportWithoutPodRouting(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	cs := mcsClusters(t, lab)
	c1, c2 := cs[0], cs[1]
	for _, c := range cs {
		createNamespace(t, c.kube, "shop")
	}
	if _, err := c1.kube.AppsV1().Deployments("shop").Create(ctx, deployment("shop", "web", 1, 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := service("shop", "web", 80)
	svc.Spec.Type = corev1.ServiceTypeNodePort
	svc.Spec.Ports[0].NodePort = 30099
	if _, err := c1.kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c1.mcs.MulticlusterV1beta1().ServiceExports("shop").Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
		Name: "web", Namespace: "shop", Annotations: map[string]string{"export.strait.io/via": "nodeport"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodeIP := lab.Cluster("cluster01").NodeIP
	poll(t, 60*time.Second, "cluster02 imports web through cluster01's node address and node port", func(ctx context.Context) (bool, error) {
		slices, err := c2.kube.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=web"})
		if err != nil || len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 1 {
			return false, err
		}
		s := slices.Items[0]
		return s.Endpoints[0].Addresses[0] == nodeIP && *s.Ports[0].Port == 30099 && *s.Endpoints[0].Conditions.Ready, nil
	})
	poll(t, 30*time.Second, "curl web.shop.svc.clusterset.local from cluster02", func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, "cluster02", "curl", "-sS", "--max-time", "2", "http://web.shop.svc.clusterset.local/")
		var r reply
		return err == nil && json.Unmarshal([]byte(out), &r) == nil && r.Cluster == "cluster01", fmt.Errorf("curl = %q (%v)", out, err)
	})
	exportViaIngress(t, lab, c1, c2)
}

// exportViaIngress is the Ingress scenario: cluster01 publishes shop/front through an
// Ingress host, and cluster02 calls it by the name shop/front. The lab has no ingress
// controller and no public DNS, so the host is a name cluster02 resolves by itself (an
// ExternalService to cluster01's node port), standing in for the DNS record and the
// controller of a real Ingress.
func exportViaIngress(t *testing.T, lab *labtest.Lab, c1, c2 mcsCluster) {
	ctx := context.Background()
	const host = "front-edge.edge.svc.cluster.local"
	// An import through an Ingress host takes the Service's own cluster.local name: only
	// where the clusterset's namespace policy says so.
	setNamespacePolicy(t, c1.kube, "hostImports: [shop]\n")
	if _, err := c1.kube.AppsV1().Deployments("shop").Create(ctx, deployment("shop", "front", 1, 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := service("shop", "front", 80)
	svc.Spec.Type = corev1.ServiceTypeNodePort
	svc.Spec.Ports[0].NodePort = 30098
	if _, err := c1.kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, c2.kube, "edge")
	out, err := exec.Command(straitBin, "map", "front-edge", "-n", "edge", "--to", lab.Cluster("cluster01").NodeIP+":30098", "--port", "80",
		"--kubeconfig", lab.Kubeconfig(), "--context", "cluster02").CombinedOutput()
	if err != nil {
		t.Fatalf("strait map: %v: %s", err, out)
	}
	_, err = c1.mcs.MulticlusterV1beta1().ServiceExports("shop").Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
		Name: "front", Namespace: "shop", Annotations: map[string]string{"export.strait.io/via": "ingress"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exportCondition := func(want metav1.ConditionStatus, reason, message string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			exp, err := c1.mcs.MulticlusterV1beta1().ServiceExports("shop").Get(ctx, "front", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(exp.Status.Conditions, string(mcsv1beta1.ServiceExportConditionValid))
			if c == nil {
				return false, nil
			}
			if want == metav1.ConditionTrue {
				c = meta.FindStatusCondition(exp.Status.Conditions, string(mcsv1beta1.ServiceExportConditionReady))
			}
			return c != nil && c.Status == want && c.Reason == reason && strings.Contains(c.Message, message), fmt.Errorf("condition %+v", c)
		}
	}
	poll(t, 30*time.Second, "an export through an Ingress that does not exist is refused, naming what is missing",
		exportCondition(metav1.ConditionFalse, "InvalidExportVia", "needs an Ingress in namespace shop with a rule for a host"))

	pathType := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "front", Namespace: "shop"}, Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pathType, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "front", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
		}}}},
	}}
	if _, err := c1.kube.NetworkingV1().Ingresses("shop").Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the Ingress makes the export valid and ready through its host",
		exportCondition(metav1.ConditionTrue, "Exported", "through host "+host+" port 80 of Ingress front"))
	poll(t, 30*time.Second, "cluster02 gets shop/front as an ExternalName to the Ingress host, and no addresses", func(ctx context.Context) (bool, error) {
		got, err := c2.kube.CoreV1().Services("shop").Get(ctx, "front", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		slices, err := c2.kube.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=front"})
		if err != nil {
			return false, err
		}
		return got.Spec.Type == corev1.ServiceTypeExternalName && got.Spec.ExternalName == host && len(got.Spec.Ports) == 1 &&
			got.Spec.Ports[0].Port == 80 && len(slices.Items) == 0, fmt.Errorf("service %+v, %d slices", got.Spec, len(slices.Items))
	})
	poll(t, 30*time.Second, "dig front.shop.svc.cluster.local in cluster02 answers the CNAME to the host", func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, "cluster02", "dig", "+short", "front.shop.svc.cluster.local")
		return err == nil && strings.HasPrefix(out, host+".\n"), fmt.Errorf("dig = %q (%v)", out, err)
	})
	poll(t, 30*time.Second, "curl http://front.shop/ from cluster02 reaches front in cluster01", func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, "cluster02", "curl", "-sS", "--max-time", "2", "http://front.shop.svc.cluster.local/")
		var r reply
		return err == nil && json.Unmarshal([]byte(out), &r) == nil && r.Cluster == "cluster01" && strings.HasPrefix(r.Pod, "front-"), fmt.Errorf("curl = %q (%v)", out, err)
	})

	// The cluster's own Service of the same name wins: cluster02 exports nothing, so once
	// the export goes, the ExternalName goes.
	if err := c1.mcs.MulticlusterV1beta1().ServiceExports("shop").Delete(ctx, "front", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "unexporting removes the ExternalName from cluster02", func(ctx context.Context) (bool, error) {
		_, err := c2.kube.CoreV1().Services("shop").Get(ctx, "front", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	if _, err := c1.kube.CoreV1().Services("shop").Get(ctx, "front", metav1.GetOptions{}); err != nil {
		t.Errorf("the exporting cluster's own Service was touched: %v", err)
	}
}

// setNamespacePolicy writes the clusterset's namespace policy on the broker (cluster01).
func setNamespacePolicy(t *testing.T, broker kubernetes.Interface, data string) {
	t.Helper()
	ctx := context.Background()
	cms := broker.CoreV1().ConfigMaps(clusterset.ClustersetNamespace)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.NamespacePolicyConfigMap, Namespace: clusterset.ClustersetNamespace},
		Data: map[string]string{policy.PolicyKey: data}}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}
