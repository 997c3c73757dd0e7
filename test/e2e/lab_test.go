package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// reply is what the lab's rebel-base pods answer.
type reply struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	PodIP     string `json:"podIP"`
}

func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		// Keep the last error that says why the condition does not hold, not the client's
		// complaint that the poll's deadline has come.
		if last == nil || err == nil || !deadlineError(err) {
			last = err
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
	}
}

// deadlineError is a request given up because the poll's deadline came (or, for client-go's
// rate limiter, would come) before it could be sent or answered.
func deadlineError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "would exceed context deadline") ||
		strings.Contains(err.Error(), context.DeadlineExceeded.Error())
}

func deployment(ns, name string, replicas int32, port int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: "strait.io/lab/rebel-base",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
					// Real probes, run by the kubelet: rebel-base's /readyz fails while the
					// pod is annotated lab.strait.io/ready: "false".
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/readyz", Port: intstr.FromString("http")}}, PeriodSeconds: 1, FailureThreshold: 1},
					LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 5},
				}}},
			},
		},
	}
}

func service(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

func createNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readyEndpoints(ctx context.Context, cs kubernetes.Interface, ns, svc string) (map[string]bool, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	ready := map[string]bool{}
	for _, s := range slices.Items {
		if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
			return nil, fmt.Errorf("slice %s is managed by %q", s.Name, s.Labels[discoveryv1.LabelManagedBy])
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready[e.Addresses[0]] = true
			}
		}
	}
	return ready, nil
}

