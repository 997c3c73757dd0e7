package bench

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// BenchmarkReliability measures the failure model on a 3-cluster lab (cluster01 the broker)
// with a global Service rebel-base in cluster02 and cluster03:
//
//   - dead member -> withdrawn: cluster03's agent stopped, until cluster02's Service has no
//     cluster03 endpoint (the limit is lease 15 s + grace 10 s, plus one evaluation and one
//     reconcile); and agent started -> served again;
//   - broker outage held: cluster01's API server stopped for RELIABILITY_OUTAGE (default
//     2m) while cluster02 sends requests to rebel-base; lost requests, and requests that
//     still reached cluster03;
//   - resume: broker back -> a scale change in cluster03 visible in cluster02.
//
// RELIABILITY_ROUNDS (default 10) sets the number of withdraw/return rounds.
func BenchmarkReliability(b *testing.B) {
	rounds := envInt("RELIABILITY_ROUNDS", 10)
	outage := 2 * time.Minute
	if v := os.Getenv("RELIABILITY_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("RELIABILITY_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	lab := labtest.Start(b, 3)
	ctx := context.Background()
	c2, c3 := lab.Client("cluster02"), lab.Client("cluster03")
	for _, cs := range []kubernetes.Interface{c2, c3} {
		globalRebelBase(b, cs)
	}
	remote := func(ctx context.Context) int {
		list, err := c2.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{
			LabelSelector: "strait.io/global-service=rebel-base,multicluster.kubernetes.io/source-cluster=cluster03"})
		if err != nil {
			return -1
		}
		n := 0
		for _, s := range list.Items {
			n += len(s.Endpoints)
		}
		return n
	}
	until := func(what string, cond func(ctx context.Context) bool) time.Duration {
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) { return cond(ctx), nil }); err != nil {
			b.Fatalf("%s: not within 3m", what)
		}
		return time.Since(start)
	}
	until("cluster02 serves cluster03's endpoints", func(ctx context.Context) bool { return remote(ctx) == 2 })

	var withdrawn, served []time.Duration
	for range rounds {
		lab.StopComponent("cluster03", supervisor.Agent)
		withdrawn = append(withdrawn, until("withdrawn", func(ctx context.Context) bool { return remote(ctx) == 0 }))
		lab.StartComponent("cluster03", supervisor.Agent)
		served = append(served, until("served again", func(ctx context.Context) bool { return remote(ctx) == 2 }))
	}
	w50, w99 := percentiles(withdrawn)
	s50, s99 := percentiles(served)

	// The broker away: requests from cluster02 every second, 20 at a time.
	lab.StopComponent("cluster01", supervisor.APIServer)
	start := time.Now()
	var sent, answered, toCluster03 int
	for time.Since(start) < outage {
		got := curl(ctx, b, lab, "cluster02", "http://rebel-base.demo/", 20)
		sent += 20
		answered += len(got)
		for _, c := range got {
			if c == "cluster03" {
				toCluster03++
			}
		}
		time.Sleep(time.Second)
	}
	lab.StartComponent("cluster01", supervisor.APIServer)
	back := time.Now()
	if _, err := c3.AppsV1().Deployments("demo").UpdateScale(ctx, "rebel-base", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "rebel-base", Namespace: "demo"}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	until("a change flows after the outage", func(ctx context.Context) bool { return remote(ctx) == 3 })
	resume := time.Since(back)

	b.ReportMetric(ms(w50), "withdraw-p50-ms")
	b.ReportMetric(ms(w99), "withdraw-p99-ms")
	b.ReportMetric(ms(s50), "return-p50-ms")
	b.ReportMetric(ms(s99), "return-p99-ms")
	b.ReportMetric(float64(sent-answered), "lost-requests")
	b.ReportMetric(ms(resume), "resume-ms")
	b.Logf("dead member -> withdrawn p50 %s p99 %s, renewing -> served p50 %s p99 %s (%d rounds); broker outage of %s: %d requests, %d lost, %d reached cluster03; broker back -> change flowing %s",
		w50.Round(100*time.Millisecond), w99.Round(100*time.Millisecond), s50.Round(100*time.Millisecond), s99.Round(100*time.Millisecond), rounds,
		outage, sent, sent-answered, toCluster03, resume.Round(100*time.Millisecond))
}

func ms(d time.Duration) float64 { return float64(d.Milliseconds()) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// globalRebelBase creates namespace demo and a global rebel-base Service with two pods.
func globalRebelBase(b *testing.B, cs kubernetes.Interface) {
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	labels := map[string]string{"app": "rebel-base"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "rebel-base", Namespace: "demo"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "rebel-base", Image: "strait.io/lab/rebel-base", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}}}},
	}
	if _, err := cs.AppsV1().Deployments("demo").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "rebel-base", Namespace: "demo", Annotations: map[string]string{"service.strait.io/global": "true"}},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	if _, err := cs.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// curl makes n requests from a cluster, each on a new connection, and returns the cluster
// that answered each one.
func curl(ctx context.Context, b *testing.B, lab *labtest.Lab, from, url string, n int) []string {
	args := []string{"curl", "-sS", "--max-time", "5", "-H", "Connection: close", "-w", `\n`}
	for range n {
		args = append(args, url)
	}
	out, _ := lab.Exec(ctx, from, args...)
	var clusters []string
	for _, line := range strings.Split(out, "\n") {
		var r struct {
			Cluster string `json:"cluster"`
		}
		if strings.TrimSpace(line) != "" && json.Unmarshal([]byte(line), &r) == nil {
			clusters = append(clusters, r.Cluster)
		}
	}
	return clusters
}
