package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	clifederation "github.com/strait-io/strait/internal/cli/federation"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// shardHealth returns the health of each shard of ns/name in what the Source gives strait dns.
func shardHealth(ctx context.Context, src *federation.Source, ns, name string) (map[string]bool, error) {
	svcs, err := src.Services(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs {
		if s.Namespace == ns && s.Name == name {
			out := map[string]bool{}
			for _, sh := range s.Shards {
				out[sh.Cluster] = sh.Healthy
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no federated Service %s/%s in %d services", ns, name, len(svcs))
}

// waitUntil polls cond until it holds, like poll, but reports the last error cond gave
// for the world it saw, never the one of a call cut short by the deadline.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := cond(ctx)
		cancel()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %v)", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeIPs returns the InternalIPs of a cluster's nodes.
func nodeIPs(ctx context.Context, t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out = append(out, a.Address)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("a lab cluster without node addresses")
	}
	return out
}

// TestFederatedServices tries federated Services on four lab clusters in two
// regions, cluster01 being the broker: one Service applied to the broker's federation
// namespace appears in every member (adopting one that existed), the broker's status lists
// every shard's ingress and health, shard health follows endpoints and leases, and deleting
// the broker Service removes what Strait created or adopted, and nothing else.
func TestFederatedServices(t *testing.T) {
	lab := labtest.Start(t, 4)
	ctx := context.Background()
	const ns, name = federation.DefaultNamespace, "web"
	names := lab.Names()
	cs := map[string]kubernetes.Interface{}
	for _, n := range names {
		cs[n] = lab.Client(n)
	}
	broker := cs["cluster01"]

	// The broker cluster's agent creates the federation namespace on the broker.
	waitUntil(t, 60*time.Second, "federation namespace on the broker", func(ctx context.Context) (bool, error) {
		_, err := broker.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err == nil, err
	})
	// Backends in cluster01..03; cluster04 has none, and no namespace: its agent creates it.
	for _, n := range []string{"cluster02", "cluster03"} {
		createNamespace(t, cs[n], ns)
	}
	for _, n := range []string{"cluster01", "cluster02", "cluster03"} {
		if _, err := cs[n].AppsV1().Deployments(ns).Create(ctx, deployment(ns, name, 2, 80), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// cluster02 has an unrelated Service; cluster03 has its own "web" already, which is adopted.
	if _, err := cs["cluster02"].CoreV1().Services(ns).Create(ctx, service(ns, "other", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	existing := service(ns, name, 80)
	existing.Spec.Type = corev1.ServiceTypeNodePort
	existing.Spec.Selector = map[string]string{"app": "legacy"}
	existing, err := cs["cluster03"].CoreV1().Services(ns).Create(ctx, existing, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP, nodePort := existing.Spec.ClusterIP, existing.Spec.Ports[0].NodePort

	// The federated Service: a plain LoadBalancer Service (the lab has no load balancer, so
	// shards are reached on their nodes' NodePorts).
	fedSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	start := time.Now()
	fedSvc, err = broker.CoreV1().Services(ns).Create(ctx, fedSvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	brokerNodePort := fedSvc.Spec.Ports[0].NodePort
	waitUntil(t, 60*time.Second, "the federated Service in every member", func(ctx context.Context) (bool, error) {
		for _, n := range names[1:] {
			svc, err := cs[n].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, fmt.Errorf("%s: %w", n, err)
			}
			if svc.Labels[federation.LabelFederation] != federation.DefaultName || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Selector["app"] != name {
				return false, fmt.Errorf("%s: not (yet) in line: labels %v, spec %+v", n, svc.Labels, svc.Spec)
			}
		}
		return true, nil
	})
	t.Logf("federated Service in all members after %s", time.Since(start).Round(time.Millisecond))
	adopted, err := cs["cluster03"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Adopted in place: same object and cluster IP; its node port is now the broker's, so the
	// port DNS clients get reaches every shard.
	if adopted.UID != existing.UID || adopted.Spec.ClusterIP != clusterIP || adopted.Spec.Ports[0].NodePort != brokerNodePort || adopted.Labels[federation.LabelAdopted] != "true" {
		t.Errorf("cluster03's Service was not adopted in place: uid %s/%s, cluster IP %s (was %s), node port %d (was %d, the broker's %d), labels %v",
			adopted.UID, existing.UID, adopted.Spec.ClusterIP, clusterIP, adopted.Spec.Ports[0].NodePort, nodePort, brokerNodePort, adopted.Labels)
	}
	if created, err := cs["cluster02"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || created.Spec.Ports[0].NodePort != brokerNodePort {
		t.Errorf("cluster02's Service does not use the broker's node port %d: %+v %v", brokerNodePort, created, err)
	}
	if created, _ := cs["cluster02"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); created.Labels[federation.LabelAdopted] != "" {
		t.Errorf("cluster02's Service is marked adopted: %v", created.Labels)
	}
	if nsObj, err := cs["cluster04"].CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || nsObj.Labels[federation.LabelFederation] != federation.DefaultName {
		t.Errorf("cluster04's namespace was not created by Strait: %+v %v", nsObj, err)
	}

	// The broker's status: every member's ingress (its nodes, on the NodePort), one
	// condition per cluster.
	var wantIngress []string
	for _, n := range names {
		wantIngress = append(wantIngress, nodeIPs(ctx, t, cs[n])...)
	}
	sort.Strings(wantIngress)
	wantCond := map[string]string{"cluster01": federation.ReasonHealthy, "cluster02": federation.ReasonHealthy,
		"cluster03": federation.ReasonHealthy, "cluster04": federation.ReasonNoReadyEndpoints}
	waitUntil(t, 90*time.Second, "broker status: all ingress and per-cluster conditions", func(ctx context.Context) (bool, error) {
		svc, err := broker.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		var got []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			got = append(got, in.IP)
		}
		sort.Strings(got)
		if !slices.Equal(got, wantIngress) {
			return false, fmt.Errorf("ingress %v, want %v", got, wantIngress)
		}
		for cluster, reason := range wantCond {
			c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition(cluster))
			if c == nil || c.Reason != reason || (c.Status == metav1.ConditionTrue) != (reason == federation.ReasonHealthy) {
				return false, fmt.Errorf("%s condition %+v, want reason %s", cluster, c, reason)
			}
		}
		if c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ConditionFederated); c == nil || c.Status != metav1.ConditionTrue {
			return false, fmt.Errorf("Federated condition %+v", c)
		}
		return true, nil
	})

	// What strait dns serves from: the broker-backed Source.
	srcCtx, stop := context.WithCancel(ctx)
	defer stop()
	src, err := federation.StartSource(srcCtx, "e2e", broker, mcsClusters(t, lab)[0].mcs, federation.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	healthy := func(want map[string]bool) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			got, err := shardHealth(ctx, src, ns, name)
			if err != nil {
				return false, err
			}
			for c, h := range want {
				if got[c] != h {
					return false, fmt.Errorf("shard health %v, want %v", got, want)
				}
			}
			return true, nil
		}
	}
	waitUntil(t, 30*time.Second, "Source: three healthy shards", healthy(map[string]bool{"cluster01": true, "cluster02": true, "cluster03": true, "cluster04": false}))

	// Inside the members, through each one's real CoreDNS forwarding to the lab's strait dns:
	// the short name is the asking cluster's own shard (its ClusterIP) while that is healthy,
	// else the CNAME chain from its zone (cluster04 has no backend: its zone, then its region,
	// then cluster03's node address).
	labStatusShowsStraitDNS(ctx, t, lab)
	shortName := fmt.Sprintf("%s.%s.%s", name, ns, federation.DefaultName)
	labName := func(level string) string {
		return fmt.Sprintf("%s.%s.%s.svc.%s%s.", name, ns, federation.DefaultName, level, supervisor.LabDomain)
	}
	labZone, labRegion, labGlobal := labName("region1b.region1."), labName("region1."), labName("")
	local02, err := cs["cluster02"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node01, node03 := lab.Cluster("cluster01").NodeIP, lab.Cluster("cluster03").NodeIP
	waitUntil(t, 30*time.Second, "short name in cluster02: its own ClusterIP", shortNameIs(lab, "cluster02", shortName, local02.Spec.ClusterIP))
	waitUntil(t, 30*time.Second, "short name in cluster04: CNAME chain to region2's healthy shard",
		shortNameIs(lab, "cluster04", shortName, labName("region2b.region2."), labName("region2."), node03))
	waitUntil(t, 30*time.Second, "curl http://"+shortName+"/ in cluster02 reaches its own backends", func(ctx context.Context) (bool, error) {
		got, err := replies(ctx, t, lab, "cluster02", "http://"+shortName+"/", 1)
		return err == nil && got["cluster02"] == 1, fmt.Errorf("replies by cluster %v (%v)", got, err)
	})

	// strait dns serves the federation from the broker and publishes it to a real BIND.
	bind := bindtest.Start(t, bindtest.Options{Zone: "example.com"})
	dnsAddr := startStraitDNS(t, lab, bind)
	zoneName := fmt.Sprintf("%s.%s.federation.svc.region1b.region1.example.com", name, ns)
	regionName := fmt.Sprintf("%s.%s.federation.svc.region1.example.com", name, ns)
	waitUntil(t, 30*time.Second, "strait dns and BIND answer A records for cluster02's zone", func(ctx context.Context) (bool, error) {
		ours, theirs := digShort(t, dnsAddr, zoneName, "A"), digShort(t, bind.Addr, zoneName, "A")
		return len(ours) > 0 && isAddress(ours[0]) && len(theirs) > 0 && isAddress(theirs[0]), fmt.Errorf("strait dns %v, BIND %v", ours, theirs)
	})

	// A zone's shard scaled to 0 is unhealthy within 10 s; scaled back, healthy again.
	start = time.Now()
	if _, err := cs["cluster02"].AppsV1().Deployments(ns).UpdateScale(ctx, name, scale(ns, name, 0), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "cluster02 scaled to 0: unhealthy in the Source", healthy(map[string]bool{"cluster02": false, "cluster01": true}))
	t.Logf("shard down to unhealthy in the Source: %s", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 10*time.Second, "the empty zone is a CNAME to its region, in strait dns and in BIND", func(ctx context.Context) (bool, error) {
		ours, theirs := digShort(t, dnsAddr, zoneName, "CNAME"), digShort(t, bind.Addr, zoneName, "CNAME")
		return len(ours) == 1 && ours[0] == regionName+"." && len(theirs) == 1 && theirs[0] == regionName+".", fmt.Errorf("strait dns %v, BIND %v", ours, theirs)
	})
	t.Logf("shard down to CNAME in strait dns and BIND: %s", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, "short name in cluster02 without its shard: CNAME to its zone, then region1's healthy shard",
		shortNameIs(lab, "cluster02", shortName, labZone, labRegion, node01))
	t.Logf("shard down to CNAME for the short name inside cluster02: %s", time.Since(start).Round(time.Millisecond))

	// The whole of region1 empty (cluster01 too): the region name is a CNAME to the global name.
	globalName := fmt.Sprintf("%s.%s.federation.svc.example.com", name, ns)
	if _, err := cs["cluster01"].AppsV1().Deployments(ns).UpdateScale(ctx, name, scale(ns, name, 0), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the empty region is a CNAME to the global name, in strait dns and in BIND", func(ctx context.Context) (bool, error) {
		ours, theirs := digShort(t, dnsAddr, regionName, "CNAME"), digShort(t, bind.Addr, regionName, "CNAME")
		return len(ours) == 1 && ours[0] == globalName+"." && len(theirs) == 1 && theirs[0] == globalName+".", fmt.Errorf("strait dns %v, BIND %v", ours, theirs)
	})
	waitUntil(t, 30*time.Second, "short name in cluster02 with region1 empty: zone, region, global, cluster03",
		shortNameIs(lab, "cluster02", shortName, labZone, labRegion, labGlobal, node03))
	if _, err := cs["cluster01"].AppsV1().Deployments(ns).UpdateScale(ctx, name, scale(ns, name, 2), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs["cluster02"].AppsV1().Deployments(ns).UpdateScale(ctx, name, scale(ns, name, 2), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "cluster02 scaled back: healthy", healthy(map[string]bool{"cluster02": true}))
	waitUntil(t, 30*time.Second, "cluster02's zone answers A records again", func(ctx context.Context) (bool, error) {
		ours, theirs := digShort(t, dnsAddr, zoneName, "A"), digShort(t, bind.Addr, zoneName, "A")
		return len(ours) > 0 && isAddress(ours[0]) && len(theirs) > 0 && isAddress(theirs[0]), fmt.Errorf("strait dns %v, BIND %v", ours, theirs)
	})
	waitUntil(t, 30*time.Second, "short name in cluster02 scaled back: its own ClusterIP again", shortNameIs(lab, "cluster02", shortName, local02.Spec.ClusterIP))

	// The lab's strait dns is a component of the broker cluster: stopped, the short name no
	// longer resolves; started again (on the same address, so nothing was left listening),
	// it does.
	lab.StopComponent("cluster01", supervisor.StraitDNS)
	waitUntil(t, 30*time.Second, "strait-dns stopped: no answer for the short name in cluster02", shortNameIs(lab, "cluster02", shortName))
	lab.StartComponent("cluster01", supervisor.StraitDNS)
	waitUntil(t, 30*time.Second, "strait-dns started again: cluster02's ClusterIP", shortNameIs(lab, "cluster02", shortName, local02.Spec.ClusterIP))

	// A member's agent stopped: its shard is unhealthy once its lease expired plus the grace
	// period, on the broker's status too; started again, healthy again.
	start = time.Now()
	lab.StopComponent("cluster03", supervisor.Agent)
	waitUntil(t, 90*time.Second, "cluster03's agent stopped: unhealthy after its lease expired", healthy(map[string]bool{"cluster03": false, "cluster01": true}))
	t.Logf("agent stopped to unhealthy: %s", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, "broker status: cluster03 member down", func(ctx context.Context) (bool, error) {
		svc, err := broker.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("cluster03"))
		return c != nil && c.Reason == federation.ReasonMemberDown, fmt.Errorf("condition %+v", c)
	})
	lab.StartComponent("cluster03", supervisor.Agent)
	waitUntil(t, 60*time.Second, "cluster03's agent back: healthy", healthy(map[string]bool{"cluster03": true}))
	// strait federation status reads once and keeps what the status writer decided about
	// each member: wait until the writer saw cluster03 renew.
	waitUntil(t, 30*time.Second, "broker status: cluster03 healthy again", func(ctx context.Context) (bool, error) {
		svc, err := broker.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("cluster03"))
		return c != nil && c.Status == metav1.ConditionTrue, fmt.Errorf("condition %+v", c)
	})

	// strait federation status against the broker.
	cmd := exec.Command(straitBin, "federation", "status", "--kubeconfig", lab.Kubeconfig(), "--context", "cluster01", "--domain", "example.com", "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("strait federation status: %v\n%s", err, stderr.String())
	}
	var rep clifederation.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("strait federation status -o json: %v\n%s", err, stdout.String())
	}
	if len(rep.Services) != 1 || len(rep.Services[0].Shards) != 4 || len(rep.Services[0].Records) == 0 {
		t.Fatalf("strait federation status: %s", stdout.String())
	}
	for _, sh := range rep.Services[0].Shards {
		if sh.Region == "" || sh.Zone == "" || sh.Healthy != (sh.Cluster != "cluster04") {
			t.Errorf("strait federation status: shard %+v", sh)
		}
	}

	// A selection naming a cluster that is not a member: a condition and an event on the
	// broker Service; the known clusters are served, and cluster04, no longer selected, loses
	// its Service and the namespace Strait created for it (nothing else is in it).
	annotate(t, broker, ns, name, map[string]any{federation.AnnotationClusters: "cluster01,cluster02,cluster03,ghost"})
	waitUntil(t, 30*time.Second, "broker status: unknown cluster", func(ctx context.Context) (bool, error) {
		svc, err := broker.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ConditionFederated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != federation.ReasonUnknownCluster || !strings.Contains(c.Message, "ghost") {
			return false, fmt.Errorf("Federated condition %+v", c)
		}
		if c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("cluster04")); c != nil {
			return false, fmt.Errorf("cluster04 is no longer selected but has %+v", c)
		}
		events, err := broker.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Name == name && e.Reason == federation.ReasonUnknownCluster && strings.Contains(e.Message, "ghost") {
				return true, nil
			}
		}
		return false, fmt.Errorf("no UnknownCluster event among %d", len(events.Items))
	})
	waitUntil(t, 60*time.Second, "cluster04 deselected: its Service and namespace removed", func(ctx context.Context) (bool, error) {
		if _, err := cs["cluster04"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("cluster04 still has the Service (%v)", err)
		}
		nsObj, err := cs["cluster04"].CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && nsObj.DeletionTimestamp != nil), fmt.Errorf("namespace %+v, %v", nsObj, err)
	})

	// Deleting the broker Service removes what Strait created, releases what it adopted (the
	// user's Service stays, without Strait's labels), and touches nothing else.
	if err := broker.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "created member Services removed, the adopted one released", func(ctx context.Context) (bool, error) {
		if _, err := cs["cluster02"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("cluster02 still has %s/%s (%v)", ns, name, err)
		}
		released, err := cs["cluster03"].CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("cluster03's adopted Service: %w", err)
		}
		if released.UID != existing.UID || released.Spec.ClusterIP != clusterIP ||
			released.Labels[clusterset.ManagedByLabel] != "" || released.Labels[federation.LabelFederation] != "" || released.Labels[federation.LabelAdopted] != "" {
			return false, fmt.Errorf("cluster03's Service not released in place: uid %s, cluster IP %s, labels %v", released.UID, released.Spec.ClusterIP, released.Labels)
		}
		return true, nil
	})
	if _, err := cs["cluster02"].CoreV1().Services(ns).Get(ctx, "other", metav1.GetOptions{}); err != nil {
		t.Errorf("the unrelated Service in cluster02: %v", err)
	}
	for _, n := range []string{"cluster02", "cluster03"} {
		if nsObj, err := cs[n].CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || nsObj.DeletionTimestamp != nil {
			t.Errorf("%s's own namespace was removed: %+v %v", n, nsObj, err)
		}
	}
	waitUntil(t, 30*time.Second, "no shard records left on the broker", func(ctx context.Context) (bool, error) {
		list, err := broker.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
			LabelSelector: federation.FederationRecordSelector(federation.DefaultName).String()})
		if err != nil {
			return false, err
		}
		return len(list.Items) == 0, fmt.Errorf("%d records left", len(list.Items))
	})
}