// TestLabServesDeploymentsLikeARealCluster follows the acceptance of the lab: a Deployment gets
// Ready pods from the real kubelet, the real endpointslice controller publishes them, the
// cluster's CoreDNS resolves the Service, the real kube-proxy balances requests over every pod,
// and a pod of another cluster is reachable by its pod IP.
func TestLabServesDeploymentsLikeARealCluster(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	c1, c2 := lab.Client("cluster01"), lab.Client("cluster02")

	nodes, err := c2.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].Labels["topology.kubernetes.io/zone"] != lab.Cluster("cluster02").Zone {
		t.Fatalf("cluster02 nodes = %+v, want one node in zone %s", nodes.Items, lab.Cluster("cluster02").Zone)
	}
	if n := nodes.Items[0]; !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") ||
		n.Status.NodeInfo.KubeletVersion != "v1.34.4" || n.Labels["lab.strait.io/cluster"] != "cluster02" || n.Spec.PodCIDR != lab.Cluster("cluster02").PodCIDR {
		t.Errorf("node %s: runtime %q, kubelet %q, labels %v, pod CIDR %q; want a real kubelet on containerd",
			n.Name, n.Status.NodeInfo.ContainerRuntimeVersion, n.Status.NodeInfo.KubeletVersion, n.Labels, n.Spec.PodCIDR)
	}

	createNamespace(t, c1, "demo")
	if _, err := c1.AppsV1().Deployments("demo").Create(ctx, deployment("demo", "rebel-base", 3, 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.CoreV1().Services("demo").Create(ctx, service("demo", "rebel-base", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "3 ready endpoints published by the endpointslice controller", func(ctx context.Context) (bool, error) {
		ready, err := readyEndpoints(ctx, c1, "demo", "rebel-base")
		return len(ready) == 3, err
	})
	pods, err := c1.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	_, podCIDR, _ := net.ParseCIDR(lab.Cluster("cluster01").PodCIDR)
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || !podCIDR.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("pod %s: phase %s, IP %s; want Running with an IP in %s", p.Name, p.Status.Phase, p.Status.PodIP, podCIDR)
		}
		names[p.Name] = true
	}

	out, err := lab.Exec(ctx, "cluster01", "dig", "+short", "rebel-base.demo.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c1.CoreV1().Services("demo").Get(ctx, "rebel-base", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != svc.Spec.ClusterIP {
		t.Errorf("dig rebel-base.demo.svc.cluster.local = %q, want the ClusterIP %s", out, svc.Spec.ClusterIP)
	}
	if out, err := lab.Exec(ctx, "cluster01", "getent", "hosts", "rebel-base.demo"); err != nil || !strings.Contains(out, svc.Spec.ClusterIP) {
		t.Errorf("getent hosts rebel-base.demo = %q, %v; want the ClusterIP through the search path", out, err)
	}

	// kube-proxy programs the Service a moment after the endpoints appear, as on any cluster.
	poll(t, 30*time.Second, "rebel-base.demo answers through kube-proxy", func(ctx context.Context) (bool, error) {
		_, err := lab.Exec(ctx, "cluster01", "curl", "-sS", "--max-time", "2", "http://rebel-base.demo/")
		return err == nil, err
	})
	// Repeated requests reach all three pods (each on a new connection, so kube-proxy picks).
	poll(t, time.Minute, "requests to rebel-base.demo reach all three pods", func(ctx context.Context) (bool, error) {
		seen := map[string]int{}
		for _, r := range curlEach(ctx, t, lab, "cluster01", "http://rebel-base.demo/", 30) {
			if r.Cluster != "cluster01" || r.Namespace != "demo" || !names[r.Pod] {
				t.Fatalf("reply %+v: want cluster01/demo and one of the pods %v", r, names)
			}
			seen[r.Pod]++
		}
		return len(seen) == 3, fmt.Errorf("replies from %v", seen)
	})

	// A pod of cluster02, reached from cluster01 by its pod IP across the lab router.
	if _, err := c2.AppsV1().Deployments("default").Create(ctx, deployment("default", "x-wing", 1, 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var remoteIP string
	poll(t, time.Minute, "x-wing pod running in cluster02", func(ctx context.Context) (bool, error) {
		pods, err := c2.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=x-wing"})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		remoteIP = pods.Items[0].Status.PodIP
		return remoteIP != "", nil
	})
	out, err = lab.Exec(ctx, "cluster01", "curl", "-sS", "--max-time", "5", "http://"+net.JoinHostPort(remoteIP, "8080")+"/")
	if err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Cluster != "cluster02" || r.PodIP != remoteIP {
		t.Errorf("reply from %s = %q (%v); want cluster02's pod", remoteIP, out, err)
	}
}

// TestLabPodReadinessAndDeletion makes a pod fail its readiness probe (rebel-base fails
// /readyz while annotated lab.strait.io/ready: "false") and checks the kubelet, the real
// endpointslice controller and kube-proxy follow, and that it comes back when the annotation
// goes; then deletes pods and checks they go away and their addresses stop answering.
func TestLabPodReadinessAndDeletion(t *testing.T) {
	lab := labtest.Start(t, 1)
	ctx := context.Background()
	cs := lab.Client("cluster01")
	createNamespace(t, cs, "ready")
	if _, err := cs.AppsV1().Deployments("ready").Create(ctx, deployment("ready", "echo", 2, 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("ready").Create(ctx, service("ready", "echo", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "2 ready endpoints", func(ctx context.Context) (bool, error) {
		ready, err := readyEndpoints(ctx, cs, "ready", "echo")
		return len(ready) == 2, err
	})
	pods, err := cs.CoreV1().Pods("ready").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unready := pods.Items[0]
	patch := []byte(`{"metadata":{"annotations":{"lab.strait.io/ready":"false"}}}`)
	if _, err := cs.CoreV1().Pods("ready").Patch(ctx, unready.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the annotated pod leaves the ready endpoints", func(ctx context.Context) (bool, error) {
		ready, err := readyEndpoints(ctx, cs, "ready", "echo")
		return len(ready) == 1 && !ready[unready.Status.PodIP], err
	})
	// Once kube-proxy has caught up (about a second), ten requests in a row avoid the pod.
	poll(t, 30*time.Second, "ten requests in a row avoid the unready pod", func(ctx context.Context) (bool, error) {
		for i := 0; i < 10; i++ {
			out, err := lab.Exec(ctx, "cluster01", "curl", "-sS", "--max-time", "2", "http://echo.ready/")
			if err != nil || strings.Contains(out, unready.Name) {
				return false, fmt.Errorf("request %d: %q, %v", i, out, err)
			}
		}
		return true, nil
	})

	// Ready again once the annotation goes.
	patch = []byte(`{"metadata":{"annotations":{"lab.strait.io/ready":null}}}`)
	if _, err := cs.CoreV1().Pods("ready").Patch(ctx, unready.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the pod is ready again", func(ctx context.Context) (bool, error) {
		ready, err := readyEndpoints(ctx, cs, "ready", "echo")
		return len(ready) == 2, err
	})

	// Scale to zero: the kubelet stops the pods, and the pod address stops answering.
	if _, err := cs.AppsV1().Deployments("ready").UpdateScale(ctx, "echo", scale("ready", "echo", 0), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "pods deleted", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("ready").List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	})
	if out, err := lab.Exec(ctx, "cluster01", "curl", "-sS", "--max-time", "2", "http://"+unready.Status.PodIP+"/"); err == nil {
		t.Errorf("deleted pod's address %s still answers: %s", unready.Status.PodIP, out)
	}

	st := lab.Sup.Status(ctx)
	for _, c := range st.Clusters {
		for _, comp := range c.Components {
			if comp.State != supervisor.StateRunning || !comp.Healthy {
				t.Errorf("component %s of %s: %s healthy=%v %s", comp.Name, c.Name, comp.State, comp.Healthy, comp.Detail)
			}
		}
	}
}

func scale(ns, name string, replicas int32) *autoscalingv1.Scale {
	return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
}

// curlEach makes n requests to url from a cluster with one curl process, each on a new
// connection, and returns the decoded replies.
func curlEach(ctx context.Context, t *testing.T, lab *labtest.Lab, cluster, url string, n int) []reply {
	t.Helper()
	args := []string{"curl", "-sS", "--max-time", "5", "-H", "Connection: close", "-w", `\n`}
	for i := 0; i < n; i++ {
		args = append(args, url)
	}
	out, err := lab.Exec(ctx, cluster, args...)
	if err != nil {
		t.Logf("curl: %v", err)
	}
	var replies []reply
	for _, line := range strings.Split(out, "\n") {
		var r reply
		if strings.TrimSpace(line) != "" && json.Unmarshal([]byte(line), &r) == nil {
			replies = append(replies, r)
		}
	}
	return replies
}
