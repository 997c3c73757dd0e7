package bench

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-io/strait/internal/lab/labtest"
)

const globalServices = 50

// mutatingRequests sums the API server's counter of create, update, patch and delete
// requests.
func mutatingRequests(ctx context.Context, cs kubernetes.Interface) (float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		if !strings.Contains(line, `verb="POST"`) && !strings.Contains(line, `verb="PUT"`) && !strings.Contains(line, `verb="PATCH"`) && !strings.Contains(line, `verb="DELETE"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err == nil {
			total += v
		}
	}
	return total, sc.Err()
}

func setReady(ctx context.Context, b *testing.B, cs kubernetes.Interface, name string, ready int) {
	s, err := cs.DiscoveryV1().EndpointSlices(benchNamespace).Get(ctx, name+"-bench", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s.Endpoints = slice(name, ready).Endpoints
	if _, err := cs.DiscoveryV1().EndpointSlices(benchNamespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGlobalFailover measures, with affinity local on two lab clusters, the time from
// the last local endpoint of a Service going unready to the remote endpoints being in the
// Service's EndpointSlices (kube-proxy then programs them within its sync period), and the
// API writes the agents make per endpoint change in steady state.
func BenchmarkGlobalFailover(b *testing.B) {
	lab := labtest.Start(b, 2)
	ctx := context.Background()
	c1, c2 := lab.Client("cluster01"), lab.Client("cluster02")
	for _, cs := range []kubernetes.Interface{c1, c2} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < globalServices; i++ {
			n := fmt.Sprintf("g-%03d", i)
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: benchNamespace,
				Annotations: map[string]string{"service.strait.io/global": "true", "service.strait.io/affinity": "local"}},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
			if _, err := cs.CoreV1().Services(benchNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := cs.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, slice(n, endpointsPerSvc), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	served := &arrivals{seen: map[string]time.Time{}, want: func(*discoveryv1.EndpointSlice) bool { return true }}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	factory := informers.NewSharedInformerFactoryWithOptions(c1, 0, informers.WithNamespace(benchNamespace))
	observe := func(obj any) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if ok && s.Labels["strait.io/global-service"] != "" {
			served.mu.Lock()
			if _, seen := served.seen[s.Labels["strait.io/global-service"]]; !seen {
				served.seen[s.Labels["strait.io/global-service"]] = time.Now()
			}
			served.mu.Unlock()
		}
	}
	_, _ = factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: observe, UpdateFunc: func(_, obj any) { observe(obj) }})
	factory.Start(watchCtx.Done())
	factory.WaitForCacheSync(watchCtx.Done())
	time.Sleep(5 * time.Second) // let every agent publish before the clock starts
	if n := served.count(); n != 0 {
		b.Fatalf("%d services already serve remote endpoints with local ones ready", n)
	}

	start := map[string]time.Time{}
	for i := 0; i < globalServices; i++ {
		n := fmt.Sprintf("g-%03d", i)
		start[n] = time.Now()
		setReady(ctx, b, c1, n, 0)
	}
	waitFor(b, served, globalServices, 5*time.Minute)
	p50, p99 := percentiles(latencies(served, start))

	// Steady state: endpoint changes in cluster02 (affinity local in cluster02 too, but its
	// Services keep ready local endpoints, so only the publisher and cluster01's import act).
	quiet := 20 * time.Second
	before1, _ := mutatingRequests(ctx, c1)
	before2, _ := mutatingRequests(ctx, c2)
	time.Sleep(quiet)
	mid1, _ := mutatingRequests(ctx, c1)
	mid2, _ := mutatingRequests(ctx, c2)
	background := (mid1 - before1) + (mid2 - before2)
	changes := 0
	t0 := time.Now()
	for round := 0; round < 2; round++ {
		for i := 0; i < globalServices; i++ {
			setReady(ctx, b, c2, fmt.Sprintf("g-%03d", i), endpointsPerSvc-1-round)
			changes++
		}
	}
	time.Sleep(quiet - time.Since(t0))
	after1, _ := mutatingRequests(ctx, c1)
	after2, _ := mutatingRequests(ctx, c2)
	writes := (after1 - mid1) + (after2 - mid2) - background - float64(changes)
	b.ReportMetric(float64(p50.Milliseconds()), "failover-p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "failover-p99-ms")
	b.ReportMetric(writes/float64(changes), "agent-writes-per-change")
	b.Logf("failover (last local endpoint unready -> remote slices in place) p50 %s p99 %s over %d services; %.2f agent API writes per endpoint change (%d changes, background %.0f writes per %s subtracted)",
		p50, p99, globalServices, writes/float64(changes), changes, background, quiet)
}
