// Package bench holds the benchmarks behind BENCHMARKS.md that need lab clusters. They run
// with `make bench` (go test -bench . -benchtime 1x), never in `make test`.
package bench

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/lab/labtest"
)

const (
	services         = 1000
	endpointsPerSvc  = 10
	changedServices  = 200
	benchNamespace   = "bench"
	sliceManagedBy   = "bench.strait.io"
	importedSliceMgr = "agent.strait.io"
)

// arrivals records when a watched condition first held for each service.
type arrivals struct {
	mu   sync.Mutex
	seen map[string]time.Time
	want func(*discoveryv1.EndpointSlice) bool
}

func (a *arrivals) observe(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelManagedBy] != importedSliceMgr || !a.want(s) {
		return
	}
	name := s.Labels[mcsv1beta1.LabelServiceName]
	a.mu.Lock()
	if _, ok := a.seen[name]; !ok {
		a.seen[name] = time.Now()
	}
	a.mu.Unlock()
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[(len(d)*99)/100]
}

func slice(name string, ready int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-bench", Namespace: benchNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: sliceManagedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for i := 0; i < endpointsPerSvc; i++ {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.1.%d.%d", 100+i, len(name)%200+10)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(i < ready)},
		})
	}
	return s
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

func benchmarkMCS(b *testing.B, clusters int) {
	lab := labtest.Start(b, clusters)
	ctx := context.Background()
	src := lab.Client("cluster01")
	srcMCS, err := mcsclient.NewForConfig(lab.RESTConfig("cluster01"))
	if err != nil {
		b.Fatal(err)
	}
	far := lab.Names()[clusters-1]
	for _, n := range lab.Names() {
		if _, err := lab.Client(n).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	heapBefore := heapMiB()

	// Watch the farthest cluster's imported slices.
	farClient := lab.Client(far)
	imported := &arrivals{seen: map[string]time.Time{}, want: func(*discoveryv1.EndpointSlice) bool { return true }}
	changed := &arrivals{seen: map[string]time.Time{}, want: func(s *discoveryv1.EndpointSlice) bool {
		ready := 0
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready++
			}
		}
		return ready == endpointsPerSvc-1
	}}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	factory := informers.NewSharedInformerFactoryWithOptions(farClient, 0, informers.WithNamespace(benchNamespace))
	_, _ = factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { imported.observe(obj); changed.observe(obj) },
		UpdateFunc: func(_, obj any) { imported.observe(obj); changed.observe(obj) },
	})
	factory.Start(watchCtx.Done())
	factory.WaitForCacheSync(watchCtx.Done())

	names := make([]string, services)
	start := map[string]time.Time{}
	for i := range names {
		names[i] = fmt.Sprintf("svc-%04d", i)
		n := names[i]
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: benchNamespace},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		if _, err := src.CoreV1().Services(benchNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := src.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, slice(n, endpointsPerSvc), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		start[n] = time.Now()
		if _, err := srcMCS.MulticlusterV1beta1().ServiceExports(benchNamespace).Create(ctx,
			&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: benchNamespace}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, imported, services, 10*time.Minute)
	exportLatency := latencies(imported, start)
	heapAfter := heapMiB()

	// Endpoint changes: one endpoint of each of changedServices services goes unready.
	startChange := map[string]time.Time{}
	for _, n := range names[:changedServices] {
		s, err := src.DiscoveryV1().EndpointSlices(benchNamespace).Get(ctx, n+"-bench", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		s.Endpoints = slice(n, endpointsPerSvc-1).Endpoints
		startChange[n] = time.Now()
		if _, err := src.DiscoveryV1().EndpointSlices(benchNamespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, changed, changedServices, 5*time.Minute)
	changeLatency := latencies(changed, startChange)

	p50, p99 := percentiles(exportLatency)
	c50, c99 := percentiles(changeLatency)
	b.ReportMetric(float64(p50.Milliseconds()), "export-p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "export-p99-ms")
	b.ReportMetric(float64(c50.Milliseconds()), "change-p50-ms")
	b.ReportMetric(float64(c99.Milliseconds()), "change-p99-ms")
	// Every agent imports all endpoints; the heap growth of the process (agents run inside
	// the supervisor here) per agent and per 10k imported endpoints.
	perAgent := (heapAfter - heapBefore) / float64(clusters)
	b.ReportMetric(perAgent*10000/float64(services*endpointsPerSvc), "MiB-per-10k-endpoints")
	b.Logf("%d clusters, %d services x %d endpoints: export->import p50 %s p99 %s; endpoint change p50 %s p99 %s; heap +%.0f MiB (%.1f MiB per agent)",
		clusters, services, endpointsPerSvc, p50, p99, c50, c99, heapAfter-heapBefore, perAgent)
}

func waitFor(b *testing.B, a *arrivals, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for a.count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d arrived within %s", a.count(), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func latencies(a *arrivals, start map[string]time.Time) []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for name, t0 := range start {
		if t, ok := a.seen[strings.TrimSpace(name)]; ok {
			out = append(out, t.Sub(t0))
		}
	}
	return out
}

func BenchmarkMCS(b *testing.B) {
	for _, clusters := range []int{3, 10} {
		b.Run(fmt.Sprintf("clusters=%d", clusters), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchmarkMCS(b, clusters)
			}
		})
	}
}
