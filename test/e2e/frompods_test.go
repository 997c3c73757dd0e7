package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/lab/labtest"
)

// inPod runs a command in the client pod of a cluster, as a user does with kubectl exec.
func inPod(ctx context.Context, lab *labtest.Lab, cluster string, command ...string) (string, error) {
	return kubectl(ctx, lab, append([]string{"--context", cluster, "-n", "conf", "exec", "client", "--"}, command...)...)
}

// nslookupAddresses are the addresses busybox nslookup answered for the name asked, sorted
// (the server's own address, on the "Address:" line before the first "Name:", is not one).
func nslookupAddresses(out string) []string {
	var addrs []string
	if i := strings.Index(out, "Name:"); i >= 0 {
		for _, m := range regexp.MustCompile(`Address:\s*(\S+)`).FindAllStringSubmatch(out[i:], -1) {
			addrs = append(addrs, m[1])
		}
	}
	slices.Sort(addrs)
	return addrs
}

// srvRecords are the "port target" pairs of busybox nslookup -type=SRV, sorted.
func srvRecords(out string) []string {
	var recs []string
	for _, m := range regexp.MustCompile(`service = \d+ \d+ (\d+) (\S+)`).FindAllStringSubmatch(out, -1) {
		recs = append(recs, m[1]+" "+strings.TrimSuffix(m[2], "."))
	}
	slices.Sort(recs)
	return recs
}

