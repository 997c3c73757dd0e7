package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/lab/labtest"
)

// BenchmarkFederationFailover measures, on four lab clusters with strait dns reading the
// broker, the time from a zone's only shard scaled to 0 to strait dns answering that zone's
// name with a CNAME to its region (the end-to-end failover a client sees, before resolver
// caching), and back, over FAILOVER_ROUNDS rounds (default 50).
func BenchmarkFederationFailover(b *testing.B) {
	rounds := 50
	if v := os.Getenv("FAILOVER_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("FAILOVER_ROUNDS=%q: want a positive number of rounds", v)
		}
		rounds = n
	}
	lab := labtest.Start(b, 4)
	ctx := context.Background()
	ns, name := federation.DefaultNamespace, "web"
	bin := filepath.Join(b.TempDir(), "strait")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/strait-io/strait/cmd/strait").CombinedOutput(); err != nil {
		b.Fatalf("building strait: %v\n%s", err, out)
	}
	for _, c := range lab.Names() {
		cs := lab.Client(c)
		_, _ = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: name, Image: "strait.io/lab/rebel-base", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}}}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	broker := lab.Client("cluster01")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := broker.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	port, err := bindtest.FreePort("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(dctx, bin, "dns", "serve", "--domain", "example.com", "--listen", addr,
		"--broker-kubeconfig", lab.Kubeconfig(), "--broker-context", "cluster01")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	zoneName := fmt.Sprintf("%s.%s.federation.svc.region1b.region1.example.com", name, ns)
	dig := func(qtype string) string {
		host, port, _ := net.SplitHostPort(addr)
		out, _ := exec.Command("dig", "@"+host, "-p", port, "+short", "+tries=1", "+time=1", zoneName, qtype).Output()
		return strings.TrimSpace(string(out))
	}
	until := func(what string, cond func() bool) time.Duration {
		t0 := time.Now()
		for !cond() {
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("%s: not within 2 minutes", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(t0)
	}
	isIP := func(s string) bool { return s != "" && net.ParseIP(strings.Fields(s)[0]) != nil }
	until("zone answers A", func() bool { return isIP(dig("A")) })
	c2 := lab.Client("cluster02")
	setReplicas := func(n int32) {
		if _, err := c2.AppsV1().Deployments(ns).UpdateScale(ctx, name, &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var down, up []time.Duration
	for round := 0; round < rounds; round++ {
		setReplicas(0)
		down = append(down, until("zone becomes a CNAME", func() bool { return strings.HasPrefix(dig("CNAME"), name+".") }))
		setReplicas(1)
		up = append(up, until("zone answers A again", func() bool { return isIP(dig("A")) }))
	}
	d50, d99 := percentiles(down)
	u50, u99 := percentiles(up)
	b.ReportMetric(float64(d50.Milliseconds()), "down-p50-ms")
	b.ReportMetric(float64(d99.Milliseconds()), "down-p99-ms")
	b.ReportMetric(float64(u50.Milliseconds()), "up-p50-ms")
	b.ReportMetric(float64(u99.Milliseconds()), "up-p99-ms")
	b.Logf("shard down -> CNAME p50 %s p99 %s max %s; shard back -> A p50 %s p99 %s max %s (%d rounds)",
		d50, d99, slices.Max(down), u50, u99, slices.Max(up), rounds)
}