// startStraitDNS runs `strait dns serve` against the lab's broker, publishing to bind with
// RFC 2136, and returns its address.
func startStraitDNS(t *testing.T, lab *labtest.Lab, bind *bindtest.Server) string {
	t.Helper()
	port, err := bindtest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	secret := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(secret, []byte(bind.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, straitBin, "dns", "serve", "--domain", "example.com", "--listen", addr,
		"--broker-kubeconfig", lab.Kubeconfig(), "--broker-context", "cluster01", "--interval", "2s",
		"--rfc2136-server", bind.Addr, "--rfc2136-zone", "example.com", "--rfc2136-key-name", bind.KeyName,
		"--rfc2136-key-algorithm", bind.Algorithm, "--rfc2136-key-secret-file", secret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("strait dns log:\n%s", logs.String())
		}
	})
	return addr
}

func digShort(t *testing.T, addr, name, qtype string) []string {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("dig", "@"+host, "-p", port, "+short", "+tries=1", "+time=1", name, qtype).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

func isAddress(s string) bool { return net.ParseIP(s) != nil }

// shortNameIs returns a waitUntil condition: name, asked for type A by a pod of cluster
// (dig through the kube-dns Service, so kube-proxy and the cluster's own CoreDNS), answers
// exactly want, as dig +short prints it: the CNAME chain in order, then the addresses.
func shortNameIs(lab *labtest.Lab, cluster, name string, want ...string) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		out, err := lab.Exec(ctx, cluster, "dig", "+short", "+tries=1", "+time=2", name, "A")
		if err != nil {
			return false, err
		}
		got := strings.Fields(out)
		return slices.Equal(got, want), fmt.Errorf("dig +short %s in %s: %q, want %q", name, cluster, got, want)
	}
}

// labStatusShowsStraitDNS checks that the lab's strait dns is a running, healthy component
// of the broker cluster, and of no other.
func labStatusShowsStraitDNS(ctx context.Context, t *testing.T, lab *labtest.Lab) {
	t.Helper()
	for _, c := range lab.Sup.Status(ctx).Clusters {
		var found *supervisor.ComponentStatus
		for i := range c.Components {
			if c.Components[i].Name == supervisor.StraitDNS {
				found = &c.Components[i]
			}
		}
		switch {
		case c.Name != "cluster01" && found != nil:
			t.Errorf("lab status: %s lists %s; only the broker cluster runs it", c.Name, supervisor.StraitDNS)
		case c.Name == "cluster01" && (found == nil || found.State != supervisor.StateRunning || !found.Healthy):
			t.Errorf("lab status: %s of the broker cluster: %+v, want Running and healthy", supervisor.StraitDNS, found)
		case !c.Healthy:
			t.Errorf("lab status: cluster %s is not healthy: %+v", c.Name, c.Components)
		}
	}
}