// TestMCSFromPods checks, from inside pods on the lab's real nodes (kubectl exec, as the
// Multi-Cluster Services conformance suite does), the DNS and connectivity behaviour KEP-1645
// asks of an implementation: clusterset.local names for ClusterSetIP and headless imports
// (A, SRV, per-pod hostnames under the cluster ID), cluster.local names staying local, the
// MCS EndpointSlices, and connectivity only once a Service is exported.
func TestMCSFromPods(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	cs := mcsClusters(t, lab)
	c1 := cs[0]
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "conf"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "client", Image: "strait.io/lab/debug"}},
			TerminationGracePeriodSeconds: ptr.To[int64](0)},
	}
	for _, c := range cs {
		createNamespace(t, c.kube, "conf")
		if _, err := c.kube.CoreV1().Pods("conf").Create(ctx, client, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c1.kube.AppsV1().Deployments("conf").Create(ctx, deployment("conf", "hello", 2, 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.kube.CoreV1().Services("conf").Create(ctx, service("conf", "hello", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if _, err := kubectl(ctx, lab, "--context", c.name, "-n", "conf", "wait", "--for=condition=Ready", "pod/client", "--timeout=120s"); err != nil {
			t.Fatal(err)
		}
	}

	// Not exported: the clusterset name does not exist and nothing answers on it.
	for _, c := range cs {
		out, err := inPod(ctx, lab, c.name, "curl", "-sS", "--max-time", "3", "http://hello.conf.svc.clusterset.local/")
		if err == nil || !strings.Contains(out, "Could not resolve host") {
			t.Errorf("%s: curl to an unexported Service's clusterset name: %s (%v); want it not to resolve", c.name, out, err)
		}
	}

	export(t, c1, "conf", "hello")
	setIPs := map[string]string{}
	for _, c := range cs {
		poll(t, 60*time.Second, c.name+" gets a ClusterSetIP for hello", func(ctx context.Context) (bool, error) {
			_, ips, ok, err := importedFrom(ctx, c, "conf", "hello")
			if ok && len(ips) == 1 {
				setIPs[c.name] = ips[0]
				return true, nil
			}
			return false, err
		})
	}
	for _, c := range cs {
		poll(t, 60*time.Second, "a pod in "+c.name+" resolves hello.conf.svc.clusterset.local to the ClusterSetIP", func(ctx context.Context) (bool, error) {
			out, err := inPod(ctx, lab, c.name, "nslookup", "hello.conf.svc.clusterset.local")
			got := nslookupAddresses(out)
			return err == nil && slices.Equal(got, []string{setIPs[c.name]}), fmt.Errorf("nslookup: %v (%v), want %s", got, err, setIPs[c.name])
		})
		out, err := inPod(ctx, lab, c.name, "nslookup", "-type=SRV", "hello.conf.svc.clusterset.local")
		if got, want := srvRecords(out), []string{"80 hello.conf.svc.clusterset.local"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: SRV of hello.conf.svc.clusterset.local = %v (%v; %s), want %v", c.name, got, err, out, want)
		}
		poll(t, 60*time.Second, "a pod in "+c.name+" reaches cluster01's pods through the clusterset name", func(ctx context.Context) (bool, error) {
			out, err := inPod(ctx, lab, c.name, "curl", "-sS", "--max-time", "3", "http://hello.conf.svc.clusterset.local/")
			var r reply
			if err == nil {
				err = json.Unmarshal([]byte(out), &r)
			}
			return err == nil && r.Cluster == "cluster01", fmt.Errorf("curl: %q (%v)", out, err)
		})
	}
	// cluster.local stays local: cluster01's own Service there, nothing of it in cluster02.
	local, err := c1.kube.CoreV1().Services("conf").Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := inPod(ctx, lab, "cluster01", "nslookup", "hello.conf.svc.cluster.local")
	if got := nslookupAddresses(out); err != nil || !slices.Equal(got, []string{local.Spec.ClusterIP}) {
		t.Errorf("cluster01: hello.conf.svc.cluster.local = %v (%v), want only the local ClusterIP %s", got, err, local.Spec.ClusterIP)
	}
	if out, _ := inPod(ctx, lab, "cluster02", "nslookup", "hello.conf.svc.cluster.local"); !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("cluster02: hello.conf.svc.cluster.local answered %q; want NXDOMAIN: an import must not take the cluster.local name", out)
	}
	// The MCS EndpointSlices carry the MCS labels, not the Kubernetes controller's, and go on unexport.
	for _, c := range cs {
		list, err := c.kube.DiscoveryV1().EndpointSlices("conf").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=hello"})
		if err != nil || len(list.Items) != 1 {
			t.Fatalf("%s: MCS EndpointSlices %v (%v), want one", c.name, list, err)
		}
		l := list.Items[0].Labels
		if l[mcsv1beta1.LabelSourceCluster] != "cluster01" || l[discoveryv1.LabelManagedBy] == "" || l[discoveryv1.LabelManagedBy] == "endpointslice-controller.k8s.io" {
			t.Errorf("%s: MCS EndpointSlice labels %v", c.name, l)
		}
	}
	unexport(t, c1, "conf", "hello")
	poll(t, 60*time.Second, "the MCS EndpointSlices and the clusterset name go on unexport", func(ctx context.Context) (bool, error) {
		for _, c := range cs {
			list, err := c.kube.DiscoveryV1().EndpointSlices("conf").List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=hello"})
			if err != nil || len(list.Items) > 0 {
				return false, err
			}
			if out, _ := inPod(ctx, lab, c.name, "nslookup", "hello.conf.svc.clusterset.local"); !strings.Contains(out, "NXDOMAIN") {
				return false, fmt.Errorf("%s still resolves it: %s", c.name, out)
			}
		}
		return true, nil
	})

	// A headless StatefulSet Service: every ready pod address, per-pod names under the
	// cluster ID, and an SRV record per pod.
	headless := service("conf", "db", 80)
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	if _, err := c1.kube.CoreV1().Services("conf").Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := deployment("conf", "db", 2, 8080).Spec.Template
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "conf"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), ServiceName: "db", Template: pods,
			Selector: &metav1.LabelSelector{MatchLabels: pods.Labels}, PodManagementPolicy: appsv1.ParallelPodManagement},
	}
	if _, err := c1.kube.AppsV1().StatefulSets("conf").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(ctx, lab, "--context", "cluster01", "-n", "conf", "rollout", "status", "statefulset/db", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	export(t, c1, "conf", "db")
	podIP := map[string]string{}
	for _, name := range []string{"db-0", "db-1"} {
		p, err := c1.kube.CoreV1().Pods("conf").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		podIP[name] = p.Status.PodIP
	}
	all := []string{podIP["db-0"], podIP["db-1"]}
	slices.Sort(all)
	for _, c := range cs {
		poll(t, 60*time.Second, "a pod in "+c.name+" resolves db.conf.svc.clusterset.local to both pods", func(ctx context.Context) (bool, error) {
			out, err := inPod(ctx, lab, c.name, "nslookup", "db.conf.svc.clusterset.local")
			got := nslookupAddresses(out)
			return err == nil && slices.Equal(got, all), fmt.Errorf("nslookup: %v (%v), want %v", got, err, all)
		})
		for name, ip := range podIP {
			host := name + ".cluster01.db.conf.svc.clusterset.local"
			out, err := inPod(ctx, lab, c.name, "nslookup", host)
			if got := nslookupAddresses(out); err != nil || !slices.Equal(got, []string{ip}) {
				t.Errorf("%s: %s = %v (%v), want %s", c.name, host, got, err, ip)
			}
		}
		out, err := inPod(ctx, lab, c.name, "nslookup", "-type=SRV", "db.conf.svc.clusterset.local")
		// Headless: clients connect to the pods, so the SRV port is the pods' (the
		// EndpointSlice's port, 8080), not the Service's 80, as for cluster.local.
		want := []string{"8080 db-0.cluster01.db.conf.svc.clusterset.local", "8080 db-1.cluster01.db.conf.svc.clusterset.local"}
		if got := srvRecords(out); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: SRV of db.conf.svc.clusterset.local = %v (%v; %s), want %v", c.name, got, err, out, want)
		}
	}
}
